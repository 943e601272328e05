import { InferlineError, scanRepository, type Logger, type ModelConfig, type RepositoryFailure, type RepositoryModel, type RepositoryScan } from '@inferline/shared';

/** A model version the gateway accepts requests for. */
export interface ResolvedModel {
  model: RepositoryModel;
  config: ModelConfig;
  version: number;
}

/**
 * The gateway's view of the model repository (`scanRepository(root)`), re-read every
 * `pollIntervalMs` on an unref'd timer so a new version is served without a restart. The gateway only
 * needs configs and which version folders are complete; it never loads weights.
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

  /** Use {@link ModelCatalog.open}; this constructor takes an already scanned repository. */
  constructor(
    scan: RepositoryScan,
    private readonly root: string,
    private readonly logger: Logger,
  ) {
    this.#models = new Map();
    this.#apply(scan);
  }

  /**
   * Scan `root` once and start re-scanning every `pollIntervalMs`.
   * @throws InferlineError `invalid_config` when the repository folder cannot be read.
   */
  static async open(root: string, pollIntervalMs: number, logger: Logger): Promise<ModelCatalog> {
    let scan: RepositoryScan;
    try {
      scan = await scanRepository(root);
    } catch (error) {
      throw new InferlineError('invalid_config', `model repository ${root}: ${(error as Error).message}`);
    }
    const catalog = new ModelCatalog(scan, root, logger);
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
   * Resolve a model name and an optional version to a served version; without a version, the latest
   * served one.
   * @throws InferlineError `model_not_found` when no such model is in the repository or it serves no
   *   version; `version_not_found` when the version is not among those served.
   */
  resolve(name: string, version?: number): ResolvedModel {
    const model = this.#models.get(name);
    if (!model) {
      const failure = this.#failures.get(name);
      if (failure) throw new InferlineError('model_not_found', `model "${name}" cannot be served: ${failure.message}`);
      throw new InferlineError('model_not_found', `model "${name}" is not in the model repository`);
    }
    const served = model.served;
    if (version === undefined) {
      const latest = served.at(-1);
      if (latest === undefined) throw new InferlineError('model_not_found', `model "${name}" has no servable version`);
      return { model, config: model.config, version: latest };
    }
    if (!served.includes(version)) {
      const list = served.length > 0 ? served.join(', ') : 'none';
      throw new InferlineError('version_not_found', `model "${name}" does not serve version ${version} (served: ${list})`);
    }
    return { model, config: model.config, version };
  }

  /** Stop re-scanning. */
  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
