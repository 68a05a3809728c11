/**
 * The proxy's control plane (keys and usage) as an `HttpApi` definition. The data plane
 * (`/v1/messages`, `/v1/models`) is the Anthropic Messages API, passed through byte for byte,
 * and is not described here.
 */
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiMiddleware, HttpApiSchema, HttpApiSecurity, OpenApi } from "@effect/platform"
import { Context, Schema } from "effect"
import { Forbidden, InvalidRequest, KeyNotFound, ServiceUnavailable, Unauthorized } from "./Errors.js"
import { KeyId } from "./Ids.js"
import { CurrentPrincipal } from "./Principal.js"
import { UsageList, UsageQuery, UsageReport } from "./Usage.js"
import { CreatedKey, CreateKey, KeyList, KeyResponse, UpdateKey, VirtualKey } from "./VirtualKey.js"

/**
 * Admin authentication for key management: `A2A_PROXY_ADMIN_TOKEN` or an OIDC admin JWT.
 * 401 when the token does not verify, 403 when it does but carries no admin role, 503 when
 * the proxy cannot check it (fail closed).
 */
export class ProxyAdmin extends HttpApiMiddleware.Tag<ProxyAdmin>()("@mks/a2a/ProxyApi/ProxyAdmin", {
  failure: Schema.Union(Unauthorized, Forbidden, ServiceUnavailable),
  provides: CurrentPrincipal,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

/** The virtual key a data-plane request (or `/v1/usage/me`) was made with. */
export class CurrentKey extends Context.Tag("@mks/a2a/ProxyApi/CurrentKey")<CurrentKey, VirtualKey>() {}

/** Virtual-key authentication: `x-api-key: sk-mks-…` or `Authorization: Bearer sk-mks-…`; 503 when the key store is unusable. */
export class KeyAuthentication extends HttpApiMiddleware.Tag<KeyAuthentication>()("@mks/a2a/ProxyApi/KeyAuthentication", {
  failure: Schema.Union(Unauthorized, ServiceUnavailable),
  provides: CurrentKey,
  security: {
    apiKey: HttpApiSecurity.apiKey({ key: "x-api-key", in: "header" }),
    bearer: HttpApiSecurity.bearer
  }
}) {}

const KeyPath = Schema.Struct({ id: KeyId })

export class KeysGroup extends HttpApiGroup.make("keys")
  .add(HttpApiEndpoint.post("create", "/v1/keys").setPayload(CreateKey).addSuccess(CreatedKey, { status: 201 }))
  .add(HttpApiEndpoint.get("list", "/v1/keys").addSuccess(KeyList))
  .add(HttpApiEndpoint.patch("update", "/v1/keys/:id").setPath(KeyPath).setPayload(UpdateKey).addSuccess(KeyResponse).addError(KeyNotFound))
  .add(HttpApiEndpoint.del("revoke", "/v1/keys/:id").setPath(KeyPath).addSuccess(HttpApiSchema.NoContent).addError(KeyNotFound))
  .add(HttpApiEndpoint.get("usage", "/v1/usage").setUrlParams(UsageQuery).addSuccess(UsageList).addError(KeyNotFound))
  .middleware(ProxyAdmin) {}

export class SelfGroup extends HttpApiGroup.make("self")
  .add(HttpApiEndpoint.get("usage", "/v1/usage/me").addSuccess(UsageReport))
  .middleware(KeyAuthentication) {}

export class ProxyControlApi extends HttpApi.make("proxy")
  .add(KeysGroup)
  .add(SelfGroup)
  .addError(InvalidRequest)
  .addError(Unauthorized)
  .addError(Forbidden)
  .addError(ServiceUnavailable)
  .annotate(OpenApi.Title, "@mks/a2a proxy control plane") {}
