import type { FastifyReply } from 'fastify';

/**
 * A signal that aborts when the client goes away (the response closes before it finished) or when
 * `shutdown` aborts. Waiters pass it on so their watches are cleaned up at once.
 */
export function requestSignal(reply: FastifyReply, shutdown: AbortSignal): AbortSignal {
  const controller = new AbortController();
  const abort = (): void => controller.abort();
  if (shutdown.aborted) abort();
  shutdown.addEventListener('abort', abort, { once: true });
  reply.raw.once('close', () => {
    shutdown.removeEventListener('abort', abort);
    abort();
  });
  return controller.signal;
}
