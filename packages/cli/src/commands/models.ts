import { join } from 'node:path';
import { createLogger, loadSettings } from '@inferline/shared';
import { buildModels, MODEL_BUILDERS } from '../models/build-models.ts';
import { verifyChecksums } from '../models/build-glove-embed.ts';

/**
 * `inferline models [names...]`: fetch and convert every known model version the repository lacks
 * (progress bars on stderr), then print one line per model: built or already present.
 */
export async function runModels(names: string[]): Promise<void> {
  const settings = loadSettings();
  const logger = createLogger('cli');
  const selected = names.length > 0 ? names : Object.keys(MODEL_BUILDERS);
  // buildModels validates the names; here only the ones it knows are reported.
  const present = new Map<string, boolean>();
  for (const name of selected) {
    const builder = MODEL_BUILDERS[name];
    if (builder) present.set(name, await verifyChecksums(join(settings.model_repository, name, String(builder.version))));
  }
  await buildModels({ repository: settings.model_repository, cacheDir: settings.cache_dir, progress: true, logger, models: selected });
  for (const [name, wasPresent] of present) {
    const builder = MODEL_BUILDERS[name];
    const dir = join(settings.model_repository, name, String(builder?.version));
    process.stdout.write(`${name} v${builder?.version}: ${wasPresent ? 'present, skipped' : 'built'} (${dir})\n`);
  }
}
