import { Data } from "effect"
import type { PeerId } from "../Ids.js"

/** A subscriber fell too far behind and was cut off (re-exported by `ChannelHub`). */
export class SlowConsumer extends Data.TaggedError("SlowConsumer")<{ readonly peer: PeerId; readonly buffered: number }> {}
