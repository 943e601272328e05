import { readFile } from 'node:fs/promises';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { InferlineError } from './errors.ts';

/**
 * A model's declarative configuration, `models/<name>/config.json` (DESIGN.md section 6; field names
 * and semantics after TF Serving's batching parameters and Triton's model_config.proto). Validated at
 * load; an error names the offending field.
 */

/** One tensor (or text) of a model's signature. */
export const TensorSpec = Type.Object(
  {
    name: Type.String({ minLength: 1, description: 'Tensor name as the API shows it.' }),
    dtype: Type.Union([Type.Literal('string'), Type.Literal('float32'), Type.Literal('int32'), Type.Literal('json')], {
      description:
        '`string`: text, or encoded image bytes for a model with image preprocessing (TF Serving sends both as DT_STRING, images as {"b64"}); `json`: a structured output such as a list of detections.',
    }),
    shape: Type.Array(Type.Integer({ minimum: -1 }), {
      description: 'Per-request shape, without the batch dimension; -1 = variable; [] = scalar.',
    }),
  },
  { additionalProperties: false },
);
export type TensorSpec = Static<typeof TensorSpec>;

/** Dynamic batching options, TF Serving's names (https://github.com/tensorflow/serving/blob/master/tensorflow_serving/batching/README.md). */
export const BatchingConfig = Type.Object(
  {
    /** Largest batch one forward pass runs. */
    max_batch_size: Type.Integer({ minimum: 1, maximum: 4096, default: 32 }),
    /** Wait, measured from the first request of a batch, for the batch to fill (ms); 0 = take what is there. */
    batch_timeout_ms: Type.Number({ minimum: 0, maximum: 60_000, default: 2 }),
    /** Increasing batch sizes, last = max_batch_size; a batch is padded up to the next one. Empty = no padding. */
    allowed_batch_sizes: Type.Array(Type.Integer({ minimum: 1 }), { default: [] }),
    /** Requests waiting or in flight in the stream beyond which the gateway answers 429 `queue_full`. */
    max_queue_size: Type.Integer({ minimum: 1, default: 100_000 }),
    /**
     * Batches of the version a worker holds at once (fetched, decoding or running): with 2 and one
     * instance, batch n+1 is fetched and preprocessed (images decoded) while batch n runs. 1 = one
     * batch at a time. Absent = instance_group.count + 1 (every instance busy, one more being prepared).
     */
    max_inflight_batches: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    /**
     * Priority levels of the queue (Triton's `dynamic_batching.priority_levels`): a request's `priority`
     * is 1 (highest) to this; each level is its own stream, and a worker fills batches from higher
     * levels first (see `priority_max_skips`). 1 = one FIFO queue.
     */
    priority_levels: Type.Integer({ minimum: 1, maximum: 16, default: 1 }),
    /** Level of a request that names none (Triton's `default_priority_level`); absent = the lowest (priority_levels). */
    default_priority_level: Type.Optional(Type.Integer({ minimum: 1, maximum: 16 })),
    /**
     * Starvation bound: a level with requests waiting is passed over for at most this many consecutive
     * batch fills by higher levels; the next fill takes it first. 0 = strict round robin between waiting levels.
     */
    priority_max_skips: Type.Integer({ minimum: 0, maximum: 1000, default: 4 }),
    /**
     * Queue deadline of a request that gives no `timeout_ms`, ms from its acceptance (Triton's
     * `default_queue_policy.default_timeout_microseconds` with `timeout_action: REJECT`): one still
     * queued when its batch is formed after it fails `deadline_exceeded` without inference. Absent = none.
     */
    default_timeout_ms: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400_000 })),
  },
  { additionalProperties: false },
);
export type BatchingConfig = Static<typeof BatchingConfig>;

