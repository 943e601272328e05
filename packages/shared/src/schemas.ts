import { Type, type Static } from '@sinclair/typebox';

/**
 * Wire shapes of the native API (DESIGN.md section 8). TypeScript types are derived from the schemas;
 * the gateway validates bodies and serializes replies with them.
 */

/** Terminal and non-terminal job states (DESIGN.md section 2). */
export const JOB_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'expired'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
export const TERMINAL_STATUSES: ReadonlySet<string> = new Set(['succeeded', 'failed', 'cancelled', 'expired']);

/** A request's priority level (Triton's `priority`): 1 = highest, up to the model's `batching.priority_levels`. */
export const PriorityField = Type.Integer({ minimum: 1, maximum: 16, description: "Priority level: 1 = highest, up to the model's batching.priority_levels; absent = its default_priority_level." });

/** A request's queue deadline, ms from its acceptance (Triton's queue policy timeout with REJECT). */
export const TimeoutField = Type.Integer({
  minimum: 1,
  maximum: 86_400_000,
  description: "Queue deadline, ms from acceptance: still queued when its batch is formed after it, the request fails deadline_exceeded without inference; absent = the model's batching.default_timeout_ms.",
});

/** `callback_url` of a job or group: where its terminal view is POSTed, signed (callbacks.ts). */
const CallbackUrl = Type.String({
  minLength: 1,
  maxLength: 2048,
  description: 'http(s) URL that receives the terminal view as a signed POST (`Inferline-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`).',
});

/** `POST /v1/jobs` body: one request (`input`), or the bulk form (`inputs`, one job each, in order). */

export const JobCreateBody = Type.Object(
  {
    model: Type.String({ minLength: 1, maxLength: 64 }),
    version: Type.Optional(Type.Integer({ minimum: 1 })),
    label: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'A version label of the model (`version_labels`, e.g. "canary"); not with `version`.' })),
    input: Type.Optional(Type.Unknown({ description: 'Text as a JSON string (text model), {"b64": ...} (image model).' })),
    inputs: Type.Optional(Type.Array(Type.Unknown(), { minItems: 1, description: 'Bulk form: each input becomes its own job, answered in order; stored all or nothing.' })),
    priority: Type.Optional(PriorityField),
    timeout_ms: Type.Optional(TimeoutField),
    callback_url: Type.Optional(CallbackUrl),
  },
  { additionalProperties: false, examples: [{ model: 'glove-embed', input: 'Call me Ishmael.' }] },
);
export type JobCreateBody = Static<typeof JobCreateBody>;

/** `{"error":{"code","message"}}`, every error reply. */
export const ErrorReply = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String() }, { additionalProperties: true }),
});
export type ErrorReply = Static<typeof ErrorReply>;

/** Per-job timings, ms. */
export const JobTimings = Type.Object({
  queue_ms: Type.Number({ description: 'From acceptance to the start of its batch.' }),
  load_ms: Type.Optional(Type.Number({ description: 'Part of queue_ms spent waiting for its version to load (a version loaded on demand under MODEL_MEMORY_BUDGET_MB); absent when it did not wait.' })),
  inference_ms: Type.Number({ description: 'Preprocessing + forward pass + postprocessing of its whole batch.' }),
  batch_size: Type.Integer({ description: 'Requests in the forward pass that served it.' }),
  batch_id: Type.String({ description: 'The batch that served it (`<worker consumer>-<n>`), as in the worker log.' }),
});

export type JobTimings = Static<typeof JobTimings>;

/** `GET /v1/jobs/:id` reply (and the `202` reply of `POST /v1/jobs`, without output). */
export const JobView = Type.Object({
  id: Type.String(),
  model: Type.String(),
  version: Type.Integer(),
  status: Type.Union(JOB_STATUSES.map((s) => Type.Literal(s))),
  created_at: Type.String({ description: 'ISO 8601' }),
  output: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
  timings: Type.Optional(JobTimings),
});
export type JobView = Static<typeof JobView>;

/** Reply of the bulk form of `POST /v1/jobs`: one view per input, in input order. */
export const JobList = Type.Object({ jobs: Type.Array(JobView) });
export type JobList = Static<typeof JobList>;

