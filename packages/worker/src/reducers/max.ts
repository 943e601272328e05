import { elementwiseModule } from './elementwise.ts';

/**
 * `max`: the element-wise maximum of every member's tensor output `options.output`, nested to the
 * members' shape (a NaN element makes that element NaN). Errors as {@link elementwiseModule}.
 */
export const maxReducer = elementwiseModule('max', (max, value) => Math.max(max, value));