/**
 * Where a version's instances run (`instance_group.kind`):
 * - `thread` (default): each instance is its own worker thread with its own TF.js backend and copy of
 *   the weights; no forward pass ever blocks the worker's event loop;
 * - `main_thread`: one instance, on the worker's main thread. No thread hand-off per batch (a
 *   structured clone of the inputs, a transfer of the outputs, two thread wake-ups): for models whose
 *   batch costs well under a millisecond (glove-embed), where the hand-off costs more than the pass.
 *   The event loop waits for each pass, so a slow model here delays every model of the worker.
 */
export const InstanceKind = Type.Union([Type.Literal('thread'), Type.Literal('main_thread')]);
export type InstanceKind = Static<typeof InstanceKind>;

/**
 * Model instances per worker (Triton's `instance_group`,
 * https://github.com/triton-inference-server/server/blob/main/docs/user_guide/model_configuration.md#instance-groups):
 * by default each instance is its own worker thread with its own TF.js backend and its own copy of the
 * weights, so a worker runs up to `count` forward passes of a version at once, and no pass ever blocks
 * the worker's event loop (Redis I/O, batching, decoding and settling stay on the main thread). See
 * {@link InstanceKind} for `kind`.
 */
export const InstanceGroupConfig = Type.Object(
  {
    /** Instances of each version a worker serves; each holds the weights once more. Absent = the worker's INSTANCE_COUNT; 1 with `kind: "main_thread"`. */
    count: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    /** Where the instances run; default `thread`. */
    kind: Type.Optional(InstanceKind),
  },
  { additionalProperties: false },
);
export type InstanceGroupConfig = Static<typeof InstanceGroupConfig>;

/** Queue and delivery options of a model's request stream (DESIGN.md section 4). */
export const QueueConfig = Type.Object(
  {
    /** A pending entry idle this long (ms) is claimed by another worker (XAUTOCLAIM min-idle-time). */
    visibility_timeout_ms: Type.Integer({ minimum: 100, default: 30_000 }),
    /** Deliveries after which a request is moved to the dead-letter stream and failed with `poison`. */
    max_deliveries: Type.Integer({ minimum: 1, default: 5 }),
    /** Seconds a job record lives after it reaches a terminal state. */
    result_ttl_s: Type.Integer({ minimum: 1, default: 86_400 }),
  },
  { additionalProperties: false },
);
export type QueueConfig = Static<typeof QueueConfig>;

/** Text preprocessing: which tokenizer, and its limits. */
export const TextPreprocessConfig = Type.Object(
  {
    type: Type.Literal('glove-tokenizer'),
    /** Tokens kept per text; the rest are ignored. */
    max_tokens: Type.Integer({ minimum: 1, default: 256 }),
    /** Largest accepted text, in UTF-8 bytes; above it the gateway answers 400 `invalid_input`. */
    max_text_bytes: Type.Integer({ minimum: 1, default: 65_536 }),
    /** Vocabulary asset inside the version folder, one token per line, line n = row n of the table. */
    vocab_file: Type.String({ default: 'vocab.txt' }),
  },
  { additionalProperties: false },
);
export type TextPreprocessConfig = Static<typeof TextPreprocessConfig>;

/**
 * Image preprocessing: decode (sharp: EXIF orientation applied, alpha removed), resize to
 * `width`×`height` (stretched, as the models were trained), then `(pixel - mean) / std` per channel in
 * `channel_order`, laid out as `layout`. The result is the model input `[batch, …] float32`.
 */
