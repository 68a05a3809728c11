/**
 * The proxy's connection-limit defaults: keep-alive 65 s (longer than the usual 60 s idle timeout
 * of load balancers and clients that reuse connections between model calls) and 120 s to upload
 * a request (conversations are large); headers and the pending cap as everywhere. A module of its
 * own so the CLI spec (and the docs script) can read them without the server.
 */
import { ServerLimits } from "@mks/a2a"

export const PROXY_LIMITS: ServerLimits.ServerLimits = { ...ServerLimits.defaults, keepAliveTimeout: 65_000, requestTimeout: 120_000 }
