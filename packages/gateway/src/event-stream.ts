import type { FastifyReply } from 'fastify';
import type { ServerResponse } from 'node:http';

/**
 * Take over a reply as a server-sent event stream (https://html.spec.whatwg.org/multipage/server-sent-events.html):
 * fastify lets go of it (`hijack`), and the `200 text/event-stream` head is written at once, with
 * caching and proxy buffering off. The caller writes events and ends the response.
 */
export function openEventStream(reply: FastifyReply): ServerResponse {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    // The stream owns its connection; Node closes it when the stream ends.
    connection: 'close',
    'x-accel-buffering': 'no',
  });
  return res;
}