export const ImagePreprocessConfig = Type.Object(
  {
    type: Type.Literal('image'),
    /** Model input width and height, pixels. */
    width: Type.Integer({ minimum: 1, maximum: 4096 }),
    height: Type.Integer({ minimum: 1, maximum: 4096 }),
    /** Channel order of the model input. */
    channel_order: Type.Union([Type.Literal('rgb'), Type.Literal('bgr')], { default: 'rgb' }),
    /** Per-channel mean subtracted, in `channel_order`, on the 0-255 scale. */
    mean: Type.Array(Type.Number(), { minItems: 3, maxItems: 3, default: [0, 0, 0] }),
    /** Per-channel divisor applied after the mean, in `channel_order`. */
    std: Type.Array(Type.Number({ exclusiveMinimum: 0 }), { minItems: 3, maxItems: 3, default: [255, 255, 255] }),
    /** Tensor layout: `nhwc` ([batch, height, width, 3]) or `nchw` ([batch, 3, height, width]). */
    layout: Type.Union([Type.Literal('nhwc'), Type.Literal('nchw')], { default: 'nhwc' }),
    /** Largest accepted encoded image, bytes; above it 400 `invalid_image` (gateway) or 413 when the whole body is too large. */
    max_image_bytes: Type.Integer({ minimum: 1, default: 10_485_760 }),
    /** Largest decoded image, width × height pixels (sharp `limitInputPixels`); above it `invalid_image`. */
    max_input_pixels: Type.Integer({ minimum: 1, default: 40_000_000 }),
    /**
     * Longest side of an accepted image, pixels; above it `invalid_image`. Bounds what one decode may
     * cost where the pixel count does not: a 1 × 40,000,000 PNG is within max_input_pixels but takes
     * seconds of libvips time, since its resize runs over one enormous row.
     */
    max_image_side: Type.Integer({ minimum: 1, default: 16_384 }),
  },
  { additionalProperties: false },
);
export type ImagePreprocessConfig = Static<typeof ImagePreprocessConfig>;

/** A file name inside the version folder: no folder part, not `.` or `..`. */
const VersionFileName = (description: string, fallback = 'labels.txt') => Type.String({ pattern: '^(?!\\.\\.?$)[^/\\\\]+$', default: fallback, description });

/** One NanoDet detection head: its stride and the graph tensors it reads. */
export const NanodetHead = Type.Object(
  {
    /** Model-input pixels per grid cell. */
    stride: Type.Integer({ minimum: 1 }),
    /** Node name of the `[B, classes, H, W]` class scores (after the sigmoid). */
    scores: Type.String({ minLength: 1 }),
    /** Node name of the `[B, 4·(R+1), H, W]` box logits, side-major (left, top, right, bottom bins). */
    boxes: Type.String({ minLength: 1 }),
  },
  { additionalProperties: false },
);
export type NanodetHead = Static<typeof NanodetHead>;

/** Output decoding of a NanoDet detector (Generalized Focal Loss, https://github.com/RangiLyu/nanodet). */
export const NanodetPostprocessConfig = Type.Object(
  {
    type: Type.Literal('nanodet'),
    /** Smallest class score a detection keeps, 0..1. */
    score_threshold: Type.Number({ minimum: 0, maximum: 1, default: 0.4 }),
    /** IoU, 0..1, at or above which a lower-scored box of the same class is suppressed. */
    iou_threshold: Type.Number({ minimum: 0, maximum: 1, default: 0.5 }),
    /** Class names, one per line, line n = class n. */
    labels_file: VersionFileName('Labels asset in the version folder.'),
    /** The heads, any order. */
    heads: Type.Array(NanodetHead, { minItems: 1 }),
  },
  { additionalProperties: false },
);
export type NanodetPostprocessConfig = Static<typeof NanodetPostprocessConfig>;

