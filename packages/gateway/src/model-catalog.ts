import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import {
  InferlineError,
  MODEL_UNAVAILABLE_RETRY_AFTER_S,
  scanRepository,
  type LiveVersion,
  type Logger,
  type ModelConfig,
  type RepositoryFailure,
  type RepositoryModel,
  type RepositoryScan,
} from '@inferline/shared';

/** What a request names of a model: a version, a label (`version_labels`), or neither. */
export interface VersionSelector {
  version?: number;
  label?: string;
}

const NO_VERSIONS: ReadonlyMap<number, LiveVersion> = new Map();

/**
 * `503 model_unavailable` for a selected version no live worker has AVAILABLE, saying why.
 */
function unavailable(name: string, version: number, live: LiveVersion | undefined): InferlineError {
  const why =
    live?.state === 'LOADING'
      ? 'is loading'
      : live?.state === 'END' && live.error
        ? `failed to load: ${live.error}`
        : live?.state === 'UNLOADING'
          ? 'is being unloaded'
          : 'is not loaded by any live worker yet';
  return new InferlineError('model_unavailable', `model "${name}" version ${version} ${why}; retry later`, { retry_after_s: MODEL_UNAVAILABLE_RETRY_AFTER_S });
}

/** A model version the gateway accepts requests for. */
export interface ResolvedModel {
  model: RepositoryModel;
  config: ModelConfig;
  version: number;
}

/**
 * The gateway's view of the model repository (`scanRepository(root)`), re-read every
 * `pollIntervalMs` on an unref'd timer, and of what the workers hold (their heartbeats,
 * {@link ModelCatalog.followWorkers}): a request is resolved to a version the policy selects and a live
 * worker has AVAILABLE. The gateway only needs configs and which version folders are complete; it
 * never loads weights.
 *
 * A model whose config is invalid keeps its last good view if it had one, else is left out (requests
 * for it answer 404 with the config error); failures are logged whenever they change, and the other
 * models are served. A re-scan that cannot read the repository folder keeps the last good view.
 */
export class ModelCatalog {
  #models: ReadonlyMap<string, RepositoryModel>;
  #failures: ReadonlyMap<string, RepositoryFailure> = new Map();
  #timer: NodeJS.Timeout | undefined;
  #refreshing = false;
  #live: ReadonlyMap<string, ReadonlyMap<number, LiveVersion>> = new Map();
  #readLive: ((model: string) => Promise<ReadonlyMap<number, LiveVersion>>) | undefined;
  #liveTimer: NodeJS.Timeout | undefined;
  #liveRead: Promise<void> | undefined;
  readonly #random: () => number;

  /** Use {@link ModelCatalog.open}; this constructor takes an already scanned repository. */
  constructor(
    scan: RepositoryScan,
    private readonly root: string,
    private readonly logger: Logger,
    trafficSeed?: number,
  ) {
    if (trafficSeed === undefined) this.#random = Math.random;
    else {
      const rng = xoroshiro128plus(trafficSeed);
      this.#random = () => uniformFloat64(rng);
    }
    this.#models = new Map();
    this.#apply(scan);
  }

  /**
   * Scan `root` once and start re-scanning every `pollIntervalMs`.
   * @param trafficSeed seeds the traffic split's draw (reproducible tests); undefined = Math.random
   * @throws InferlineError `invalid_config` when the repository folder cannot be read.
   */
  static async open(root: string, pollIntervalMs: number, logger: Logger, trafficSeed?: number): Promise<ModelCatalog> {
    let scan: RepositoryScan;
    try {
      scan = await scanRepository(root);
    } catch (error) {
      throw new InferlineError('invalid_config', `model repository ${root}: ${(error as Error).message}`);
    }
    const catalog = new ModelCatalog(scan, root, logger, trafficSeed);
    catalog.#timer = setInterval(() => void catalog.refresh(), pollIntervalMs);
    catalog.#timer.unref();
    logger.info({ models: scan.models.map((m) => ({ name: m.config.name, served: m.served })) }, 'model repository read');
    return catalog;
  }

