// The Hono app: routes, request ids, body limits, validation and OpenAI-shaped errors around the Router.
import { Hono, type Context } from "hono";
import { auth } from "../middleware/auth.ts";
import { idempotency } from "../middleware/idempotency.ts";
import { OPS_PATHS, observeRequests } from "../middleware/observe.ts";
import { rateLimit } from "../middleware/rate-limit.ts";
import type { Router } from "../routing/failover.ts";
import type { RequestContext } from "../routing/records.ts";
import { CONTENT_TYPE as METRICS_CONTENT_TYPE } from "../observability/metrics.ts";
import type { Observability } from "../observability/observability.ts";
import type { ChatRequest, TextRequest } from "../providers/types.ts";
import type { ConfigHealth, ReloadResult } from "../reload.ts";
import { createState, type StateBackend, type StateStatus } from "../state/index.ts";
import type { IdempotencyStore, RateLimitStore } from "../state/types.ts";
import { errorResponse } from "../errors.ts";
import type { AppEnv } from "./context.ts";
import { validJson } from "./body.ts";
import { render } from "./render.ts";
import { ResponsesRequestSchema, toChatRequest, toResponsesApi, type ResponsesRequest } from "./responses/index.ts";
import { ChatRequestSchema, plainChatRequest, plainTextRequest, TextRequestSchema } from "./schemas.ts";
import { unsupportedEndpoint } from "./unsupported.ts";
import { EventHub } from "../observability/events.ts";
import { DASHBOARD_PATH, dashboardEvents, dashboardPage, dashboardState } from "./dashboard.ts";

export interface AppDeps {
  /** the router in force (a getter, so a config reload can swap it between requests) */
  router(): Router;
  /** stats, metrics and request log (created once at start-up, kept across reloads) */
  observability: Observability;
  /** clock in ms of the in-memory state used when a store below is not given (default performance.now) */
  now?: () => number;
  /** idempotency records and locks: the state backend's (src/server.ts); default in memory */
  idempotencyStore?: IdempotencyStore;
  /** rate-limit buckets: the state backend's (src/server.ts); default in memory */
  rateLimiter?: RateLimitStore;
  /** true while the server shuts down: every new request gets 503 (see src/server.ts) */
  draining?(): boolean;
  /** re-reads the config file and swaps it in (POST /admin/reload); absent when there is no file */
  reload?(): Promise<ReloadResult>;
  /** the `state` block of /health: the state backend and whether it answers */
  stateStatus?(): StateStatus;
  /** the `config` block of /health (src/reload.ts) */
  configHealth?(): ConfigHealth;
  /** the dashboard's live feed (src/observability/events.ts); created here when absent */
  events?: EventHub;
}

type Env = AppEnv;

const ROUTE_METHODS: Record<string, string> = {
  "/v1/chat/completions": "POST",
  "/v1/completions": "POST",
  "/v1/responses": "POST",
  "/v1/models": "GET",
  "/health": "GET",
  "/stats": "GET",
  "/metrics": "GET",
  "/admin/reload": "POST",
  [DASHBOARD_PATH]: "GET",
  "/admin/state": "GET",
  "/admin/budgets": "GET",
  "/admin/events": "GET",
};

const MAX_COST_HEADER = "x-router-max-cost-usd";

const ADMIN_RESET_RE = /^\/admin\/circuit\/[^/]+\/reset$/;
const BUDGET_RESET_RE = /^\/admin\/budgets\/[^/]+\/reset$/;

let idCounter = 0;
const idPrefix = crypto.randomUUID().slice(0, 8);
function newRequestId(): string {
  return `req_${idPrefix}${(++idCounter).toString(36)}`;
}

const REQUEST_ID_RE = /^[\w.:\-]{1,128}$/;

/**
 * host[:port] as a Host header may carry it. The route comes from the request target alone, but Deno builds the
 * request's URL from Host: `Host: x/stats?` turned `GET /health` into the /stats route. So anything else is refused.
 */