/** Output decoding of a classifier: probabilities, the argmax label, and optionally an inner layer as an embedding. */
export const ClassifierPostprocessConfig = Type.Object(
  {
    type: Type.Literal('classifier'),
    /** Class names, one per line, line n = output n. */
    labels_file: VersionFileName('Labels asset in the version folder.'),
    /** Layer whose output is returned as `embedding` (L2-normalized); absent = no embedding. */
    embedding_layer: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);
export type ClassifierPostprocessConfig = Static<typeof ClassifierPostprocessConfig>;

/**
 * A classifier head of an `embedding-bag` model: a TF.js layers model in the version folder
 * (https://www.tensorflow.org/js/guide/save_load#model_json) applied to the bag embedding,
 * `[batch, D]` → `[batch, classes]` softmax, decoded by the `classifier` postprocess.
 */
export const EmbeddingHeadConfig = Type.Object(
  {
    /** The head's `model.json` in the version folder (its weight shards named in its manifest beside it). */
    model_file: VersionFileName('Layers model file in the version folder.', 'head.json'),
  },
  { additionalProperties: false },
);
export type EmbeddingHeadConfig = Static<typeof EmbeddingHeadConfig>;

/** TF Serving's version policy (https://www.tensorflow.org/tfx/serving/serving_config). */
export const VersionPolicy = Type.Union([
  Type.Object({ latest: Type.Object({ num_versions: Type.Integer({ minimum: 1, default: 1 }) }) }, { additionalProperties: false }),
  Type.Object({ specific: Type.Object({ versions: Type.Array(Type.Integer({ minimum: 1 }), { minItems: 1 }) }) }, { additionalProperties: false }),
  Type.Object({ all: Type.Object({}) }, { additionalProperties: false }),
]);
export type VersionPolicy = Static<typeof VersionPolicy>;

/** A version label: a lower-case name that is not a number (`stable`, `canary`). */
export const LABEL_PATTERN = '^[a-z][a-z0-9_-]{0,63}$';
/** A key of `traffic`: a label or a version number. */
const TRAFFIC_KEY_PATTERN = '^([a-z][a-z0-9_-]{0,63}|[1-9][0-9]*)$';

export const ModelConfig = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z0-9][a-z0-9_.-]{0,63}$' }),
    description: Type.Optional(Type.String()),
    platform: Type.Union([
      Type.Literal('embedding-bag'),
      Type.Literal('tfjs-graph'),
      Type.Literal('tfjs-layers'),
      Type.Literal('tf-savedmodel'),
    ]),
    signature: Type.Object(
      { inputs: Type.Array(TensorSpec, { minItems: 1 }), outputs: Type.Array(TensorSpec, { minItems: 1 }) },
      { additionalProperties: false },
    ),
    preprocess: Type.Optional(Type.Union([TextPreprocessConfig, ImagePreprocessConfig])),
    /** Output decoding, by model family (`nanodet` detector, `classifier`); absent = the platform's own outputs. */
    postprocess: Type.Optional(Type.Union([NanodetPostprocessConfig, ClassifierPostprocessConfig])),
    /** `embedding-bag` only: a layers model applied to the embedding (needs a `classifier` postprocess); absent = the embedding is the output. */
    head: Type.Optional(EmbeddingHeadConfig),
    batching: Type.Optional(BatchingConfig),
    queue: Type.Optional(QueueConfig),
    /** Absent = the worker's INSTANCE_COUNT (1 by default; `inferline start` sets it to the number of cores). */
    instance_group: Type.Optional(InstanceGroupConfig),
    /**
     * Under a worker's MODEL_MEMORY_BUDGET_MB, load the served versions at start instead of on the first
     * request (without a budget every served version is loaded at start anyway).
     */
    preload: Type.Optional(Type.Boolean({ default: false })),
    /**
     * Partitions of the model's request streams (default 1): the gateway spreads the model's requests
     * over this many shards, each with its own hash tag (`{m:<model>}`, `{m:<model>~1}`, ...), so on a
     * Redis Cluster one busy model uses several masters. Workers consume every partition. Per
     * partition: the streams (every priority level), dead letters, admission, job records,
     * idempotency keys and tenant counts; `max_queue_size` and a tenant's `max_queued` are checked
     * per partition against ceil(limit / partitions). Raising it takes effect at once; lower it only
     * on a drained model (entries left on a removed partition are read until the version unloads).
     */
    partitions: Type.Optional(Type.Integer({ minimum: 1, maximum: 256, default: 1 })),
    /**
     * Admit requests for the versions the policy selects even while no live worker holds them, so an
     * autoscaler that counts the stream's entries (KEDA `redis-streams`, `streamLength`, minReplicaCount 0)
     * can scale the model's workers to zero and back: requests wait in the stream until a worker starts
     * (bounded by `timeout_ms` / `batching.default_timeout_ms`, enforced by that worker), and the
     * gateways' readiness does not wait for the model. A version whose load failed on a live worker is
     * still refused. Default false: with no live worker the gateway answers 503 model_unavailable.
     */
    scale_to_zero: Type.Optional(Type.Boolean({ default: false })),
    version_policy: Type.Optional(VersionPolicy),
    /** Label → version (`{"stable": 1, "canary": 2}`); a label may point only to a served version. */
    version_labels: Type.Optional(Type.Record(Type.String({ pattern: LABEL_PATTERN }), Type.Integer({ minimum: 1 }))),
    /**
     * Traffic split of requests that name neither a version nor a label: weight per label or version
     * number (`{"stable": 90, "canary": 10}`, `{"1": 50, "2": 50}`); a weighted random draw over the
     * entries whose version is AVAILABLE. Absent = the latest available version.
     */
    traffic: Type.Optional(Type.Record(Type.String({ pattern: TRAFFIC_KEY_PATTERN }), Type.Number({ minimum: 0 }))),
  },
  { additionalProperties: false },
);
/** A model config as written in `config.json`, before defaults are applied. */
export type ModelConfigInput = Static<typeof ModelConfig>;

