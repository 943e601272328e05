/**
 * The messages of the job events channel (`JOB_EVENTS_CHANNEL`), as the scripts publish them: one
 * event `<id>\t<status>[\t<detail>]` (a job or group id), or the events of one script call as one batch
 * message (lua/includes/event-batch.lua): `*` then, per event, `<byte length of the event>:<event>`.
 */

/** First byte of a batch message (`*`) and the end of an event's length (`:`). */
const BATCH_MARK = 0x2a;
const LENGTH_END = 0x3a;

/**
 * The events of one message, in order, as views of its bytes (no copy: copy what is kept past the
 * message). A malformed batch yields the events before the fault.
 * @param message the message as received (ioredis `messageBuffer`)
 */
export function jobEventsOf(message: Buffer): Buffer[] {
  if (message[0] !== BATCH_MARK) return [message];
  const events: Buffer[] = [];
  let at = 1;
  while (at < message.length) {
    const colon = message.indexOf(LENGTH_END, at);
    if (colon < 0) break;
    const length = Number(message.toString('latin1', at, colon));
    const end = colon + 1 + length;
    if (!Number.isInteger(length) || length < 0 || end > message.length) break;
    events.push(message.subarray(colon + 1, end));
    at = end;
  }
  return events;
}

/**
 * The message that announces some events, as lua/includes/event-batch.lua builds it: one event as it
 * is, more as a batch message (`*`, then per event its byte length, `:` and its bytes);
 * {@link jobEventsOf} reads it back.
 * @param parts the events, each `<id>\t<status>[\t<detail>]` given as two buffers, its head and its
 *   tail (so a large detail such as an output is not copied to make the event): `[head1, tail1, head2,
 *   tail2, ...]`
 * @returns the message (empty for no events), and where each event and each event's tail start in it
 *   (byte offsets)
 */
export function jobEventsMessage(parts: readonly Buffer[]): { message: Buffer; eventOffsets: number[]; tailOffsets: number[] } {
  if (parts.length === 0) return { message: Buffer.alloc(0), eventOffsets: [], tailOffsets: [] };
  if (parts.length === 2) return { message: Buffer.concat(parts), eventOffsets: [0], tailOffsets: [(parts[0] as Buffer).length] };
  const message: Buffer[] = [BATCH_PREFIX];
  const eventOffsets: number[] = [];
  const tailOffsets: number[] = [];
  let length = BATCH_PREFIX.length;
  for (let i = 0; i + 1 < parts.length; i += 2) {
    const head = parts[i] as Buffer;
    const tail = parts[i + 1] as Buffer;
    const prefix = Buffer.from(`${head.length + tail.length}:`, 'latin1');
    message.push(prefix, head, tail);
    length += prefix.length;
    eventOffsets.push(length);
    length += head.length;
    tailOffsets.push(length);
    length += tail.length;
  }
  return { message: Buffer.concat(message, length), eventOffsets, tailOffsets };
}

const BATCH_PREFIX = Buffer.from([BATCH_MARK]);
