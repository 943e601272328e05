/**
 * BullMQ baseline gateway for bench/compare.ts, built the way people write it by hand: a fastify
 * server whose `POST /predict {"text"}` adds ONE BullMQ job per request to the queue
 * {@link BASELINE_QUEUE} and waits for it with `job.waitUntilFinished(queueEvents)` (one shared
 * QueueEvents), answering `200 {"embedding":[...]}`. Env (baseline-env.ts): `PORT`, `HOST`,
 * `REDIS_URL`. Sends `{"type":"baseline-ready"}` over IPC once it listens.
 */
import Fastify from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Queue, QueueEvents } from 'bullmq';
import { announceReady, BASELINE_QUEUE, onStop, requireEnv } from './baseline-env.ts';
import { predictRouteSchema } from './predict-schema.ts';
import { bullmqConnection, JOB_OPTIONS } from './bullmq-options.ts';

const connection = bullmqConnection(requireEnv('REDIS_URL'));
const queue = new Queue<{ text: string }, number[]>(BASELINE_QUEUE, { connection });
const queueEvents = new QueueEvents(BASELINE_QUEUE, { connection });
// waitUntilFinished adds a `closing` listener to the queue per waiting request: hundreds are in flight
// by design, so lift Node's leak warning (0 = no limit).
queue.setMaxListeners(0);
await Promise.all([queue.waitUntilReady(), queueEvents.waitUntilReady()]);

const app = Fastify({ logger: false }).withTypeProvider<TypeBoxTypeProvider>();
app.post('/predict', { schema: predictRouteSchema }, async (request) => {
  const job = await queue.add('embed', { text: request.body.text }, JOB_OPTIONS);
  return { embedding: await job.waitUntilFinished(queueEvents) };
});
await app.listen({ port: Number(requireEnv('PORT')), host: requireEnv('HOST') });
onStop(async () => {
  await app.close();
  await Promise.all([queueEvents.close(), queue.close()]);
});
announceReady();
