// The failover loop: orders the candidate providers for one request, tries them in turn, classifies
// each failure, and returns the first success (JSON, or a stream committed at its first content chunk).
import type { Config, ProviderConfig } from "../config/schema.ts";
import { errorJson, errorResponse } from "../http/errors.ts";
import { encoder } from "../providers/shared.ts";
import type { Adapter, ApiKind, ChatRequest, StreamEvent, StreamSuccess, TextRequest, UpstreamFailure, Usage } from "../providers/types.ts";
import { UpstreamStreamError } from "../providers/types.ts";
import { estimateUsage } from "../providers/usage.ts";

export type AttemptOutcome = "success" | "error" | "timeout" | "skipped" | "client_error";

export interface AttemptRecord {
  provider: string;
  model: string;
  outcome: AttemptOutcome;
  status: number;
  latency_ms: number;
  ttfb_ms?: number;
  reason?: string;
  usage?: Usage;
}

export interface RequestRecord {
  request_id: string;
  endpoint: ApiKind;
  stream: boolean;
  status: number;
  provider?: string;
  model?: string;
  attempts: AttemptRecord[];
  latency_ms: number;
  usage?: Usage;
  /** the model name the client asked for */
  requested_model?: string;
  /** the authenticated API key's name (never the key), when auth is on */
  key_name?: string;
}

/** Observers of the routing loop (stats, metrics, logs, breakers plug in here). */
export interface RouterHooks {
  onAttempt?(a: AttemptRecord): void;
  onRequest?(r: RequestRecord): void;
}

export interface RequestContext {
  requestId: string;
  /** aborts when the client goes away */
  signal?: AbortSignal;
  /** the authenticated API key's name, copied into the RequestRecord */
  keyName?: string;
  /** called once when the request finishes with usage (streams: when the stream ends) */
  onUsage?(u: Usage): void;
}

interface Candidate {
  provider: ProviderConfig;
  adapter: Adapter;
  model: string;
}

/** Why an attempt failed, as the failover loop and the breaker see it. */
export type FailureClass =
  | "client" // 400/413/422: the client's fault, returned at once
  | "context" // context window exceeded: try the next provider, not a breaker failure
  | "retryable" // connection error, timeout, 5xx, 408, 429, 401, 403, other 4xx: next provider
  | "aborted"; // the client went away

export function classifyFailure(f: UpstreamFailure): FailureClass {
  if (f.kind === "aborted") return "aborted";
  if (f.kind !== "http") return "retryable";
  if (f.contextExceeded) return "context";
  if (f.status === 400 || f.status === 413 || f.status === 422) return "client";
  return "retryable";
}

