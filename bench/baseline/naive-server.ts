/**
 * Naive reference for bench/compare.ts: one fastify process, no queue; `POST /predict {"text"}` runs one
 * forward pass in the handler and answers `200 {"embedding":[...]}`. Env (baseline-env.ts): `PORT`,
 * `HOST`, `MODEL_DIR`. Sends `{"type":"baseline-ready"}` over IPC once it listens.
 */
import Fastify from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { announceReady, onStop, requireEnv } from './baseline-env.ts';
import { loadEmbedder } from './load-embedder.ts';
import { predictRouteSchema } from './predict-schema.ts';

const embed = await loadEmbedder(requireEnv('MODEL_DIR'));
const app = Fastify({ logger: false }).withTypeProvider<TypeBoxTypeProvider>();
app.post('/predict', { schema: predictRouteSchema }, async (request) => ({ embedding: await embed(request.body.text) }));
await app.listen({ port: Number(requireEnv('PORT')), host: requireEnv('HOST') });
onStop(() => app.close());
announceReady();
