// The Hono context of the app: what the platform passes to app.fetch (Bindings) and what the middleware chain
// shares through the context (Variables); and the ResponseTap the idempotency middleware offers the renderers.
import type { Usage } from "../providers/types.ts";
import type { Router } from "../routing/failover.ts";

export type AppEnv = {
  Bindings: {
    /** the client's socket address, from the runtime's server (see src/platform.ts Handler) */
    remoteAddr?: string;
  };
  Variables: {
    requestId: string;
    /**
     * The Router in force when the request arrived, and with it the config snapshot every step of the request
     * reads (auth, rate limit, body limits, idempotency, routing): a reload mid-request does not change it.
     */
    router: Router;
    /** set when the request was handed to the router (which then reports it to the observers itself) */
    routed: boolean;
    /** the authenticated key's name (the configured `name`, `api_keys[i]`, or "admin"); never the key itself. Unset when auth is off or the path is public. */
    keyName?: string;
    /** the authenticated key's identity, its SHA-256 hex (rate-limit and idempotency scope); never logged */
    keyId?: string;
    /** the raw request body bytes, set by validJson (idempotency hashes them) */
    rawBody?: Uint8Array;
    /** charged by the rate limiter with the request's token usage once it is known */
    onUsage?: (u: Usage) => void;
    /** set by the idempotency middleware: the transcript the rendered answer feeds */
    responseTap?: ResponseTap;
  };
};

/**
 * A listener on the body of a successful answer, fed by the renderer as it answers (src/http/render.ts, and the
 * Responses API's in src/http/responses/): a stream's bytes reach it without a second stream in front of the
 * client's, and a JSON body without being read back out of the Response (docs/decisions/0010-response-tap.md).
 */
export interface ResponseTap {
  /** true once something feeds this tap: a stream's renderer sets it when it takes the tap, body() sets it itself */
  attached: boolean;
  /** the whole body of a JSON answer (then no chunk() or end() follows) */
  body(text: string): void;
  /** every chunk the client is sent, in order; the tap may keep it (nothing writes to it afterwards) */
  chunk(bytes: Uint8Array): void;
  /** the stream ended: ok when it completed ([DONE] sent), false when it failed or the client went away */
  end(ok: boolean): void;
}
