import type { FastifyReply } from 'fastify';

/**
 * The requests still open per shutdown signal: one `abort` listener per signal aborts them all,
 * instead of one listener added and removed per request (EventTarget listeners are slow in Node).
 */
const openRequests = new WeakMap<AbortSignal, Set<AbortController>>();

/**
 * A signal that aborts when the client goes away (the response closes before it finished) or when
 * `shutdown` aborts. Waiters pass it on so their watches are cleaned up at once. A response that
 * finished aborts nothing (an abort allocates a DOMException: not worth it for every request).
 */
export function requestSignal(reply: FastifyReply, shutdown: AbortSignal): AbortSignal {
  const controller = new AbortController();
  if (shutdown.aborted) {
    controller.abort();
    return controller.signal;
  }
  let open = openRequests.get(shutdown);
  if (!open) {
    const requests = new Set<AbortController>();
    openRequests.set(shutdown, (open = requests));
    shutdown.addEventListener(
      'abort',
      () => {
        for (const request of requests) request.abort();
        requests.clear();
      },
      { once: true },
    );
  }
  const requests = open;
  requests.add(controller);
  reply.raw.once('close', () => {
    requests.delete(controller);
    if (!reply.raw.writableFinished) controller.abort();
  });
  return controller.signal;
}
