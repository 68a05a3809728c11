/**
 * Ui: the browser dashboard (`@mks/a2a-dashboard`) served at `/ui`.
 *
 * The dashboard is an optional package: its built directory is found at runtime with
 * `import("@mks/a2a-dashboard")`. When it is absent or not built, `/ui` answers 404 with a
 * `DashboardNotInstalled` error saying so. The static files are open (they hold no data and
 * must load before a token is pasted); everything they talk to needs the token as usual.
 */
import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Schema } from "effect"
import { CompileCache } from "@mks/a2a/internal"
import { readFile, stat } from "node:fs/promises"
import { extname, join, resolve, sep } from "node:path"

/** 404: the dashboard package is not installed or not built. */
export class DashboardNotInstalled extends Schema.TaggedError<DashboardNotInstalled>()("DashboardNotInstalled", {
  message: Schema.String
}) {}

/** 404: a file under `/ui/assets/` that the build does not have. */
export class AssetNotFound extends Schema.TaggedError<AssetNotFound>()("AssetNotFound", {
  message: Schema.String,
  path: Schema.String
}) {}

/** The path prefix the dashboard is served under (the dashboard's Vite `base`). */
export const PREFIX = "/ui"

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".webp": "image/webp",
  ".woff2": "font/woff2",
  ".woff": "font/woff",
  ".txt": "text/plain; charset=utf-8",
  ".webmanifest": "application/manifest+json"
}

export const contentTypeOf = (path: string): string => CONTENT_TYPES[extname(path).toLowerCase()] ?? "application/octet-stream"

/** Same origin only; no inline scripts; xterm needs inline styles. */
const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "content-security-policy":
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
}

const notInstalled = (why: string) =>
  HttpServerResponse.unsafeJson(
    Schema.encodeSync(DashboardNotInstalled)(
      new DashboardNotInstalled({ message: `the dashboard is not available: ${why} (install and build @mks/a2a-dashboard)` })
    ),
    { status: 404 }
  )

/** Where the built dashboard lives: the package's `distDir` export, if the package is installed and built. */
export const locate = (specifier = "@mks/a2a-dashboard"): Promise<{ readonly distDir: string } | { readonly missing: string }> =>
  // Through the bin loader's import when the broker runs from its bundle (a plain `import()`
  // fails in a script started from V8's code cache on Node 20: CompileCache.ts).
  (CompileCache.importer((s) => import(s))(specifier) as Promise<{ distDir?: unknown }>).then(
    async (mod) => {
      if (typeof mod.distDir !== "string") return { missing: `${specifier} exports no distDir` }
      const index = await stat(join(mod.distDir, "index.html")).catch(() => undefined)
      return index?.isFile() === true ? { distDir: mod.distDir } : { missing: `${specifier} is not built (no ${join(mod.distDir, "index.html")})` }
    },
    () => ({ missing: `${specifier} is not installed` })
  )

/**
 * The answer for a request path under `/ui`, from the files in `distDir`: the file when it exists,
 * `index.html` for `/ui` and any other unknown path (client-side routes), 404 for missing assets.
 */
export const serveFrom = (distDir: string, pathname: string) =>
  Effect.gen(function* () {
    const root = resolve(distDir)
    let relative: string
    try {
      relative = decodeURIComponent(pathname.slice(PREFIX.length)).replace(/^\/+/, "")
    } catch {
      relative = ""
    }
    const candidate = resolve(root, relative)
    const inside = candidate.startsWith(root + sep) && !relative.includes("\0")
    const file = inside
      ? yield* Effect.promise(() =>
          stat(candidate).then(
            (s) => (s.isFile() ? candidate : undefined),
            () => undefined
          )
        )
      : undefined
    if (file === undefined && relative.startsWith("assets/")) {
      return HttpServerResponse.unsafeJson(
        Schema.encodeSync(AssetNotFound)(new AssetNotFound({ message: `no such dashboard asset: ${relative}`, path: relative })),
        { status: 404 }
      )
    }
    const path = file ?? join(root, "index.html")
    const body = yield* Effect.tryPromise(() => readFile(path)).pipe(Effect.option)
    if (body._tag === "None") return notInstalled(`cannot read ${path}`)
    // Vite names assets by content hash: they never change, so they may be cached for ever.
    const hashed = file !== undefined && relative.startsWith("assets/")
    return HttpServerResponse.uint8Array(new Uint8Array(body.value), {
      status: 200,
      contentType: contentTypeOf(path),
      headers: { ...SECURITY_HEADERS, "cache-control": hashed ? "public, max-age=31536000, immutable" : "no-cache" }
    })
  })

/** The `/ui` handler, with the dashboard's location resolved once (on first request). */
export const makeHandler = (specifier = "@mks/a2a-dashboard") => {
  let located: ReturnType<typeof locate> | undefined
  return Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    located ??= locate(specifier)
    const where = yield* Effect.promise(() => located!)
    // Not built yet: look again next time (a build may land while the broker runs).
    if ("missing" in where) {
      located = undefined
      return notInstalled(where.missing)
    }
    const pathname = new URL(request.url, "http://broker").pathname
    return yield* serveFrom(where.distDir, pathname)
  })
}

/** Mount the dashboard on the API's router: `/ui`, `/ui/` and everything below. */
export const layer = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function* () {
    const handler = makeHandler()
    yield* router.get(PREFIX, handler)
    yield* router.get(`${PREFIX}/*`, handler)
  })
)
