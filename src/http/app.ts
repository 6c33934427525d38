// The Hono app: routes, request ids, body limits, validation and OpenAI-shaped errors around the Router.
import { Hono, type Context, type MiddlewareHandler } from "hono";
import type { z } from "zod";
import { formatPath } from "../config/load.ts";
import { auth } from "../middleware/auth.ts";
import { idempotency } from "../middleware/idempotency.ts";
import { OPS_PATHS, observeRequests } from "../middleware/observe.ts";
import { rateLimit } from "../middleware/rate-limit.ts";
import type { Router } from "../routing/failover.ts";
import type { RequestContext } from "../routing/records.ts";
import { CONTENT_TYPE as METRICS_CONTENT_TYPE } from "../observability/metrics.ts";
import type { Observability } from "../observability/observability.ts";
import { concatBytes, encoder } from "../bytes.ts";
import type { ChatRequest, TextRequest } from "../providers/types.ts";
import type { Config } from "../config/schema.ts";
import type { ConfigHealth, ReloadResult } from "../reload.ts";
import { createState, type StateBackend, type StateStatus } from "../state/index.ts";
import type { IdempotencyStore, RateLimitStore } from "../state/types.ts";
import { errorResponse } from "../errors.ts";
import type { AppEnv } from "./context.ts";
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
  /** encodes the SSE chunks of streamed answers (Platform.encodeChunk; default TextEncoder.encode) */
  encodeChunk?: (text: string) => Uint8Array;
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

/** JSON nested deeper than this is refused: deep nesting overflows the stack of JSON.stringify and friends. */
export const MAX_JSON_DEPTH = 128;

/** True when a parsed JSON value nests arrays/objects deeper than `limit` (walks nodes, not bytes: cheap for long strings). */
function tooDeep(v: unknown, limit: number): boolean {
  if (v === null || typeof v !== "object") return false;
  if (limit === 0) return true;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (tooDeep(v[i], limit - 1)) return true;
  } else {
    for (const k in v) if (tooDeep((v as Record<string, unknown>)[k], limit - 1)) return true;
  }
  return false;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

const QUOTE = 0x22, BACKSLASH = 0x5c, COLON = 0x3a, COMMA = 0x2c, OPEN_ARRAY = 0x5b, CLOSE_ARRAY = 0x5d, OPEN_OBJECT = 0x7b, CLOSE_OBJECT = 0x7d;
const isSpace = (b: number) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;

/**
 * The keys and array items of a JSON text, counted on its bytes without parsing it (a parse of a body with
 * half a million keys holds the event loop for most of a second): one per ':' and one per array element, outside
 * strings, which are skipped with indexOf. Stops counting past `max`. -1 when arrays and objects nest deeper than
 * MAX_JSON_DEPTH. Malformed JSON gets some count; JSON.parse then refuses it.
 */
export function countJsonItems(b: Uint8Array, max: number): number {
  const inArray = new Uint8Array(MAX_JSON_DEPTH + 1);
  let depth = 0, items = 0;
  for (let i = 0; i < b.length && items <= max; i++) {
    const c = b[i];
    if (c === QUOTE) {
      // to the closing quote: the next one not escaped by an odd run of backslashes
      let j = i;
      while (true) {
        j = b.indexOf(QUOTE, j + 1);
        if (j < 0) return items;
        let k = j;
        while (b[k - 1] === BACKSLASH) k--;
        if ((j - k) % 2 === 0) break;
      }
      i = j;
    } else if (c === COLON) items++;
    else if (c === COMMA) items += inArray[depth];
    else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > MAX_JSON_DEPTH) return -1;
      inArray[depth] = c === OPEN_ARRAY ? 1 : 0;
      if (c === OPEN_ARRAY) {
        // the first element has no comma before it
        let j = i + 1;
        while (j < b.length && isSpace(b[j])) j++;
        if (j < b.length && b[j] !== CLOSE_ARRAY) items++;
      }
    } else if ((c === CLOSE_ARRAY || c === CLOSE_OBJECT) && depth > 0) depth--;
  }
  return items;
}

const TIMED_OUT = Symbol("timed out");

const tooDeepError = () =>
  errorResponse(400, { message: `request body JSON nests deeper than ${MAX_JSON_DEPTH} levels`, type: "invalid_request_error", code: "json_too_deep" });

