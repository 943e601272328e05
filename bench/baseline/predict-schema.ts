import { Type, type Static } from '@sinclair/typebox';

/** Body of the baselines' `POST /predict`: one text to embed. */
export const PredictBody = Type.Object({ text: Type.String() });
export type PredictBody = Static<typeof PredictBody>;

/** Reply of `POST /predict`: the text's embedding (100 numbers for glove-embed). */
export const PredictReply = Type.Object({ embedding: Type.Array(Type.Number()) });
export type PredictReply = Static<typeof PredictReply>;

/** Route schema of `POST /predict` (validates the body, serializes the reply). */
export const predictRouteSchema = { body: PredictBody, response: { 200: PredictReply } };
