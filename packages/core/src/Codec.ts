/**
 * Decoding at the boundary: every body and frame is decoded through its schema, and a parse
 * failure becomes an `InvalidRequest` whose `field` is the path of the first bad field
 * (e.g. `message.seq`, `to`, `type`).
 */
import { Effect, ParseResult, Schema } from "effect"
import { InvalidRequest } from "./Errors.js"

/** The first issue of a parse error as an `InvalidRequest` naming its field. */
export const toInvalidRequest = (error: ParseResult.ParseError): InvalidRequest => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const first = issues[0]
  if (first === undefined) return new InvalidRequest({ message: "invalid input" })
  const field = first.path.length > 0 ? first.path.map(String).join(".") : undefined
  return new InvalidRequest({ message: field === undefined ? first.message : `${field}: ${first.message}`, field })
}

/** Decode an unknown value, failing with `InvalidRequest`. Excess properties are ignored. */
export const decodeUnknown = <A, I>(schema: Schema.Schema<A, I, never>) => {
  // Built once per schema: building a decoder per call costs more than decoding.
  const decode = Schema.decodeUnknown(schema, { errors: "first" })
  return (input: unknown): Effect.Effect<A, InvalidRequest> => decode(input).pipe(Effect.mapError(toInvalidRequest))
}

/** Decode JSON text (a WebSocket frame, a body), failing with `InvalidRequest`. */
export const decodeJson = <A, I>(schema: Schema.Schema<A, I, never>): ((text: string) => Effect.Effect<A, InvalidRequest>) =>
  decodeUnknown(Schema.parseJson(schema))

/** Encode to JSON text. Encoding a value that was built from the schema's own types cannot fail. */
export const encodeJson = <A, I>(schema: Schema.Schema<A, I, never>) => {
  const encode = Schema.encodeSync(schema)
  return (value: A): string => JSON.stringify(encode(value))
}
