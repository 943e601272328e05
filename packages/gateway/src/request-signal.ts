import type { FastifyReply } from 'fastify';

/**
 * A signal that aborts when the client goes away (the response closes before it finished) or when
 * `shutdown` aborts. Waiters pass it on so their watches are cleaned up at once. A response that
 * finished aborts nothing (an abort allocates a DOMException: not worth it for every request).
 */
export function requestSignal(reply: FastifyReply, shutdown: AbortSignal): AbortSignal {
  const controller = new AbortController();
  const abort = (): void => controller.abort();
  if (shutdown.aborted) abort();
  shutdown.addEventListener('abort', abort, { once: true });
  reply.raw.once('close', () => {
    shutdown.removeEventListener('abort', abort);
    if (!reply.raw.writableFinished) abort();
  });
  return controller.signal;
}
