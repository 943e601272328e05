/** A request that belongs to an aggregation group: its group and its index in it. */
export interface GroupMember {
  groupId: string;
  index: number;
}

/**
 * One request as read from a model version's stream: a single job (`jobId`) or a group member
 * (`member`), exactly one of the two.
 */
export interface StreamEntry {
  /** Stream entry id (`<ms>-<seq>`); its first part is the time the gateway accepted the request. */
  entryId: string;
  /** The job of a single request (written by enqueue.lua). */
  jobId?: string;
  /** The group and index of a group member (written by group-add.lua). */
  member?: GroupMember;
  /** MessagePack bytes of the request input. */
  input: Buffer;
}

/** Reply shape of XREADGROUP / XRANGE entries read as buffers: `[id, [field, value, ...]]`. */
export type RawEntry = [Buffer, Buffer[]];

/**
 * Parse a raw stream entry written by `enqueue.lua` (fields `job`, `input`) or `group-add.lua` (fields
 * `group`, `index`, `input`). Returns null for an entry that is neither (never written by the gateway;
 * acknowledged and dropped).
 */
export function parseEntry([id, fields]: RawEntry): StreamEntry | null {
  let jobId: string | undefined;
  let groupId: string | undefined;
  let index: number | undefined;
  let input: Buffer | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]?.toString();
    const value = fields[i + 1];
    if (name === 'job') jobId = value?.toString();
    else if (name === 'input') input = value;
    else if (name === 'group') groupId = value?.toString();
    else if (name === 'index') index = Number(value?.toString());
  }
  const entryId = id.toString();
  if (jobId !== undefined) return { entryId, jobId, input: input ?? Buffer.alloc(0) };
  if (groupId !== undefined && index !== undefined && Number.isInteger(index) && index >= 0) {
    return { entryId, member: { groupId, index }, input: input ?? Buffer.alloc(0) };
  }
  return null;
}

/** How logs name a request: its job id, or `<group id>/<index>` for a group member. */
export function requestLabel(entry: StreamEntry): string {
  return entry.member ? `${entry.member.groupId}/${entry.member.index}` : (entry.jobId ?? '');
}

/** Time (ms since epoch) the gateway accepted the request: the first part of its stream entry id. */
export function acceptedAt(entryId: string): number {
  return Number(entryId.slice(0, entryId.indexOf('-')));
}
