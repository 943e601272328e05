import { ERROR_STATUS, InferlineError, TERMINAL_STATUSES, newJobId, type ErrorCode, type JobView, type Tenant } from '@inferline/shared';
import { admitJobs, checkBulkSize } from './enqueue-jobs.ts';
import { toJobView } from './job-view.ts';
import type { LogContext } from './log-context.ts';
import type { ResolvedModel, VersionSelector } from './model-catalog.ts';
import { outputTensors, selectOutputs, tensorRows, type RequestTensor, type ResponseTensor } from './oip-tensors.ts';
import type { RouteContext } from './route-context.ts';
import { waitForJobs } from './wait-for-jobs.ts';
import { chooseShard } from './partition-choice.ts';

/** What a synchronous call needs of the gateway (a route's context, or the gRPC server's). */
export type SyncJobsDeps = Pick<RouteContext, 'redis' | 'events' | 'models' | 'metrics' | 'settings'>;

/** One synchronous call: one job per input row, for one model version. */
export interface SyncJobsRequest {
  model: string;
  selector: VersionSelector;
  /** The caller's resolution of `model` + `selector` (it read the signature with it). */
  target: ResolvedModel;
  /** One job input per row, in row order (as readInputs accepts them). */
  inputs: readonly unknown[];
  /** How the protocol names the rows, for the bulk-size error (`instances`, `rows of "text"`). */
  what: string;
  /** Longest wait for the jobs, ms (the caller caps it by `max_wait_s`). */
  waitMs: number;
  /** Aborts the wait (client gone, shutdown); the jobs stay queued and run. */
  signal: AbortSignal;
  log?: LogContext;
  /** The caller's tenant: owns the jobs, counted against its `max_queued`. */
  tenant?: Tenant;
}

/**
 * Run a synchronous compatibility call (TF Serving :predict, OIP v2 infer, gRPC ModelInfer and Predict) through the queue:
 * one job per input row, admitted all or nothing by {@link admitJobs} (validation, `queue_full`, a
 * version switch), waited for with {@link waitForJobs} (job events; no polling), answered in row order.
 * The wait is also the rows' queue deadline (or the model's `default_timeout_ms` when shorter): a row
 * still queued when its caller has stopped waiting fails `deadline_exceeded` without inference instead
 * of running for nobody.
 *
 * @returns the version that served the rows and each row's output (`{<output name>: value}`), in row order.
 * @throws InferlineError as admitJobs (`invalid_input`, `queue_full`, `model_unavailable`, ...);
 *   `payload_too_large` over `max_bulk_inputs`; the first failed row's own error (its code, else
 *   `inference_failed`); `deadline_exceeded` when a row is unfinished after `waitMs` (the jobs stay
 *   queued and run: the message names the first one to poll).
 */
export async function runSyncJobs(deps: SyncJobsDeps, request: SyncJobsRequest): Promise<{ target: ResolvedModel; outputs: Record<string, unknown>[] }> {
  checkBulkSize(request.inputs.length, deps.settings.max_bulk_inputs, request.what);
  const shard = chooseShard(request.target.config);
  const ids = request.inputs.map(() => newJobId(shard));
  if (request.log) request.log.jobs = ids.length;
  // Watch before enqueueing: a job can finish before the enqueue call returns.
  const watch = deps.events.watch(ids, { terminalOnly: true });
  const timeoutMs = Math.max(1, Math.ceil(Math.min(request.waitMs, request.target.config.batching.default_timeout_ms ?? Infinity)));
  let views: JobView[];
  let target: ResolvedModel;
  try {
    const admitted = await admitJobs(deps.models, deps.redis, deps.metrics, {
      model: request.model,
      selector: request.selector,
      inputs: request.inputs,
      jobIds: ids,
      target: request.target,
      policy: { timeout_ms: timeoutMs },
      ...(request.tenant ? { tenant: request.tenant } : {}),
    });
    target = admitted.target;
    if (request.log) request.log.version = target.version;
    views = (await waitForJobs(deps.redis, watch, request.waitMs, request.signal, admitted.records)).map(toJobView);
  } finally {
    watch.close();
  }
  return { target, outputs: views.map(finishedOutput) };
}

/**
 * {@link runSyncJobs} for the tensor protocols (OIP v2 REST and gRPC, TF Serving gRPC Predict): the
 * request's tensors become one job input per row (`tensorRows`), the `requested` output names are
 * checked before anything is queued (`selectOutputs`; all outputs when absent), and the rows' outputs
 * come back as response tensors (`outputTensors`).
 * @throws InferlineError `invalid_input` for tensors that do not fit the signature or an unknown
 *   output name, and as runSyncJobs.
 */
export async function runTensorJobs(
  deps: SyncJobsDeps,
  request: Omit<SyncJobsRequest, 'inputs' | 'what'> & { tensors: readonly RequestTensor[]; requested?: readonly string[] | undefined },
): Promise<{ target: ResolvedModel; tensors: ResponseTensor[] }> {
  const { tensors, requested, ...call } = request;
  const inputs = tensorRows(call.target.config, tensors);
  selectOutputs(call.target.config, requested);
  const { target, outputs } = await runSyncJobs(deps, { ...call, inputs, what: `rows of "${tensors[0]?.name ?? ''}"` });
  return { target, tensors: outputTensors(target.config, outputs, requested) };
}

/**
 * The output of one job that must have succeeded.
 * @throws InferlineError its own error when it failed, `deadline_exceeded` when it is not terminal.
 */
function finishedOutput(view: JobView): Record<string, unknown> {
  if (!TERMINAL_STATUSES.has(view.status)) {
    throw new InferlineError('deadline_exceeded', `job ${view.id} is still ${view.status} when the wait ran out; poll GET /v1/jobs/${view.id}`);
  }
  if (view.status !== 'succeeded') {
    const code = view.error && view.error.code in ERROR_STATUS ? (view.error.code as ErrorCode) : 'inference_failed';
    throw new InferlineError(code, `job ${view.id} ${view.status}: ${view.error?.message ?? 'no result'}`);
  }
  return view.output ?? {};
}
