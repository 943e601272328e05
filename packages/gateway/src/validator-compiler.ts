import type { FastifySchemaCompiler, FastifySchemaValidationError } from 'fastify';
import type { TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import { Value } from '@sinclair/typebox/value';

/**
 * Fastify validator compiler built on TypeBox's compiler instead of ajv.
 *
 * - Bodies are checked as sent: no type coercion, and unknown fields are rejected, never stripped
 *   (ajv's fastify defaults `coerceTypes: 'array'`, `removeAdditional: true` would accept `"version":"1"`
 *   and silently drop `"foo"`).
 * - Query strings, params and headers are converted first (`"5"` → 5), since they arrive as text.
 * - Only the first error is reported, as one readable sentence naming the field; the error handler
 *   turns it into 400 `invalid_input`.
 */
export const validatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema, httpPart }) => {
  const check = TypeCompiler.Compile(schema);
  const convert = httpPart !== 'body';
  return (input: unknown) => {
    const value = convert ? Value.Convert(schema, input) : input;
    if (check.Check(value)) return { value };
    const first = check.Errors(value).First();
    const error: FastifySchemaValidationError = {
      keyword: first ? ValueErrorType[first.type] : 'unknown',
      instancePath: first?.path ?? '',
      schemaPath: '',
      params: {},
      message: first ? describe(first) : 'is invalid',
    };
    return { error: [error] };
  };
};

/** One validation error as a sentence: `unknown field "foo"`, `field "version": Expected integer`. */
function describe(error: ValueError): string {
  const field = error.path.split('/').slice(1).join('.');
  if (error.type === ValueErrorType.ObjectAdditionalProperties) return `unknown field "${field}"`;
  if (error.type === ValueErrorType.ObjectRequiredProperty) return `missing field "${field}"`;
  return field === '' ? error.message.toLowerCase() : `field "${field}": ${error.message.toLowerCase()}`;
}
