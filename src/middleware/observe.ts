// The HTTP-side half of request observation: counts a client request as in flight when it arrives and, when
// the app answers it without routing it upstream (validation error, 404, 405, auth, rate limit...), records
// and logs it. Routed requests are recorded by the router's onRequest hook instead (streams end later).
import type { MiddlewareHandler } from "hono";
import type { Observability } from "../observability/observability.ts";

/** Operational endpoints: neither counted nor logged as client requests. */
export const OPS_PATHS = new Set(["/health", "/stats", "/metrics"]);

export function observeRequests(obs: Observability): MiddlewareHandler<{ Variables: { requestId: string; routed: boolean; keyName?: string } }> {
  return async (c, next) => {
    if (OPS_PATHS.has(c.req.path)) return next();
    const t0 = performance.now();
    obs.requestStarted();
    await next();
    if (c.get("routed")) return;
    obs.recordHttp({ request_id: c.get("requestId"), method: c.req.method, path: c.req.path, status: c.res.status, latency_ms: performance.now() - t0, key_name: c.get("keyName") });
  };
}
