import { Type, type Static } from '@sinclair/typebox';

/**
 * Wire shapes of the native API (DESIGN.md section 8). TypeScript types are derived from the schemas;
 * the gateway validates bodies and serializes replies with them.
 */

/** Terminal and non-terminal job states (DESIGN.md section 2). */
export const JOB_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'expired'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
export const TERMINAL_STATUSES: ReadonlySet<string> = new Set(['succeeded', 'failed', 'cancelled', 'expired']);

/** `POST /v1/jobs` body. */
export const JobCreateBody = Type.Object(
  {
    model: Type.String({ minLength: 1, maxLength: 64 }),
    version: Type.Optional(Type.Integer({ minimum: 1 })),
    input: Type.Unknown({ description: 'Text as a JSON string (for a text model).' }),
  },
  { additionalProperties: false },
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
  inference_ms: Type.Number({ description: 'Preprocessing + forward pass + postprocessing of its whole batch.' }),
  batch_size: Type.Integer({ description: 'Requests in the forward pass that served it.' }),
  batch_id: Type.String({ description: 'The batch that served it (`<worker consumer>-<n>`), as in the worker log.' }),
});

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
