import { Schema } from "effect"

/** A struct discriminated by a `type` literal, as every frame and event of the contract is. */
export const typed = <Type extends string, Fields extends Schema.Struct.Fields>(type: Type, fields: Fields) =>
  Schema.Struct({ type: Schema.tag(type), ...fields })