const HOST_RE = /^(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * A browser's request from a page of another site that could change something: what any web page can make its
 * visitor's browser send without a CORS preflight (a POST without Content-Type, a form). The router answers no
 * CORS, so no page elsewhere can use it legitimately; refusing these keeps a router without auth (or with an open
 * admin API) on a laptop or an internal network from being driven by a page its users visit. Browsers send
 * Sec-Fetch-Site; other clients do not, and are not affected.
 */
function crossSiteWrite(req: Request): boolean {
  if (req.method === "GET" || req.method === "HEAD" || req.method === "OPTIONS") return false;
  const site = req.headers.get("sec-fetch-site");
  return site === "cross-site" || site === "same-site";
}

export function createApp(deps: AppDeps): Hono<Env> {
  const app = new Hono<Env>();

  app.use("*", async (c, next) => {
    const given = c.req.header("x-request-id");
    const id = given && REQUEST_ID_RE.test(given) ? given : newRequestId();
    c.set("requestId", id);
    const host = c.req.header("host");
    if (host !== undefined && !HOST_RE.test(host)) {
      c.res = errorResponse(400, { message: "the Host header must be a host name or IP address with an optional port", type: "invalid_request_error", param: "host", code: "invalid_host" });
    } else if (crossSiteWrite(c.req.raw)) {
      c.res = errorResponse(403, { message: "requests from another site's web page are refused (Sec-Fetch-Site); call the router from a server or from its own origin", type: "permission_error", code: "cross_site_request" });
    } else if (deps.draining?.()) {
      c.res = errorResponse(503, { message: "the server is shutting down; retry on another instance", type: "server_error", code: "shutting_down" }, { connection: "close" });
    } else {
      // the Router in force when the request arrived, and its config: every step of this request reads this one
      // snapshot, so a config reload mid-request does not affect it
      c.set("router", deps.router());
      await next();
    }
    c.res.headers.set("x-request-id", id);
  });

  const obs = deps.observability;
  app.use("*", observeRequests(obs));
  // server.max_connections: a request past it is turned away at once, before it takes an upstream connection and
  // file descriptors the process may not have; connection: close frees its client connection too
  app.use("*", async (c, next) => {
    if (obs.inFlight <= c.get("router").config.server.max_connections || OPS_PATHS.has(c.req.path)) return next();
    c.res = errorResponse(503, { message: "the server is at server.max_connections; retry shortly", type: "server_error", code: "server_busy" }, { connection: "close", "retry-after": "1" });
  });

  // the in-memory state sizes itself from the config in force (it outlives any one request)
  let memory: StateBackend | undefined;
  const inMemory = () => (memory ??= createState({ backend: "memory" }, { config: () => deps.router().config, now: deps.now }));
  const limiter = deps.rateLimiter ?? inMemory().rateLimits;
  const store = deps.idempotencyStore ?? inMemory().idempotency;
  const events = deps.events ?? new EventHub({ router: deps.router, observability: obs, configHealth: deps.configHealth, reloadAvailable: !!deps.reload });

  // the dashboard's page, before auth: it holds no data, and asks for the admin key its data needs
  app.get(DASHBOARD_PATH, () => dashboardPage(deps.router().config.auth));

  // auth (401/403, also for unknown paths and every /admin/* route), then the per-key rate limit
  app.use("*", auth());
  app.use("*", rateLimit(limiter));

  // a client's own cost ceiling for one request (docs/routing.md): a malformed one is refused, not ignored
  app.use("/v1/*", async (c, next) => {
    const v = c.req.header(MAX_COST_HEADER);
    if (v !== undefined && !(/^\s*[0-9.eE+-]+\s*$/.test(v) && Number(v) >= 0)) {
      return errorResponse(400, { message: `the ${MAX_COST_HEADER} header must be a non-negative number of USD`, type: "invalid_request_error", param: MAX_COST_HEADER, code: "invalid_header" });
    }
    await next();
  });

  const idem = idempotency(store);
  /**
   * The request goes to the router, which reports it to the observers when it ends. `translatedPath`: the
   * client-facing path of a route that renders the router's answer in another API's shape (the Responses API).
   */
  const routed = (c: Context<Env>, translatedPath?: string): RequestContext => {
    c.set("routed", true);
    const maxCost = c.req.header(MAX_COST_HEADER);
    return {
      requestId: c.get("requestId"), signal: c.req.raw.signal, keyName: c.get("keyName"), onUsage: c.get("onUsage"), path: translatedPath,
      maxCostUsd: maxCost === undefined ? undefined : Number(maxCost),
    };
  };

  app.post("/v1/chat/completions", validJson(ChatRequestSchema, plainChatRequest), idem, async (c) =>
    render(await c.get("router").handle("chat", c.req.valid("json") as ChatRequest, routed(c)), c.get("responseTap")));

  app.post("/v1/completions", validJson(TextRequestSchema, plainTextRequest), idem, async (c) =>
    render(await c.get("router").handle("text", c.req.valid("json") as TextRequest, routed(c)), c.get("responseTap")));

  // a stateless subset of the Responses API, served through the chat path (src/http/responses/)
  app.post("/v1/responses", validJson(ResponsesRequestSchema), idem, async (c) => {
    const req = c.req.valid("json") as ResponsesRequest;
    const t = toChatRequest(req);
    return toResponsesApi(await c.get("router").handle("chat", t.chat, routed(c, "/v1/responses")), req, t.param, c.get("responseTap"));
  });

  app.get("/v1/models", (c) => c.json(listModels(c.get("router"))));
  // models.retrieve; an id may hold a slash ("provider/model")
  app.get("/v1/models/:model{.+}", (c) => {
    const id = c.req.param("model");
    const m = listModels(c.get("router")).data.find((x) => x.id === id);
    if (m) return c.json(m);
    return errorResponse(404, {
      message: `The model '${id.slice(0, 200)}' is not served by this router (GET /v1/models lists them)`,
      type: "invalid_request_error", param: "model", code: "model_not_found",
    });
  });

  app.get("/health", (c) => {
    const report = c.get("router").healthReport();
    const body = { ...report, ...(deps.stateStatus && { state: deps.stateStatus() }), ...(deps.configHealth && { config: deps.configHealth() }) };
    return c.json(body, report.status === "down" ? 503 : 200);
  });

  app.post("/admin/circuit/:provider/reset", (c) => {
    const name = c.req.param("provider");
    const snapshot = c.get("router").resetBreaker(name);
    if (!snapshot) {
      return errorResponse(404, { message: `unknown provider "${name.slice(0, 100)}"`, type: "invalid_request_error", param: "provider", code: "provider_not_found" });
    }
    events.check();
    return c.json({ provider: name, ...snapshot });
  });

  // Hot reload (src/reload.ts); the auth middleware guards every /admin/* path with the admin key.
  app.post("/admin/reload", async (c) => {
    if (!deps.reload) return errorResponse(404, { message: "config reload is not available (no config file)", type: "invalid_request_error", code: "not_found" });
    const r = await deps.reload();
    events.check();
    if (r.ok) return c.json({ status: "reloaded", loaded_at: r.loaded_at, strategy: r.strategy, chain: r.chain, providers: r.providers });
    return errorResponse(r.status, {
      message: r.message,
      type: r.status === 400 ? "invalid_request_error" : "server_error",
      code: r.status === 400 ? "invalid_config" : "reload_failed",
      problems: r.problems,
    });
  });

  app.get("/admin/budgets", async (c) => c.json({ budgets: await c.get("router").budgets.report() }));
  app.post("/admin/budgets/:name/reset", async (c) => {
    const name = c.req.param("name");
    if (!(await c.get("router").budgets.reset(name))) {
      return errorResponse(404, { message: `unknown budget "${name.slice(0, 100)}"`, type: "invalid_request_error", param: "name", code: "budget_not_found" });
    }
    const report = (await c.get("router").budgets.report()).find((b) => b.name === name);
    return c.json(report);
  });

  app.get("/admin/state", (c) => dashboardState(c, events));
  app.get("/admin/events", () => dashboardEvents(events));

  app.get("/stats", (c) => c.json(obs.statsJson(c.get("router"))));

  app.get("/metrics", (c) => new Response(obs.metricsText(c.get("router")), { headers: { "content-type": METRICS_CONTENT_TYPE } }));

  app.notFound((c: Context) => {
    const allowed = ROUTE_METHODS[c.req.path] ?? (ADMIN_RESET_RE.test(c.req.path) || BUDGET_RESET_RE.test(c.req.path) ? "POST" : undefined);
    // the client's own method and path, shortened: a runtime accepts request lines of tens of kilobytes
    const method = c.req.method.slice(0, 20), path = c.req.path.slice(0, 200);
    if (allowed) {
      return errorResponse(405, { message: `method ${method} not allowed on ${path}; use ${allowed}`, type: "invalid_request_error", code: "method_not_allowed" }, { allow: allowed });
    }
    const unsupported = unsupportedEndpoint(method, c.req.path);
    if (unsupported) return errorResponse(404, unsupported);
    return errorResponse(404, { message: `unknown path ${path}`, type: "invalid_request_error", code: "not_found" });
  });

  app.onError((err) => {
    return errorResponse(500, { message: `internal error: ${err.message}`, type: "server_error", code: "internal_error" });
  });

  return app;
}

function listModels(router: Router) {
  const data: { id: string; object: "model"; created: number; owned_by: string }[] = [];
  const seen = new Set<string>();
  for (const p of router.config.providers) {
    const models = p.models?.length ? p.models : [p.default_model];
    for (const m of models) {
      for (const id of [m, `${p.name}/${m}`]) {
        if (seen.has(id)) continue;
        seen.add(id);
        data.push({ id, object: "model", created: 0, owned_by: p.name });
      }
    }
  }
  return { object: "list", data };
}
