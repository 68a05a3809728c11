/**
 * PostgreSQL connection URLs as the broker and the proxy take them (`--db postgres://…`,
 * `A2A_PROXY_STORE=postgres://…`): recognise one, show one without its password, and add the
 * session defaults both stores run with. Plain string functions: core does not load a driver.
 */

/** Whether `value` is a `postgres://` or `postgresql://` URL. */
export const isPostgresUrl = (value: string): boolean => /^postgres(ql)?:\/\//.test(value)

/** The URL without its password, for logs and messages. */
export const redact = (url: string): string => {
  try {
    const u = new URL(url)
    if (u.password !== "") u.password = "***"
    return u.toString()
  } catch {
    return "postgres://…"
  }
}

/**
 * The URL with `synchronous_commit = off` for our sessions, unless it sets `options` itself.
 * A commit is then acknowledged before PostgreSQL's WAL reaches the disk: durable against a
 * crash of this process (the database has it), lost only if PostgreSQL or the OS crashes in
 * the next ~0.6 s — the same promise as the SQLite store's `synchronous = NORMAL` — and it
 * spares a disk flush (~4 ms here) per commit. Put `?options=-c%20synchronous_commit%3Don` in
 * the URL to wait for the flush.
 */
export const withSessionDefaults = (url: string): string => {
  try {
    const u = new URL(url)
    if (u.searchParams.has("options")) return url
    u.searchParams.set("options", "-c synchronous_commit=off")
    return u.toString()
  } catch {
    return url
  }
}
