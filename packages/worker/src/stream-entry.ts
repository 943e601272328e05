/** One request as read from a model version's stream. */
export interface StreamEntry {
  /** Stream entry id (`<ms>-<seq>`); its first part is the time the gateway accepted the request. */
  entryId: string;
  jobId: string;
  /** MessagePack bytes of the request input. */
  input: Buffer;
}

/** Reply shape of XREADGROUP / XRANGE entries read as buffers: `[id, [field, value, ...]]`. */
export type RawEntry = [Buffer, Buffer[]];

/**
 * Parse a raw stream entry written by `enqueue.lua` (fields `job`, `input`).
 * Returns null for an entry without a job id (never written by the gateway; acknowledged and dropped).
 */
export function parseEntry([id, fields]: RawEntry): StreamEntry | null {
  let jobId: string | undefined;
  let input: Buffer | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]?.toString();
    if (name === 'job') jobId = fields[i + 1]?.toString();
    else if (name === 'input') input = fields[i + 1];
  }
  if (jobId === undefined) return null;
  return { entryId: id.toString(), jobId, input: input ?? Buffer.alloc(0) };
}

/** Time (ms since epoch) the gateway accepted the request: the first part of its stream entry id. */
export function acceptedAt(entryId: string): number {
  return Number(entryId.slice(0, entryId.indexOf('-')));
}
