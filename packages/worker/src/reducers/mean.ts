import { elementwiseModule } from './elementwise.ts';

/**
 * `mean`: the element-wise arithmetic mean (sum / member count, float64) of every member's tensor
 * output `options.output`, as plain numbers nested to the members' shape. Not re-normalized: the mean
 * of unit embeddings is generally shorter than 1. Errors as {@link elementwiseModule}.
 */
export const meanReducer = elementwiseModule(
  'mean',
  (sum, value) => sum + value,
  (sum, count) => sum / count,
);