/**
 * Reducers of an aggregation group (DESIGN.md section 5):
 * - `mean`, `sum`, `max`, `min`: element-wise over one float32 tensor output of every member;
 * - `collect`: every member's output, in input order;
 * - `labels`: every member's `label` joined with ", " in input order;
 * - `vote`: the most frequent label, its count, and the count of every label;
 * - `boxes` (detectors): every input image with its detections drawn, tiled into one PNG.
 */
export const REDUCERS = ['mean', 'sum', 'max', 'min', 'collect', 'labels', 'vote', 'boxes'] as const;
export type ReducerName = (typeof REDUCERS)[number];

/**
 * Reducers that need each member's input until the reduce (they draw on the images): the gateway
 * keeps the inputs of such groups (`keep_inputs`), and the aggregator hands them to the reducer's `add`.
 */
export const REDUCERS_KEEPING_INPUTS: ReadonlySet<ReducerName> = new Set(['boxes']);

/** What a failed member does to its group: `fail` fails the group at once, `skip` leaves it out. */
export const ON_ITEM_ERROR = ['fail', 'skip'] as const;
export type OnItemError = (typeof ON_ITEM_ERROR)[number];

/** Group states: `open` (taking chunks) → `queued` (closed, members running) → `reducing` → terminal. */
export const GROUP_STATUSES = ['open', 'queued', 'reducing', 'succeeded', 'failed', 'cancelled'] as const;
export type GroupStatus = (typeof GROUP_STATUSES)[number];

/** `POST /v1/groups` body. Without `inputs` the group is created empty and `open` for chunks. */
export const GroupCreateBody = Type.Object(
  {
    model: Type.String({ minLength: 1, maxLength: 64 }),
    version: Type.Optional(Type.Integer({ minimum: 1 })),
    label: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'A version label of the model (`version_labels`); not with `version`.' })),
    inputs: Type.Optional(Type.Array(Type.Unknown(), { description: 'Member inputs, as `input` of POST /v1/jobs. Present = the group is closed at once.' })),
    reduce: Type.Union(REDUCERS.map((r) => Type.Literal(r))),
    output: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'Member output the reducer reads (default: per reducer).' })),
    on_item_error: Type.Optional(Type.Union(ON_ITEM_ERROR.map((r) => Type.Literal(r)), { default: 'fail' })),
    priority: Type.Optional(PriorityField),
    timeout_ms: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 86_400_000, description: "Queue deadline of the whole group, ms from its creation: members still queued after it fail deadline_exceeded without inference (as on_item_error decides); absent = the model's batching.default_timeout_ms." }),
    ),
    callback_url: Type.Optional(CallbackUrl),
  },
  { additionalProperties: false },
);
export type GroupCreateBody = Static<typeof GroupCreateBody>;

/** `POST /v1/groups/:id/inputs` body: one chunk of an open group. */
export const GroupInputsBody = Type.Object(
  {
    inputs: Type.Array(Type.Unknown(), { minItems: 1 }),
    start: Type.Optional(
      Type.Integer({ minimum: 0, description: 'Index of the chunk\'s first input; when set, the chunk is refused with 409 `index_conflict` unless the group holds exactly `start` inputs (makes a retried chunk safe).' }),
    ),
  },
  { additionalProperties: false },
);
export type GroupInputsBody = Static<typeof GroupInputsBody>;

/** `GET /v1/groups/:id` reply (and the reply of every group route). */
export const GroupView = Type.Object({
  id: Type.String(),
  model: Type.String(),
  version: Type.Integer(),
  reduce: Type.Union(REDUCERS.map((r) => Type.Literal(r))),
  output_name: Type.Optional(Type.String({ description: 'The member output the reducer reads.' })),
  on_item_error: Type.Union(ON_ITEM_ERROR.map((r) => Type.Literal(r))),
  status: Type.Union(GROUP_STATUSES.map((s) => Type.Literal(s))),
  size: Type.Integer({ description: 'Inputs added so far.' }),
  completed: Type.Integer({ description: 'Members that succeeded.' }),
  failed: Type.Integer({ description: 'Members that failed.' }),
  created_at: Type.String({ description: 'ISO 8601' }),
  finished_at: Type.Optional(Type.String({ description: 'ISO 8601' })),
  output: Type.Optional(Type.Unknown({ description: 'The reduced output, once succeeded.' })),
  failed_indexes: Type.Optional(Type.Array(Type.Integer(), { description: 'With on_item_error "skip": the members left out, once succeeded.' })),
  error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
});
export type GroupView = Static<typeof GroupView>;
