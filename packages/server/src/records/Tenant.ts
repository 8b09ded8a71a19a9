import { Context } from "effect"

/**
 * The tenant a request acts for. Every query, cache key, idempotency key and
 * event is scoped by it. Until API keys exist every request is the `default` tenant.
 */
export const CurrentTenant = Context.Reference<string>("strata/CurrentTenant", { defaultValue: () => "default" })
