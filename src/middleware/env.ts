// The Hono environment of the app: what the platform passes to app.fetch (Bindings) and what the
// middleware chain shares through the context (Variables).
import type { Usage } from "../providers/types.ts";
import type { ResponseTap, Router } from "../routing/failover.ts";

export type AppEnv = {
  Bindings: {
    /** the client's socket address, from the runtime's server (see src/platform.ts Handler) */
    remoteAddr?: string;
  };
  Variables: {
    requestId: string;
    /** the Router in force when the request arrived (a reload mid-request does not change it) */
    router: Router;
    /** set when the request was handed to the router (which then reports it to the observers itself) */
    routed: boolean;
    /** the authenticated key's name (the configured `name`, `api_keys[i]`, or "admin"); never the key itself. Unset when auth is off or the path is public. */
    keyName?: string;
    /** the authenticated key's identity, its SHA-256 hex (rate-limit and idempotency scope); never logged */
    keyId?: string;
    /** the raw request body bytes, set by jsonBody (idempotency hashes them) */
    rawBody?: Uint8Array;
    /** charged by the rate limiter with the request's token usage once it is known */
    onUsage?: (u: Usage) => void;
    /** set by the idempotency middleware: the transcript a streamed answer feeds (RequestContext.tap) */
    responseTap?: ResponseTap;
  };
};