/** application/json or application/<anything>+json, any parameters. */
function isJsonType(ct: string): boolean {
  const semi = ct.indexOf(";");
  const t = (semi >= 0 ? ct.slice(0, semi) : ct).trim().toLowerCase();
  return t === "application/json" || (t.startsWith("application/") && t.endsWith("+json"));
}

/** The limits readJson applies, from the `server` block of the request's config. */
type BodyLimits = Pick<Config["server"], "max_body_bytes" | "body_timeout_seconds" | "max_json_items">;

/**
 * The request body, read as JSON and validated against `schema` in one step, for `c.req.valid("json")`: 415 for a
 * non-JSON content type, 413 past max_body_bytes (before reading it all), 408 when it has not all arrived within
 * body_timeout_seconds, 400 for bad UTF-8 or JSON, past max_json_items, or naming the first invalid field. One middleware and one
 * synchronous `safeParse` (none for a body `plain` vouches for):
 * a validator middleware with async hooks behind a body reader (as @hono/zod-validator is) costs CPU on every
 * request (docs/decisions/0005-validjson-without-zod-validator.md).
 */
function validJson<T extends z.ZodType>(
  schema: T,
  plain?: (body: unknown) => boolean,
): MiddlewareHandler<Env, string, { in: { json: z.input<T> }; out: { json: z.output<T> } }> {
  return async (c, next) => {
    const json = await readJson(c, c.get("router").config.server);
    if (json instanceof Response) return json;
    // a plain body (src/http/schemas.ts) is one the schema accepts as it is
    if (plain?.(json)) {
      c.req.addValidatedData("json", json as object);
      return next();
    }
    // reportInput: without it zod 4 omits issue.input, and every wrong type would read "is required"
    const result = schema.safeParse(json, { reportInput: true });
    if (!result.success) {
      const issue = result.error.issues[0];
      const param = formatPath(issue.path);
      const missing = issue.input === undefined && (issue.code === "invalid_type" || issue.code === "invalid_value");
      const msg = missing ? "is required" : issue.message;
      return errorResponse(400, { message: `${param}: ${msg}`, type: "invalid_request_error", param, code: "invalid_value" });
    }
    c.req.addValidatedData("json", result.data as object);
    await next();
  };
}

/** The body, read within body_timeout_seconds and parsed (parseJson), or the error response to answer with. */
async function readJson(c: Context<Env>, limits: BodyLimits): Promise<unknown> {
  const max = limits.max_body_bytes;
  const ct = c.req.header("content-type");
  if (ct && !isJsonType(ct)) {
    return errorResponse(415, { message: `Content-Type must be application/json, got ${ct.slice(0, 100)}`, type: "invalid_request_error", code: "unsupported_media_type" });
  }
  const tooLarge = () =>
    errorResponse(413, { message: `request body exceeds ${max} bytes`, type: "invalid_request_error", code: "request_too_large" });
  const cl = c.req.header("content-length");
  const declared = cl === undefined ? NaN : Number(cl);
  if (declared > max) return tooLarge();
  // The whole body within body_timeout_seconds: the runtimes' idle timers restart on every byte, or do not run
  // while a request is handled, so a body sent a byte a second would hold the request (and its connection) forever.
  // `Connection: close`: the rest of the body is not read, so the connection cannot carry another request.
  const timeoutS = limits.body_timeout_seconds;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<typeof TIMED_OUT>((resolve) => (timer = setTimeout(resolve, timeoutS * 1000, TIMED_OUT)));
  const timedOut = () =>
    errorResponse(408, { message: `request body not received within ${timeoutS} seconds`, type: "invalid_request_error", code: "request_timeout" }, { connection: "close" });
  try {
    const bytes = await readBody(c, declared, max, expired);
    if (bytes === TIMED_OUT) return timedOut();
    if (bytes === null) return tooLarge();
    return parseJson(c, bytes, limits.max_json_items);
  } finally {
    clearTimeout(timer);
  }
}

