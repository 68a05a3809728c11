/**
 * Stand-ins for globals, injected into the bin's bundle only (tsup `inject`; the library build
 * does not use this file).
 *
 * `FormData`: @effect/platform's HttpApiClient checks `payload instanceof FormData` on every
 * request with a body. Node defines the global `FormData` lazily, and its first read loads
 * Node's whole fetch implementation (undici): ~20 ms of CPU and several MiB that the bin never
 * uses otherwise (its HTTP goes through node:http). This class answers `instanceof` by the
 * object's tag without touching the global, and still builds a real `FormData` when
 * constructed.
 */
export class FormData {
  static [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === "object" && value !== null && Object.prototype.toString.call(value) === "[object FormData]"
  }

  constructor(...args: Array<unknown>) {
    // biome-ignore lint: returning the real instance from a constructor is the point here.
    return new (globalThis.FormData as unknown as new(...a: Array<unknown>) => object)(...args) as FormData
  }
}
