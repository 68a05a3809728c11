/** The package version, stamped at build time. */
declare const __VERSION__: string
export const VERSION: string = typeof __VERSION__ === "string" ? __VERSION__ : "0.0.0-dev"