const SSE_HEADERS = { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive" };
const DONE = encoder.encode("data: [DONE]\n\n");

function timeoutReason(): Error {
  const e = new Error("timeout");
  e.name = "TimeoutError";
  return e;
}

export class Router {
  readonly adapters: Map<string, Adapter>;
  readonly #providers: Map<string, ProviderConfig>;

  constructor(readonly config: Config, adapters: Map<string, Adapter>, readonly hooks: RouterHooks = {}, readonly now: () => number = () => performance.now()) {
    this.adapters = adapters;
    this.#providers = new Map(config.providers.map((p) => [p.name, p]));
  }

  /** The model a provider receives for a client model name. */
  static resolveModel(p: ProviderConfig, model: string): string {
    const mapped = p.model_map?.[model];
    if (mapped) return mapped;
    if (p.models?.includes(model)) return model;
    return p.default_model;
  }

  /** Candidates in the order they will be tried; a "provider/model" name pins one provider. */
  candidates(model: string): Candidate[] {
    const slash = model.indexOf("/");
    if (slash > 0) {
      const pinned = this.#providers.get(model.slice(0, slash));
      if (pinned) {
        const rest = model.slice(slash + 1);
        return [{ provider: pinned, adapter: this.adapters.get(pinned.name)!, model: pinned.model_map?.[rest] ?? (rest || pinned.default_model) }];
      }
    }
    const out: Candidate[] = [];
    for (const name of this.config.routing.fallback_chain) {
      const p = this.#providers.get(name)!;
      out.push({ provider: p, adapter: this.adapters.get(name)!, model: Router.resolveModel(p, model) });
    }
    const max = this.config.routing.max_attempts;
    return max && out.length > max ? out.slice(0, max) : out;
  }

  async handle(kind: ApiKind, body: ChatRequest | TextRequest, ctx: RequestContext): Promise<Response> {
    const t0 = this.now();
    try {
      return await this.#route(kind, body, ctx, t0);
    } catch (e) {
      // an unexpected error still ends the request for the observers (the app answers 500)
      this.hooks.onRequest?.({ request_id: ctx.requestId, endpoint: kind, stream: body.stream === true, status: 500, attempts: [], latency_ms: this.now() - t0, requested_model: body.model, key_name: ctx.keyName });
      throw e;
    }
  }

  async #route(kind: ApiKind, body: ChatRequest | TextRequest, ctx: RequestContext, t0: number): Promise<Response> {
    const stream = body.stream === true;
    const includeUsage = stream && body.stream_options?.include_usage === true;
    const attempts: AttemptRecord[] = [];
    const deadline = t0 + this.config.routing.request_timeout_seconds * 1000;
    const finish = (status: number, extra: Partial<RequestRecord> = {}) => {
      if (extra.usage) ctx.onUsage?.(extra.usage);
      this.hooks.onRequest?.({ request_id: ctx.requestId, endpoint: kind, stream, status, attempts, latency_ms: this.now() - t0, requested_model: body.model, key_name: ctx.keyName, ...extra });
    };

    for (const cand of this.candidates(body.model)) {
      const remaining = deadline - this.now();
      if (remaining <= 0) break;
      const ac = new AbortController();
      const onClientAbort = () => ac.abort(ctx.signal?.reason);
      ctx.signal?.addEventListener("abort", onClientAbort, { once: true });
      const timer = setTimeout(() => ac.abort(timeoutReason()), Math.min(cand.provider.timeout_seconds * 1000, remaining));
      const ta = this.now();
      const record = (outcome: AttemptOutcome, status: number, extra: Partial<AttemptRecord> = {}) => {
        const a: AttemptRecord = { provider: cand.provider.name, model: cand.model, outcome, status, latency_ms: this.now() - ta, ...extra };
        attempts.push(a);
        return a;
      };
      const opts = { model: cand.model, stream, includeUsage, signal: ac.signal };
      const res = kind === "chat" ? await cand.adapter.chat(body as ChatRequest, opts) : await cand.adapter.text(body as TextRequest, opts);

      if (!res.ok) {
        clearTimeout(timer);
        ctx.signal?.removeEventListener("abort", onClientAbort);
        const cls = classifyFailure(res);
        const a = record(cls === "client" ? "client_error" : res.kind === "timeout" ? "timeout" : "error", res.status, { reason: res.message });
        this.hooks.onAttempt?.(a);
        if (cls === "aborted") {
          finish(499);
          return errorResponse(499, { message: "client closed request", type: "invalid_request_error", code: "client_closed_request" });
        }
        if (cls === "client") {
          finish(res.status, { provider: cand.provider.name, model: cand.model });
          return errorResponse(res.status, {
            message: res.message, type: res.type ?? "invalid_request_error", param: res.param ?? null, code: res.code ?? null,
          }, { "x-router-provider": cand.provider.name, "x-router-attempts": String(attempts.length) });
        }
        continue;
      }

      const headers = { "x-router-provider": cand.provider.name, "x-router-attempts": String(attempts.length + 1) };
      if (!res.stream) {
        clearTimeout(timer);
        ctx.signal?.removeEventListener("abort", onClientAbort);
        const usage = res.usage ?? estimateUsage(kind, body, res.body);
        const a = record("success", 200, { usage });
        this.hooks.onAttempt?.(a);
        finish(200, { provider: cand.provider.name, model: res.model, usage });
        return new Response(res.body, { status: 200, headers: { "content-type": "application/json", ...headers } });
      }

      // Stream: read ahead until the first content chunk; a failure before it still fails over.
      const pending: string[] = [];
      let usage: Usage | undefined;
      let failure: UpstreamFailure | undefined;
      let ended = false;
      try {
        while (true) {
          const r = await res.events.next();
          if (r.done) {
            ended = true;
            break;
          }
          if (r.value.usage) usage = r.value.usage;
          if (r.value.data !== null) pending.push(r.value.data);
          if (r.value.content) break;
        }
      } catch (e) {
        failure = streamFailure(e, ac.signal);
      }
      clearTimeout(timer);
      if (failure) {
        ctx.signal?.removeEventListener("abort", onClientAbort);
        const a = record(failure.kind === "timeout" ? "timeout" : "error", failure.status, { reason: failure.message });
        this.hooks.onAttempt?.(a);
        if (failure.kind === "aborted") {
          finish(499);
          return errorResponse(499, { message: "client closed request", type: "invalid_request_error", code: "client_closed_request" });
        }
        continue;
      }
      const ttfb = this.now() - ta;
      return new Response(
        this.#pipe(res, pending, ended, usage, ac, () => ctx.signal?.removeEventListener("abort", onClientAbort), (ok, u0, reason) => {
          const u = ok ? u0 ?? estimateUsage(kind, body) : u0;
          const a = record(ok ? "success" : "error", ok ? 200 : 502, { ttfb_ms: ttfb, usage: u, reason });
          this.hooks.onAttempt?.(a);
          finish(ok ? 200 : 502, { provider: cand.provider.name, model: res.model, usage: u });
        }),
        { status: 200, headers: { ...SSE_HEADERS, ...headers } },
      );
    }

    finish(502);
    if (attempts.length === 0) {
      return errorResponse(503, { message: "no provider could take the request", type: "upstream_error", code: "all_providers_unavailable" });
    }
    return errorResponse(502, {
      message: `all ${attempts.length} provider attempt(s) failed`,
      type: "upstream_error",
      code: "all_providers_failed",
      attempts: attempts.map((a) => ({ provider: a.provider, status: a.status, reason: a.reason ?? a.outcome })),
    });
  }

  /** The client-facing SSE body of a committed stream. */
  #pipe(
    res: StreamSuccess,
    pending: string[],
    ended: boolean,
    usage: Usage | undefined,
    ac: AbortController,
    detach: () => void,
    done: (ok: boolean, usage: Usage | undefined, reason?: string) => void,
  ): ReadableStream<Uint8Array> {
    const idleMs = this.config.routing.stream_idle_timeout_seconds * 1000;
    let idleTimer: ReturnType<typeof setTimeout> | undefined;
    let closed = false;
    const close = (ok: boolean, reason?: string) => {
      if (closed) return;
      closed = true;
      if (idleTimer) clearTimeout(idleTimer);
      detach();
      done(ok, usage, reason);
    };
    const events = res.events;
    return new ReadableStream<Uint8Array>({
      start(controller) {
        if (pending.length) controller.enqueue(encoder.encode(pending.map((d) => `data: ${d}\n\n`).join("")));
        if (ended) {
          controller.enqueue(DONE);
          controller.close();
          close(true);
        }
      },
      async pull(controller) {
        // loop until something is enqueued: an event may carry nothing to forward (a dropped usage chunk)
        while (true) {
          idleTimer = setTimeout(() => ac.abort(timeoutReason()), idleMs);
          let r: IteratorResult<StreamEvent, void>;
          try {
            r = await events.next();
          } catch (e) {
            const f = streamFailure(e, ac.signal);
            const msg = f.kind === "timeout" ? `upstream stream stalled for more than ${idleMs / 1000}s` : f.message;
            if (f.kind !== "aborted") {
              try {
                controller.enqueue(encoder.encode(`data: ${errorJson({ message: msg, type: "upstream_error", code: f.kind === "timeout" ? "stream_timeout" : (e as UpstreamStreamError).code ?? "upstream_stream_error" })}\n\n`));
                controller.close();
              } catch { /* client gone */ }
            }
            close(false, msg);
            return;
          } finally {
            clearTimeout(idleTimer);
          }
          if (r.done) {
            controller.enqueue(DONE);
            controller.close();
            close(true);
            return;
          }
          if (r.value.usage) usage = r.value.usage;
          if (r.value.data !== null) {
            controller.enqueue(encoder.encode(`data: ${r.value.data}\n\n`));
            return;
          }
        }
      },
      cancel() {
        ac.abort(new DOMException("client disconnected", "AbortError"));
        events.return(undefined).catch(() => {});
        close(false, "client disconnected");
      },
    }, { highWaterMark: 0 });
  }
}

function streamFailure(e: unknown, signal: AbortSignal): UpstreamFailure {
  if (signal.aborted) {
    const timeout = (signal.reason as Error | undefined)?.name === "TimeoutError";
    return { ok: false, status: timeout ? 504 : 499, kind: timeout ? "timeout" : "aborted", message: timeout ? "upstream timed out" : "request aborted" };
  }
  if (e instanceof UpstreamStreamError) return { ok: false, status: 502, kind: "protocol", message: e.message, code: e.code };
  return { ok: false, status: 502, kind: "connect", message: `upstream stream broke: ${(e as Error)?.message ?? String(e)}` };
}