/** A validated model config with every default applied. */
export type ModelConfig = ModelConfigInput & {
  batching: BatchingConfig;
  queue: QueueConfig;
  preload: boolean;
  partitions: number;
  scale_to_zero: boolean;
  version_policy: VersionPolicy;
  version_labels: Record<string, number>;
};

/**
 * Validate a parsed `config.json` and apply defaults.
 * @throws InferlineError `invalid_config` naming the first offending field (JSON pointer).
 */
export function parseModelConfig(raw: unknown, source = 'config.json'): ModelConfig {
  const withDefaults = Value.Default(ModelConfig, structuredClone(raw)) as Record<string, unknown>;
  withDefaults.batching = Value.Default(BatchingConfig, withDefaults.batching ?? {});
  withDefaults.queue = Value.Default(QueueConfig, withDefaults.queue ?? {});
  withDefaults.preload ??= false;
  withDefaults.partitions ??= 1;
  withDefaults.scale_to_zero ??= false;
  withDefaults.version_policy ??= { latest: { num_versions: 1 } };
  withDefaults.version_labels ??= {};
  // Sections that are a union by `type` are checked against their own schema first, so that an error
  // names the field inside the section rather than "expected one of the union".
  withDefaults.preprocess = checkSection(source, 'preprocess', withDefaults.preprocess, { image: ImagePreprocessConfig, 'glove-tokenizer': TextPreprocessConfig });
  withDefaults.postprocess = checkSection(source, 'postprocess', withDefaults.postprocess, { nanodet: NanodetPostprocessConfig, classifier: ClassifierPostprocessConfig });
  const first = Value.Errors(ModelConfig, withDefaults).First();
  if (first) {
    throw new InferlineError('invalid_config', `${source}: field ${first.path || '/'}: ${first.message}`);
  }
  const config = withDefaults as ModelConfig;
  if (config.head && config.platform !== 'embedding-bag') {
    throw new InferlineError('invalid_config', `${source}: field /head: only an embedding-bag model takes a head (platform is "${config.platform}")`);
  }
  if (config.head && config.postprocess?.type !== 'classifier') {
    throw new InferlineError('invalid_config', `${source}: field /postprocess: a head's outputs are decoded by a "classifier" postprocess`);
  }
  if (config.traffic) {
    const entries = Object.entries(config.traffic);
    for (const [key] of entries) {
      if (/^[a-z]/.test(key) && !(key in config.version_labels)) {
        throw new InferlineError('invalid_config', `${source}: field /traffic/${key}: no such label in version_labels`);
      }
    }
    if (!entries.some(([, weight]) => weight > 0)) throw new InferlineError('invalid_config', `${source}: field /traffic: at least one weight must be above 0`);
  }
  const { priority_levels: levels, default_priority_level: defaultLevel } = config.batching;
  if (defaultLevel !== undefined && defaultLevel > levels) {
    throw new InferlineError('invalid_config', `${source}: field /batching/default_priority_level: ${defaultLevel} is above priority_levels (${levels})`);
  }
  if (config.instance_group?.kind === 'main_thread' && (config.instance_group.count ?? 1) !== 1) {
    throw new InferlineError('invalid_config', `${source}: field /instance_group/count: a "main_thread" instance group has one instance`);
  }
  const sizes = config.batching.allowed_batch_sizes;
  if (sizes.length > 0) {
    const increasing = sizes.every((size, i) => i === 0 || size > (sizes[i - 1] ?? 0));
    if (!increasing || sizes.at(-1) !== config.batching.max_batch_size) {
      throw new InferlineError(
        'invalid_config',
        `${source}: field /batching/allowed_batch_sizes: must increase and end at max_batch_size (${config.batching.max_batch_size})`,
      );
    }
  }
  return config;
}

