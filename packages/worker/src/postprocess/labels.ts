import { readFile } from 'node:fs/promises';
import { InferlineError } from '@inferline/shared/errors';

/**
 * Read a labels file: one class name per line (a final newline is optional; CRLF accepted).
 * @throws InferlineError `invalid_config` naming the file when it is unreadable, empty or has an empty line.
 */
export async function readLabels(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new InferlineError('invalid_config', `${path}: ${(error as Error).message}`);
  }
  const labels = text.replace(/\r?\n$/, '').split(/\r?\n/);
  if (labels.some((label) => label === '')) throw new InferlineError('invalid_config', `${path}: empty file or an empty line`);
  return labels;
}
