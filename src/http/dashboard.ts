// The live dashboard: GET /dashboard serves one self-contained page (no CDN, no external font or script), whose
// data comes from GET /admin/state and GET /admin/events (src/observability/events.ts) and whose actions are the
// existing POST /admin/circuit/:provider/reset and POST /admin/reload, all behind the admin key.
import type { Context } from "hono";
import type { Config } from "../config/schema.ts";
import type { AppEnv } from "./context.ts";
import type { EventHub } from "../observability/events.ts";
import { errorResponse } from "../errors.ts";
// A text import: Bun (also in `bun build --compile`) and Deno 2.9 both inline the file as a string, so the
// page ships inside the single binary. bun-types declares every *.html import as an HTMLBundle (Bun's
// full-stack bundler), hence the cast; with `type: "text"` it is a string on both runtimes.
import pageText from "./dashboard/page.html" with { type: "text" };

export const DASHBOARD_PATH = "/dashboard";

const PAGE = pageText as unknown as string;
// the page asks for the admin key only when /admin/* needs one (src/middleware/auth.ts): no refused request first
const PAGES = {
  required: PAGE.replace("__ADMIN_KEY__", "required"),
  none: PAGE.replace("__ADMIN_KEY__", "none"),
};

// Inline style and script are the page's own (one file); nothing else may load, nothing may frame it (the
// reset and reload buttons), and it may only talk to this router.
const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "content-security-policy":
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/** GET /dashboard: public (the page holds no data); everything it shows needs the admin key. */
export function dashboardPage(auth: Config["auth"]): Response {
  return new Response(auth.enabled || auth.admin_api_key ? PAGES.required : PAGES.none, { headers: PAGE_HEADERS });
}

/** GET /admin/state: the snapshot the page shows. */
export function dashboardState(c: Context<AppEnv>, events: EventHub): Response {
  return c.json(events.state(), 200, { "cache-control": "no-store" });
}

/** GET /admin/events: the live feed, as server-sent events. */
export function dashboardEvents(events: EventHub): Response {
  const stream = events.subscribe();
  if (!stream) {
    return errorResponse(503, { message: "too many open dashboard event streams, or the server is shutting down", type: "server_error", code: "too_many_subscribers" }, { "retry-after": "5" });
  }
  return new Response(stream, {
    headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", "x-accel-buffering": "no" },
  });
}
