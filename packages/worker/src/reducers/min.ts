import { elementwiseModule } from './elementwise.ts';

/**
 * `min`: the element-wise minimum of every member's tensor output `options.output`, nested to the
 * members' shape (a NaN element makes that element NaN). Errors as {@link elementwiseModule}.
 */
export const minReducer = elementwiseModule('min', (min, value) => Math.min(min, value));