  /**
   * Take a scan's models and failures; log the failures when they changed. A model that was served
   * and whose config turns invalid (say, mid-edit) keeps its last good view, as Triton keeps serving a
   * model whose reload failed.
   */
  #apply(scan: RepositoryScan): void {
    const models = new Map(scan.models.map((m) => [m.config.name, m]));
    const failures = new Map<string, RepositoryFailure>();
    for (const failure of scan.failures) {
      const previous = this.#models.get(failure.name);
      if (previous) models.set(failure.name, previous);
      failures.set(failure.name, failure);
    }
    const changed = scan.failures.some((failure) => this.#failures.get(failure.name)?.message !== failure.message);
    if (changed) this.logger.error({ failures: scan.failures }, 'model configs invalid; those models keep their last good config, or are not served');
    this.#models = models;
    this.#failures = failures;
  }

  /** Re-read the repository now; on failure keep the current view and log. Never throws. */
  async refresh(): Promise<void> {
    if (this.#refreshing) return;
    this.#refreshing = true;
    try {
      this.#apply(await scanRepository(this.root));
    } catch (error) {
      this.logger.error({ err: error, model_repository: this.root }, 'model repository re-scan failed; keeping the previous view');
    } finally {
      this.#refreshing = false;
    }
  }

  /** Every model, by name. */
  list(): RepositoryModel[] {
    return [...this.#models.values()];
  }

  /** One model by name, or undefined. */
  get(name: string): RepositoryModel | undefined {
    return this.#models.get(name);
  }

  /**
   * One model by name.
   * @throws InferlineError `model_not_found`, with its config error when its folder cannot be served.
   */
  require(name: string): RepositoryModel {
    const model = this.#models.get(name);
    if (model) return model;
    const failure = this.#failures.get(name);
    if (failure) throw new InferlineError('model_not_found', `model "${name}" cannot be served: ${failure.message}`);
    throw new InferlineError('model_not_found', `model "${name}" is not in the model repository`);
  }

  /**
   * Attach the workers' announcements: `read(model)` gives a model's versions as its live workers hold
   * them (`readLiveVersions(...).versions`). They are re-read every `refreshMs`, and at once
   * (at most one read in flight) when a request would be refused for want of an AVAILABLE version.
   */
  followWorkers(read: (model: string) => Promise<ReadonlyMap<number, LiveVersion>>, refreshMs: number): void {
    this.#readLive = read;
    this.#liveTimer = setInterval(() => void this.refreshLive(), refreshMs);
    this.#liveTimer.unref();
  }

  /** Re-read every model's live versions now (one read in flight at a time). Never throws: a failed read keeps the last view. */
  refreshLive(): Promise<void> {
    const read = this.#readLive;
    if (!read) return Promise.resolve();
    this.#liveRead ??= (async () => {
      try {
        const names = [...this.#models.keys()];
        const views = await Promise.all(names.map((name) => read(name)));
        this.#live = new Map(names.map((name, i) => [name, views[i] ?? new Map()]));
      } catch (error) {
        this.logger.warn({ err: error }, 'reading the workers\' version states failed; keeping the last view');
      } finally {
        this.#liveRead = undefined;
      }
    })();
    return this.#liveRead;
  }

  /** A model's versions as its live workers hold them (last view read); absent = START. */
  #liveOf(name: string): ReadonlyMap<number, LiveVersion> {
    return this.#live.get(name) ?? NO_VERSIONS;
  }

