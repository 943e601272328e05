/**
 * `npm run test-data`: fetch the real photos the image tests and benchmarks use into `test/data/images`
 * (git-ignored). They come from Debian's `python3-skimage` package (`skimage/data`, BSD-licensed sample
 * images), downloaded with `apt-get download` (no install) and unpacked with `dpkg -x`; the .deb is
 * cached in `.cache/deb`. Idempotent: files already present are kept.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './processes.ts';

const run = promisify(execFile);

/** Debian package holding the photos. */
const PACKAGE = 'python3-skimage';
/** Photos taken from `skimage/data`: everyday scenes a COCO detector and a classifier know. */
export const TEST_PHOTOS = [
  'astronaut.png', // a person
  'chelsea.png', // a cat
  'coffee.png', // a cup
  'motorcycle_left.png',
  'motorcycle_right.png',
  'rocket.jpg',
  'camera.png', // grayscale: a person with a camera
  'hubble_deep_field.jpg',
] as const;
/** Where the photos land. */
export const TEST_IMAGES_DIR = join(ROOT, 'test', 'data', 'images');

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

/** Download the .deb into `cacheDir` (running `apt-get update` once if apt has no package lists). */
async function downloadDeb(cacheDir: string): Promise<string> {
  await mkdir(cacheDir, { recursive: true });
  const cached = (await readdir(cacheDir)).find((name) => name.startsWith(`${PACKAGE}_`) && name.endsWith('.deb'));
  if (cached) return join(cacheDir, cached);
  try {
    await run('apt-get', ['download', PACKAGE], { cwd: cacheDir });
  } catch {
    console.error(`apt-get download ${PACKAGE} failed; running apt-get update once and retrying`);
    await run('apt-get', ['update'], { maxBuffer: 64 * 1024 * 1024 });
    await run('apt-get', ['download', PACKAGE], { cwd: cacheDir });
  }
  const downloaded = (await readdir(cacheDir)).find((name) => name.startsWith(`${PACKAGE}_`) && name.endsWith('.deb'));
  if (!downloaded) throw new Error(`apt-get download ${PACKAGE} produced no .deb in ${cacheDir}`);
  return join(cacheDir, downloaded);
}

/** Fetch every photo of {@link TEST_PHOTOS} into {@link TEST_IMAGES_DIR}. */
export async function fetchTestData(): Promise<void> {
  await mkdir(TEST_IMAGES_DIR, { recursive: true });
  const missing: string[] = [];
  for (const photo of TEST_PHOTOS) if (!(await exists(join(TEST_IMAGES_DIR, photo)))) missing.push(photo);
  if (missing.length === 0) {
    console.log(`test photos present in ${TEST_IMAGES_DIR}`);
    return;
  }
  const deb = await downloadDeb(join(ROOT, '.cache', 'deb'));
  const unpacked = await mkdtemp(join(tmpdir(), 'inferline-skimage-'));
  try {
    await run('dpkg', ['-x', deb, unpacked]);
    const data = join(unpacked, 'usr', 'lib', 'python3', 'dist-packages', 'skimage', 'data');
    for (const photo of missing) await copyFile(join(data, photo), join(TEST_IMAGES_DIR, photo));
    console.log(`fetched ${missing.length} test photos into ${TEST_IMAGES_DIR}`);
  } finally {
    await rm(unpacked, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await fetchTestData();
