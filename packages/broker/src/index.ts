/**
 * Placeholder until this server's issue lands; the package builds and exports its version.
 */
export const VERSION = "0.0.0"