/**
 * Apply defaults to a section chosen by its `type` and validate it against that type's schema.
 * @throws InferlineError `invalid_config` naming the field (`/<section>/<field>`).
 */
function checkSection(source: string, section: string, raw: unknown, schemas: Record<string, TSchema>): unknown {
  if (raw === undefined) return raw;
  const type: unknown = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>).type : undefined;
  const schema = typeof type === 'string' ? schemas[type] : undefined;
  if (!schema) {
    throw new InferlineError('invalid_config', `${source}: field /${section}/type: expected one of ${Object.keys(schemas).map((t) => `"${t}"`).join(', ')}`);
  }
  const value: unknown = Value.Default(schema, structuredClone(raw));
  const first = Value.Errors(schema, value).First();
  if (first) throw new InferlineError('invalid_config', `${source}: field /${section}${first.path}: ${first.message}`);
  return value;
}

/**
 * The last valid config read from each path, with its text: the repository is re-read every
 * poll_interval_ms, and validating an unchanged file again is most of what an idle gateway does.
 */
const validConfigs = new Map<string, { text: string; config: ModelConfig }>();

/**
 * Read and validate `<modelDir>/config.json` (a file whose text did not change since it was last
 * validated answers the same config object: treat it as read-only).
 * @throws InferlineError `invalid_config` when the file is missing, not JSON, or invalid.
 */
export async function loadModelConfig(modelDir: string): Promise<ModelConfig> {
  const path = `${modelDir}/config.json`;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new InferlineError('invalid_config', `${path}: cannot read: ${(error as Error).message}`);
  }
  const known = validConfigs.get(path);
  if (known?.text === text) return known.config;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new InferlineError('invalid_config', `${path}: not JSON: ${(error as Error).message}`);
  }
  const config = parseModelConfig(raw, path);
  validConfigs.set(path, { text, config });
  return config;
}

/**
 * The priority level a request is queued at: its `priority` (1 = highest), else the model's
 * `default_priority_level`, else the lowest level.
 * @throws InferlineError `invalid_input` when `priority` is above the model's `priority_levels`.
 */
export function priorityLevel(batching: BatchingConfig, priority: number | undefined): number {
  const levels = batching.priority_levels;
  if (priority === undefined) return batching.default_priority_level ?? levels;
  if (priority > levels) throw new InferlineError('invalid_input', `body: "priority" ${priority} is above the model's priority_levels (${levels}); 1 is the highest`);
  return priority;
}
