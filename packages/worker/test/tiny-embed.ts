import { parseModelConfig, type ModelConfig } from '@inferline/shared';

/** Name of the tiny embedding-bag model the worker's tests write with `writeEmbeddingBagModel`. */
export const TINY_EMBED = 'tiny-embed';

/**
 * The config.json of that model: one string input `text`, one output `embedding` [dims] float32, the
 * glove tokenizer (256 tokens), with `overrides` laid over its top-level fields.
 */
export function tinyEmbedConfig(dims: number, overrides: Record<string, unknown> = {}): ModelConfig {
  return parseModelConfig({
    name: TINY_EMBED,
    platform: 'embedding-bag',
    signature: { inputs: [{ name: 'text', dtype: 'string', shape: [] }], outputs: [{ name: 'embedding', dtype: 'float32', shape: [dims] }] },
    preprocess: { type: 'glove-tokenizer', max_tokens: 256 },
    ...overrides,
  });
}
