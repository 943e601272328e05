/**
 * What the gateway knows about a request that its log line and error log should carry
 * (`job_id`, `model`, `version`, DESIGN.md section 9). Handlers fill it in as they learn it.
 */
export interface LogContext {
  job_id?: string;
  /** The tenant of the request's API key. */
  tenant?: string;
  model?: string;
  version?: number;
  group_id?: string;
  /** Inputs of a group request. */
  inputs?: number;
  /** Number of jobs of a sync compatibility call. */
  jobs?: number;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Fields added to this request's log line; see {@link LogContext}. */
    logContext: LogContext;
    /**
     * Set once the route's own preValidation runs, i.e. after @fastify/multipart has read the body:
     * an error raised before that point on a multipart request is the body's fault (400).
     */
    bodyRead: boolean;
  }
}
