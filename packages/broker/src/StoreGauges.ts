/**
 * Store-level counts for `/metrics` (NaN where a store cannot count). A module of its own so
 * that the stores (`SqlStore`, `PgStore`) and their selection (`Store`) import it without a cycle.
 */
import { Context, type Effect } from "effect"

export class StoreGauges extends Context.Tag("@mks/a2a-broker/StoreGauges")<
  StoreGauges,
  { readonly peersOnline: Effect.Effect<number>; readonly inboxDepth: Effect.Effect<number> }
>() {}