  /**
   * Resolve a request's model, label or version to a version some live worker serves (DESIGN.md
   * section 2, "Admission"). When the last view of the workers has none, it is re-read once first.
   * @throws InferlineError as {@link resolveNow}.
   */
  async resolve(name: string, selector: VersionSelector = {}): Promise<ResolvedModel> {
    try {
      return this.resolveNow(name, selector);
    } catch (error) {
      if (!(error instanceof InferlineError) || error.code !== 'model_unavailable' || !this.#readLive) throw error;
      await this.refreshLive();
      return this.resolveNow(name, selector);
    }
  }

  /**
   * Resolve against the last view of the workers:
   * - `label` → `version_labels[label]`, then as an explicit version;
   * - explicit `version`: served when a live worker has it AVAILABLE; else `503 model_unavailable` when
   *   the policy selects it (not loaded yet, or its load failed), else `404 version_not_found`;
   * - neither: a weighted draw over `traffic` (labels or versions) among the entries whose version is
   *   AVAILABLE; without `traffic`, or when none of them is, the highest AVAILABLE version the policy
   *   selects, else the highest AVAILABLE one (a version being replaced keeps serving until its
   *   successor is AVAILABLE), else `503 model_unavailable`.
   * With `requireAvailable: false` (metadata) the policy alone decides; `ignoreTraffic` skips the draw.
   * A `scale_to_zero` model with no version AVAILABLE on any live worker treats every version the
   * policy selects as available, except one a live worker reports failed to load (its requests wait
   * in the stream for the worker an autoscaler starts).
   * @throws InferlineError `model_not_found` (unknown model, or nothing served), `version_not_found`
   *   (label unknown, version not selected), `model_unavailable` (503 + `retry_after_s`).
   */
  resolveNow(name: string, selector: VersionSelector = {}, options: { requireAvailable?: boolean; ignoreTraffic?: boolean } = {}): ResolvedModel {
    const model = this.require(name);
    const requireAvailable = options.requireAvailable ?? true;
    const live = this.#liveOf(name);
    const served = model.served;
    // scale_to_zero: while no live worker has any version AVAILABLE (scaled to zero, or the first one
    // still loading), a version the policy selects is admitted unless a live worker failed to load it.
    const waitsForWorkers = requireAvailable && model.config.scale_to_zero && ![...live.values()].some((held) => held.state === 'AVAILABLE');
    const admissible = (version: number): boolean => {
      const held = live.get(version);
      return served.includes(version) && !(held?.state === 'END' && held.error);
    };
    const isAvailable = (version: number): boolean => !requireAvailable || live.get(version)?.state === 'AVAILABLE' || (waitsForWorkers && admissible(version));
    const resolved = (version: number): ResolvedModel => ({ model, config: model.config, version });
    let version = selector.version;
    if (selector.label !== undefined) {
      version = model.config.version_labels[selector.label];
      if (version === undefined) {
        const labels = Object.keys(model.config.version_labels);
        throw new InferlineError('version_not_found', `model "${name}" has no version label "${selector.label}" (labels: ${labels.length > 0 ? labels.join(', ') : 'none'})`);
      }
    }
    if (version !== undefined) {
      if (isAvailable(version) && (served.includes(version) || requireAvailable)) return resolved(version);
      if (served.includes(version)) throw unavailable(name, version, live.get(version));
      const list = served.length > 0 ? served.join(', ') : 'none';
      throw new InferlineError('version_not_found', `model "${name}" does not serve version ${version} (served: ${list})`);
    }
    const drawn = options.ignoreTraffic ? undefined : this.#drawTraffic(model, isAvailable);
    if (drawn !== undefined) return resolved(drawn);
    const latestSelected = served.filter(isAvailable).at(-1);
    if (latestSelected !== undefined) return resolved(latestSelected);
    if (requireAvailable) {
      const latestHeld = [...live].filter(([, held]) => held.state === 'AVAILABLE').map(([v]) => v).sort((a, b) => a - b).at(-1);
      if (latestHeld !== undefined) return resolved(latestHeld);
    }
    const latest = served.at(-1);
    if (latest === undefined) throw new InferlineError('model_not_found', `model "${name}" has no servable version`);
    throw unavailable(name, latest, live.get(latest));
  }

  /** A weighted draw over the model's `traffic` entries whose version is available; undefined when none is. */
  #drawTraffic(model: RepositoryModel, isAvailable: (version: number) => boolean): number | undefined {
    const traffic = model.config.traffic;
    if (!traffic) return undefined;
    const candidates: { version: number; weight: number }[] = [];
    for (const [key, weight] of Object.entries(traffic)) {
      const version = /^[0-9]/.test(key) ? Number(key) : model.config.version_labels[key];
      if (version !== undefined && weight > 0 && isAvailable(version)) candidates.push({ version, weight });
    }
    const total = candidates.reduce((sum, c) => sum + c.weight, 0);
    if (total === 0) return undefined;
    let point = this.#random() * total;
    for (const candidate of candidates) {
      point -= candidate.weight;
      if (point < 0) return candidate.version;
    }
    return candidates.at(-1)?.version;
  }

  /** Stop re-scanning and re-reading the workers. */
  close(): void {
    clearInterval(this.#timer);
    clearInterval(this.#liveTimer);
    this.#timer = undefined;
    this.#liveTimer = undefined;
  }
}