/** The body's bytes; null past `max` bytes, TIMED_OUT when `expired` settles first (the rest is then not read). */
async function readBody(c: Context<Env>, declared: number, max: number, expired: Promise<typeof TIMED_OUT>): Promise<Uint8Array | null | typeof TIMED_OUT> {
  let bytes: Uint8Array;
  // Content-Length declared: the server reads exactly that many bytes, already checked against the limit, so
  // one arrayBuffer() call, and `body` is not touched: on Deno that getter wraps a body the server has already
  // read in a new ReadableStream and files it in two global WeakMaps, whose tables then grow and are copied by
  // every minor GC (docs/decisions/0013-request-body-arraybuffer.md).
  const body = declared >= 0 ? null : c.req.raw.body;
  if (declared >= 0) {
    const buf = await Promise.race([c.req.raw.arrayBuffer(), expired]);
    if (buf === TIMED_OUT) return TIMED_OUT;
    bytes = new Uint8Array(buf);
  } else if (!body) bytes = new Uint8Array(0);
  else {
    // chunked or unknown length: count as it arrives and stop at the limit
    const chunks: Uint8Array[] = [];
    let size = 0;
    const reader = body.getReader();
    while (true) {
      const r = await Promise.race([reader.read(), expired]);
      if (r === TIMED_OUT) {
        reader.cancel().catch(() => {});
        return TIMED_OUT;
      }
      if (r.done) break;
      size += r.value.byteLength;
      if (size > max) {
        reader.cancel().catch(() => {});
        return null;
      }
      chunks.push(r.value);
    }
    bytes = chunks.length === 1 ? chunks[0] : concatBytes(chunks);
  }
  return bytes;
}

/** The body as a JSON object (its bytes kept as `rawBody`), or the error response to answer with. */
function parseJson(c: Context<Env>, bytes: Uint8Array, maxItems: number): unknown {
  // every key or item takes at least two bytes (`[0,0]`, `{"":0}`): a shorter body cannot pass the limit, and is not scanned
  if (bytes.length > 2 * maxItems) {
    const items = countJsonItems(bytes, maxItems);
    if (items < 0) return tooDeepError();
    if (items > maxItems) {
      return errorResponse(400, { message: `request body JSON has more than ${maxItems} keys and array items (server.max_json_items)`, type: "invalid_request_error", code: "json_too_large" });
    }
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return errorResponse(400, { message: "request body is not valid UTF-8", type: "invalid_request_error", code: "invalid_encoding" });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    if (e instanceof RangeError) return tooDeepError();
    // the parser's message quotes the body: keep only the position, so no client text is echoed (or logged)
    const pos = /position (\d+)/.exec((e as Error).message)?.[1];
    return errorResponse(400, { message: `request body is not valid JSON${pos ? ` (at position ${pos})` : ""}`, type: "invalid_request_error", code: "invalid_json" });
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    return errorResponse(400, { message: "request body must be a JSON object", type: "invalid_request_error", code: "invalid_json" });
  }
  if (tooDeep(json, MAX_JSON_DEPTH)) return tooDeepError();
  c.set("rawBody", bytes);
  return json;
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
  const encode = deps.encodeChunk ?? ((text: string) => encoder.encode(text));

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
    render(await c.get("router").handle("chat", c.req.valid("json") as ChatRequest, routed(c)), encode, c.get("responseTap")));

  app.post("/v1/completions", validJson(TextRequestSchema, plainTextRequest), idem, async (c) =>
    render(await c.get("router").handle("text", c.req.valid("json") as TextRequest, routed(c)), encode, c.get("responseTap")));

  // a stateless subset of the Responses API, served through the chat path (src/http/responses/)
  app.post("/v1/responses", validJson(ResponsesRequestSchema), idem, async (c) => {
    const req = c.req.valid("json") as ResponsesRequest;
    return toResponsesApi(await c.get("router").handle("chat", toChatRequest(req), routed(c, "/v1/responses")), req, c.get("responseTap"));
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
    if (allowed) {
      return errorResponse(405, { message: `method ${c.req.method} not allowed on ${c.req.path}; use ${allowed}`, type: "invalid_request_error", code: "method_not_allowed" }, { allow: allowed });
    }
    const unsupported = unsupportedEndpoint(c.req.method, c.req.path);
    if (unsupported) return errorResponse(404, unsupported);
    return errorResponse(404, { message: `unknown path ${c.req.path}`, type: "invalid_request_error", code: "not_found" });
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
