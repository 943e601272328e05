import JSON5 from 'json5';
import { parse as secureJsonParse, scan as secureJsonScan } from 'secure-json-parse';
import { InferlineError } from '@inferline/shared';

/** Prototype poisoning is refused as fastify's own JSON parser refuses it (its defaults). */
const POISONING = { protoAction: 'error', constructorAction: 'error' } as const;

/**
 * Parse a request body the way TF Serving's REST API reads it: JSON, plus the tokens `NaN`, `Infinity`
 * and `-Infinity` for non-finite floats (https://www.tensorflow.org/tfx/serving/api_rest#json_conformance;
 * TF Serving parses with rapidjson's `kParseNanAndInfFlag`).
 *
 * Strict JSON goes through `secure-json-parse` (what fastify uses) at `JSON.parse` speed. Only a body
 * that is not strict JSON is parsed again as JSON5, which takes those tokens; JSON5 also takes comments,
 * trailing commas and single quotes, which TF Serving would refuse: being more lenient there costs a
 * client nothing. `__proto__` / `constructor.prototype` keys are refused either way.
 *
 * @returns the parsed value (any JSON type; the route's schema checks it is an object).
 * @throws InferlineError `invalid_input` "JSON Parse error: ..." (TF Serving's prefix) on an empty or
 *   malformed body, or one that tries prototype poisoning.
 */
export function parseTfServingJson(text: string): unknown {
  if (text.trim() === '') throw new InferlineError('invalid_input', 'JSON Parse error: The document is empty');
  try {
    return secureJsonParse(text, undefined, POISONING);
  } catch (strictError) {
    if (!(strictError instanceof SyntaxError)) throw new InferlineError('invalid_input', `JSON Parse error: ${(strictError as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON5.parse(text);
  } catch (error) {
    throw new InferlineError('invalid_input', `JSON Parse error: ${(error as Error).message.replace(/^JSON5: /, '')}`);
  }
  try {
    if (typeof value === 'object' && value !== null) secureJsonScan(value, POISONING);
  } catch (error) {
    throw new InferlineError('invalid_input', `JSON Parse error: ${(error as Error).message}`);
  }
  return value;
}
