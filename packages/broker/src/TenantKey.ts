/**
 * The key of a per-tenant name (a peer, a runner, an agent) in the broker's in-memory maps: the
 * tenant and the name joined by NUL, which neither may contain, so two tenants never collide.
 */
export const keyOf = (tenant: string, name: string): string => `${tenant}\u0000${name}`
