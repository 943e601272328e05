/** Outcome of one request of a batch. */
export type ItemResult =
  | { ok: true; output: Record<string, unknown> }
  | { ok: false; code: 'inference_failed' | 'invalid_input' | 'invalid_image' | 'version_unloaded' | 'model_unavailable' | 'deadline_exceeded'; message: string };

/**
 * Run `predict` over `inputs` as one batch. When the batch throws, split it in halves and retry each,
 * recursively, so one bad input fails alone (`inference_failed`) and the rest of its batch succeeds
 * (DESIGN.md section 4). A batch of n with one bad input costs at most 2·log2(n) extra passes.
 *
 * @param predict one forward pass: one output per input, in order.
 * @param onSplit called with the error that caused a split (for logging).
 */
export async function predictWithSplit(
  inputs: readonly unknown[],
  predict: (batch: readonly unknown[]) => Promise<Record<string, unknown>[]>,
  onSplit: (error: unknown, size: number) => void,
): Promise<ItemResult[]> {
  if (inputs.length === 0) return [];
  try {
    const outputs = await predict(inputs);
    if (outputs.length !== inputs.length) {
      throw new Error(`model returned ${outputs.length} outputs for a batch of ${inputs.length}`);
    }
    return outputs.map((output) => ({ ok: true, output }));
  } catch (error) {
    if (inputs.length === 1) {
      return [{ ok: false, code: 'inference_failed', message: error instanceof Error ? error.message : String(error) }];
    }
    onSplit(error, inputs.length);
    const half = Math.ceil(inputs.length / 2);
    const first = await predictWithSplit(inputs.slice(0, half), predict, onSplit);
    const second = await predictWithSplit(inputs.slice(half), predict, onSplit);
    return [...first, ...second];
  }
}
