// The Hono app: routes, request ids, body limits, validation and OpenAI-shaped errors around the Router.
import { zValidator } from "@hono/zod-validator";
import { Hono, type Context, type MiddlewareHandler } from "hono";
import type { z } from "zod";
import { formatPath } from "../config/load.ts";
import type { Router } from "../routing/failover.ts";
import type { ChatRequest, TextRequest } from "../providers/types.ts";
import type { ConfigHealth, ReloadResult } from "../reload.ts";
import { errorResponse } from "./errors.ts";
import { ChatRequestSchema, TextRequestSchema } from "./schemas.ts";

export interface AppDeps {
  /** the router in force (a getter, so a config reload can swap it between requests) */
  router(): Router;
  /** true while the server shuts down: every new request gets 503 (see src/server.ts) */
  draining?(): boolean;
  /** re-reads the config file and swaps it in (POST /admin/reload); absent when there is no file */
  reload?(): Promise<ReloadResult>;
  /** the `config` block of /health (src/reload.ts) */
  configHealth?(): ConfigHealth;
}

type Env = { Variables: { requestId: string; router: Router } };

const ROUTE_METHODS: Record<string, string> = {
  "/v1/chat/completions": "POST",
  "/v1/completions": "POST",
  "/v1/models": "GET",
  "/health": "GET",
  "/admin/reload": "POST",
};

let idCounter = 0;
const idPrefix = crypto.randomUUID().slice(0, 8);
function newRequestId(): string {
  return `req_${idPrefix}${(++idCounter).toString(36)}`;
}

const REQUEST_ID_RE = /^[\w.:\-]{1,128}$/;

/** Reads the body as JSON: 415 for a non-JSON content type, 413 past max_body_bytes (before reading it all), 400 for bad UTF-8 or JSON. */
function jsonBody(maxBytes: (c: Context<Env>) => number): MiddlewareHandler<Env> {
  return async (c, next) => {
    const ct = c.req.header("content-type");
    if (ct && !/^application\/(?:[\w.+-]+\+)?json\b/i.test(ct)) {
      return errorResponse(415, { message: `Content-Type must be application/json, got ${ct.slice(0, 100)}`, type: "invalid_request_error", code: "unsupported_media_type" });
    }
    const max = maxBytes(c);
    const tooLarge = () =>
      errorResponse(413, { message: `request body exceeds ${max} bytes`, type: "invalid_request_error", code: "request_too_large" });
    const declared = Number(c.req.header("content-length"));
    if (declared > max) return tooLarge();
    const body = c.req.raw.body;
    let bytes: Uint8Array;
    if (!body) bytes = new Uint8Array(0);
    else {
      const chunks: Uint8Array[] = [];
      let size = 0;
      const reader = body.getReader();
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        size += value.byteLength;
        if (size > max) {
          reader.cancel().catch(() => {});
          return tooLarge();
        }
        chunks.push(value);
      }
      bytes = chunks.length === 1 ? chunks[0] : new Uint8Array(size);
      if (chunks.length !== 1) {
        let off = 0;
        for (const ch of chunks) {
          bytes.set(ch, off);
          off += ch.byteLength;
        }
      }
    }
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      return errorResponse(400, { message: "request body is not valid UTF-8", type: "invalid_request_error", code: "invalid_encoding" });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      return errorResponse(400, { message: `request body is not valid JSON: ${(e as Error).message}`, type: "invalid_request_error", code: "invalid_json" });
    }
    if (json === null || typeof json !== "object" || Array.isArray(json)) {
      return errorResponse(400, { message: "request body must be a JSON object", type: "invalid_request_error", code: "invalid_json" });
    }
    // hand the parsed body to zValidator without a second parse
    (c.req as unknown as { bodyCache: Record<string, unknown> }).bodyCache.json = Promise.resolve(json);
    await next();
  };
}

function validate<T extends z.ZodType>(schema: T) {
  return zValidator("json", schema, (result, _c) => {
    if (!result.success) {
      const issue = result.error.issues[0];
      const param = formatPath(issue.path);
      const msg = issue.code === "invalid_type" && issue.input === undefined ? "is required" : issue.message;
      return errorResponse(400, { message: `${param}: ${msg}`, type: "invalid_request_error", param, code: "invalid_value" });
    }
    // reportInput: without it zod 4 omits issue.input, and every wrong type would read "is required"
  }, { validationFunction: (s, value) => s.safeParseAsync(value, { reportInput: true }) as never });
}

export function createApp(deps: AppDeps): Hono<Env> {
  const app = new Hono<Env>();

  app.use("*", async (c, next) => {
    const given = c.req.header("x-request-id");
    const id = given && REQUEST_ID_RE.test(given) ? given : newRequestId();
    c.set("requestId", id);
    if (deps.draining?.()) {
      c.res = errorResponse(503, { message: "the server is shutting down; retry on another instance", type: "server_error", code: "shutting_down" }, { connection: "close" });
    } else {
      // the Router in force when the request arrived: a config reload mid-request does not affect it
      c.set("router", deps.router());
      await next();
    }
    c.res.headers.set("x-request-id", id);
  });

  const maxBytes = (c: Context<Env>) => c.get("router").config.server.max_body_bytes;

  app.post("/v1/chat/completions", jsonBody(maxBytes), validate(ChatRequestSchema), (c) =>
    c.get("router").handle("chat", c.req.valid("json") as ChatRequest, { requestId: c.get("requestId"), signal: c.req.raw.signal }));

  app.post("/v1/completions", jsonBody(maxBytes), validate(TextRequestSchema), (c) =>
    c.get("router").handle("text", c.req.valid("json") as TextRequest, { requestId: c.get("requestId"), signal: c.req.raw.signal }));

  app.get("/v1/models", (c) => c.json(listModels(c.get("router"))));

  app.get("/health", (c) => c.json({ status: "ok", ...(deps.configHealth ? { config: deps.configHealth() } : {}) }));

  // Hot reload (src/reload.ts). TODO(issue 5): /admin/* requires the admin key when auth is on.
  app.post("/admin/reload", async (c) => {
    if (!deps.reload) return errorResponse(404, { message: "config reload is not available (no config file)", type: "invalid_request_error", code: "not_found" });
    const r = await deps.reload();
    if (r.ok) return c.json({ status: "reloaded", loaded_at: r.loaded_at, strategy: r.strategy, chain: r.chain, providers: r.providers });
    return errorResponse(r.status, {
      message: r.message,
      type: r.status === 400 ? "invalid_request_error" : "server_error",
      code: r.status === 400 ? "invalid_config" : "reload_failed",
      problems: r.problems,
    });
  });

  app.notFound((c: Context) => {
    const allowed = ROUTE_METHODS[c.req.path];
    if (allowed) {
      return errorResponse(405, { message: `method ${c.req.method} not allowed on ${c.req.path}; use ${allowed}`, type: "invalid_request_error", code: "method_not_allowed" }, { allow: allowed });
    }
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
