import { elementwiseModule } from './elementwise.ts';

/**
 * `sum`: the element-wise float64 sum of every member's tensor output `options.output`, nested to the
 * members' shape. Over no member it throws `empty_group` (no shape to give zeros). Errors as
 * {@link elementwiseModule}.
 */
export const sumReducer = elementwiseModule('sum', (sum, value) => sum + value);
