import { InferlineError, scanRepository, type Logger, type ModelConfig, type RepositoryModel } from '@inferline/shared';

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
 * A failed re-scan (an invalid config being edited, a folder being copied) keeps the last good view
 * and is logged.
 */
export class ModelCatalog {
  #models: ReadonlyMap<string, RepositoryModel>;
  #timer: NodeJS.Timeout | undefined;
  #refreshing = false;

  /** Use {@link ModelCatalog.open}; this constructor takes an already scanned repository. */
  constructor(
    models: readonly RepositoryModel[],
    private readonly root: string,
    private readonly logger: Logger,
  ) {
    this.#models = index(models);
  }

  /**
   * Scan `root` once and start re-scanning every `pollIntervalMs`.
   * @throws InferlineError `invalid_config` when a config is invalid, or the folder cannot be read.
   */
  static async open(root: string, pollIntervalMs: number, logger: Logger): Promise<ModelCatalog> {
    let models: RepositoryModel[];
    try {
      models = await scanRepository(root);
    } catch (error) {
      if (error instanceof InferlineError) throw error;
      throw new InferlineError('invalid_config', `model repository ${root}: ${(error as Error).message}`);
    }
    const catalog = new ModelCatalog(models, root, logger);
    catalog.#timer = setInterval(() => void catalog.refresh(), pollIntervalMs);
    catalog.#timer.unref();
    logger.info({ models: models.map((m) => ({ name: m.config.name, served: m.served })) }, 'model repository read');
    return catalog;
  }

  /** Re-read the repository now; on failure keep the current view and log. Never throws. */
  async refresh(): Promise<void> {
    if (this.#refreshing) return;
    this.#refreshing = true;
    try {
      this.#models = index(await scanRepository(this.root));
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
    if (!model) throw new InferlineError('model_not_found', `model "${name}" is not in the model repository`);
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

function index(models: readonly RepositoryModel[]): ReadonlyMap<string, RepositoryModel> {
  return new Map(models.map((m) => [m.config.name, m]));
}
