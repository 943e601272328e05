import { Type, type Static } from '@sinclair/typebox';
import { TensorSpec } from '@inferline/shared';

/**
 * Reply shapes of the model routes. `ModelStatusReply` and `ModelMetadataReply` are TF Serving's
 * (GetModelStatus, GetModelMetadata over REST); `ModelList` is inferline's own.
 */

/** One model of `GET /v1/models`. */
export const ModelSummary = Type.Object({
  name: Type.String(),
  description: Type.Optional(Type.String()),
  platform: Type.String(),
  /** Versions the policy selects and versions live workers still hold, ascending, each with its state (TF Serving's). */
  versions: Type.Array(Type.Object({ version: Type.Integer(), state: Type.String() })),
  /** The version a request naming none goes to without a traffic split; null when none is served. */
  default_version: Type.Union([Type.Integer(), Type.Null()]),
  /** Label → version (`version_labels`). */
  version_labels: Type.Record(Type.String(), Type.Integer()),
  /** Weights of the traffic split over labels or versions, when configured. */
  traffic: Type.Optional(Type.Record(Type.String(), Type.Number())),
  signature: Type.Object({ inputs: Type.Array(TensorSpec), outputs: Type.Array(TensorSpec) }),
  /** Workers heartbeating for this model within 3 heartbeat periods. */
  workers: Type.Integer(),
  /**
   * What each of those workers holds: version → its state there, and `loaded` (false for a version a
   * worker under MODEL_MEMORY_BUDGET_MB serves on demand but has not loaded, or evicted).
   */
  worker_versions: Type.Array(
    Type.Object({
      consumer: Type.String(),
      backend: Type.String(),
      versions: Type.Record(
        Type.String(),
        Type.Object({ state: Type.String(), loaded: Type.Optional(Type.Boolean()), loaded_at: Type.Optional(Type.String()), error: Type.Optional(Type.String()) }),
      ),
    }),
  ),
});
export type ModelSummary = Static<typeof ModelSummary>;

export const ModelList = Type.Object({ models: Type.Array(ModelSummary) });
export type ModelList = Static<typeof ModelList>;

/** `GET /v1/models/:name[/versions/:v]`, TF Serving's `model_version_status` shape. */
export const ModelStatusReply = Type.Object({
  model_version_status: Type.Array(
    Type.Object({
      version: Type.String(),
      state: Type.String(),
      status: Type.Object({ error_code: Type.String(), error_message: Type.String() }),
    }),
  ),
});
export type ModelStatusReply = Static<typeof ModelStatusReply>;

/** TF Serving's TensorInfo as REST shows it. */
const TensorInfo = Type.Object({
  dtype: Type.String(),
  tensor_shape: Type.Object({
    dim: Type.Array(Type.Object({ size: Type.String(), name: Type.String() })),
    unknown_rank: Type.Boolean(),
  }),
  name: Type.String(),
});

/** `GET /v1/models/:name[/versions/:v]/metadata`, TF Serving's GetModelMetadata shape. */
export const ModelMetadataReply = Type.Object({
  model_spec: Type.Object({ name: Type.String(), signature_name: Type.String(), version: Type.String() }),
  metadata: Type.Object({
    signature_def: Type.Object({
      signature_def: Type.Record(
        Type.String(),
        Type.Object({
          inputs: Type.Record(Type.String(), TensorInfo),
          outputs: Type.Record(Type.String(), TensorInfo),
          method_name: Type.String(),
        }),
      ),
    }),
  }),
});
export type ModelMetadataReply = Static<typeof ModelMetadataReply>;
