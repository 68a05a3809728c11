import { HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { Config, ConfigError, Effect, Option, Redacted } from "effect"
import { readFile } from "node:fs/promises"
import { homedir } from "node:os"
import { join } from "node:path"
import { BrokerApi } from "../BrokerApi.js"
import type { BrokerClientService, Options } from "../BrokerClient.js"
import * as StackRecord from "../StackRecord.js"
import * as Channel from "./channel.js"

export const DEFAULT_URL = "http://127.0.0.1:4200"

export const make = (options: Options): Effect.Effect<BrokerClientService, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const url = new URL(options.url)
    const token = Redacted.isRedacted(options.token) ? options.token : Redacted.make(options.token)
    const api = yield* HttpApiClient.make(BrokerApi, {
      baseUrl: url,
      transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(token))
    })
    return {
      url,
      api,
      channel: (peerId, channelOptions) => Channel.make({ baseUrl: url, token, peerId, options: channelOptions })
    } satisfies BrokerClientService
  })

/** The token file the broker writes on first start, under `$A2A_HOME` (default `~/.a2a`). */
const tokenFile = Config.string("A2A_HOME").pipe(
  Config.withDefault(""),
  // An empty A2A_HOME counts as unset (as for every setting), not as the current directory.
  Config.map((home) => join(home === "" ? join(homedir(), ".a2a") : home, "broker.token"))
)

const readTokenFile = (file: string): Effect.Effect<Option.Option<string>, ConfigError.ConfigError> =>
  Effect.tryPromise({
    try: () => readFile(file, "utf8"),
    catch: (error) => error as NodeJS.ErrnoException
  }).pipe(
    Effect.map((text) => Option.some(text.trim()).pipe(Option.filter((token) => token !== ""))),
    Effect.catchAll((error) =>
      error.code === "ENOENT"
        ? Effect.succeed(Option.none())
        : Effect.fail(ConfigError.InvalidData(["A2A_TOKEN"], `cannot read the broker token file ${file}: ${error.message}`))
    )
  )

export const readConfig: Effect.Effect<Options, ConfigError.ConfigError> = Effect.gen(function*() {
  // No URL given: the local stack's (`a2a up` records it in `$A2A_HOME/stack.json`), else the default.
  const url = Option.getOrElse(
    (yield* Config.option(Config.string("A2A_BROKER_URL"))).pipe(Option.filter((u) => u !== "")),
    () => StackRecord.readSync()?.broker ?? DEFAULT_URL
  )
  const fromEnv = (yield* Config.option(Config.string("A2A_TOKEN"))).pipe(
    Option.map((token) => token.trim()),
    Option.filter((token) => token !== "")
  )
  if (Option.isSome(fromEnv)) return { url, token: Redacted.make(fromEnv.value) }
  const file = yield* tokenFile
  const fromFile = yield* readTokenFile(file)
  if (Option.isNone(fromFile)) {
    return yield* Effect.fail(
      ConfigError.MissingData(
        ["A2A_TOKEN"],
        `no broker token: set A2A_TOKEN or write the token to ${file} (a local broker creates it on first start)`
      )
    )
  }
  return { url, token: Redacted.make(fromFile.value) }
})
