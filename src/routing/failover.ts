// The failover loop: orders the candidate providers for one request, tries them in turn, classifies
// each failure, and returns the first success (JSON, or a stream committed at its first content chunk).
import type { Config, ProviderConfig } from "../config/schema.ts";
import { encoder } from "../bytes.ts";
import { errorJson, errorResponse } from "../errors.ts";
import type { Adapter, ApiKind, ChatRequest, StreamEvent, StreamEvents, TextRequest, UpstreamFailure, Usage } from "../providers/types.ts";
import { UpstreamStreamError } from "../providers/types.ts";
import { estimateUsage } from "../providers/tokens.ts";
import { fetchFailure } from "../providers/upstream.ts";
import { sleep } from "../sleep.ts";
import { BreakerRegistry, shortError, type BreakerSnapshot, type BreakerState, type CircuitBreaker, type Permit } from "./breaker.ts";
import { HealthTracker } from "./health.ts";
import { estimateRequestTokens, orderCandidates, type RankSignals } from "./strategies.ts";

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
  /** the client-facing path when it is not the endpoint's own (POST /v1/responses is served as chat) */
  path?: string;
}

/** Observers of the routing loop (stats, metrics, logs, breakers plug in here). */
export interface RouterHooks {
  /** an attempt is about to be sent to this provider (its onAttempt follows when it ends) */
  onAttemptStart?(provider: string): void;
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
  /** the client-facing path, copied into the RequestRecord, when it is not the endpoint's own */
  path?: string;
  /** sees the body of a successful answer as it goes to the client (the idempotency cache's transcript) */
  tap?: ResponseTap;
}

/**
 * A listener on the body of a successful answer, fed by the router as it answers: a stream's bytes reach it without
 * a second stream in front of the client's, and a JSON body without being read back out of the Response
 * (docs/decisions/0010-response-tap.md).
 */
export interface ResponseTap {
  /** true once something feeds this tap: a stream's producer sets it when it takes the tap, body() sets it itself */
  attached: boolean;
  /** the whole body of a JSON answer (then no chunk() or end() follows) */
  body(text: string): void;
  /** every chunk the client is sent, in order; the tap may keep it (nothing writes to it afterwards) */
  chunk(bytes: Uint8Array): void;
  /** the stream ended: ok when it completed ([DONE] sent), false when it failed or the client went away */
  end(ok: boolean): void;
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
  | "unsupported" // this provider's protocol cannot express the request (nothing sent): next provider, not a failure
  | "retryable" // connection error, timeout, 5xx, 408, 429, 401, 403, other 4xx: next provider
  | "aborted"; // the client went away

export function classifyFailure(f: UpstreamFailure): FailureClass {
  if (f.kind === "aborted") return "aborted";
  if (f.unsupported) return "unsupported";
  if (f.kind !== "http") return "retryable";
  if (f.contextExceeded) return "context";
  if (f.status === 400 || f.status === 413 || f.status === 422) return "client";
  return "retryable";
}

const SSE_HEADERS = { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive" };
const DONE = encoder.encode("data: [DONE]\n\n");

/** A short description of a failure for the breaker's last_error. */
function failureSummary(f: UpstreamFailure): string {
  if (f.kind === "http") return `HTTP ${f.status}: ${f.message}`;
  if (f.kind === "timeout") return `timeout: ${f.message}`;
  return f.message;
}

function timeoutReason(): Error {
  const e = new Error("timeout");
  e.name = "TimeoutError";
  return e;
}

export interface HealthReport {
  status: "ok" | "degraded" | "down";
  providers: Record<string, BreakerSnapshot>;
}

export interface RouterOptions {
  /** the circuit breakers; create once at startup and share across reloads (the Router syncs it to its config) */
  breakers?: BreakerRegistry;
  /** latency / success-rate signals for the latency and health strategies; shared like `breakers` */
  health?: HealthTracker;
  /** monotonic clock in ms for latencies and deadlines (default performance.now) */
  now?: () => number;
  /** randomness for retry jitter, 0..1 (default Math.random) */
  random?: () => number;
  /** first retry backoff in ms (doubles per retry, default 200) */
  retryBaseMs?: number;
  /** largest retry backoff in ms (default 5000) */
  retryMaxBackoffMs?: number;
  /** encodes the SSE chunks of streamed responses (default TextEncoder.encode; Platform.encodeChunk) */
  encodeChunk?: (text: string) => Uint8Array;
}

/** The per-request state of the failover loop. */
interface Req {
  kind: ApiKind;
  body: ChatRequest | TextRequest;
  ctx: RequestContext;
  stream: boolean;
  includeUsage: boolean;
  deadline: number;
  attempts: AttemptRecord[];
  /** upstream attempts actually sent (retries included, skipped ones not) */
  sent: number;
  /** an attempt was cut short by the request deadline (timers may fire a hair early, so do not rely on now()) */
  deadlineHit: boolean;
  finish(status: number, extra?: Partial<RequestRecord>): void;
}

type Failed = UpstreamFailure & { cls: FailureClass };

/** Failures worth retrying on the same provider (401/403 and other 4xx are not: they will not change). */
function sameProviderRetryable(f: UpstreamFailure): boolean {
  if (f.kind !== "http") return f.kind !== "aborted";
  return f.status >= 500 || f.status === 408 || f.status === 429;
}

const clientClosed = () => errorResponse(499, { message: "client closed request", type: "invalid_request_error", code: "client_closed_request" });

export class Router {
  readonly adapters: Map<string, Adapter>;
  readonly breakers: BreakerRegistry;
  readonly health: HealthTracker;
  readonly now: () => number;
  readonly #providers: Map<string, ProviderConfig>;
  /** this config's breakers, held by reference so a reload that drops a provider does not break requests in flight */
  readonly #breakerOf: Map<string, CircuitBreaker>;
  readonly #signals: RankSignals;
  readonly #random: () => number;
  readonly #retryBaseMs: number;
  readonly #retryMaxBackoffMs: number;
  readonly #encodeChunk: (text: string) => Uint8Array;

  constructor(readonly config: Config, adapters: Map<string, Adapter>, readonly hooks: RouterHooks = {}, opts: RouterOptions = {}) {
    this.adapters = adapters;
    this.#providers = new Map(config.providers.map((p) => [p.name, p]));
    this.now = opts.now ?? (() => performance.now());
    this.breakers = opts.breakers ?? new BreakerRegistry();
    this.breakers.sync(config);
    this.health = opts.health ?? new HealthTracker(undefined, this.breakers.now);
    this.health.sync(config);
    this.#breakerOf = new Map(config.providers.map((p) => [p.name, this.breakers.get(p.name)!]));
    this.#random = opts.random ?? Math.random;
    this.#retryBaseMs = opts.retryBaseMs ?? 200;
    this.#retryMaxBackoffMs = opts.retryMaxBackoffMs ?? 5000;
    this.#encodeChunk = opts.encodeChunk ?? ((text) => encoder.encode(text));
    this.#signals = {
      state: (n) => this.#breakerOf.get(n)?.state,
      latency: (n) => this.health.latency(n),
      successRate: (n) => this.health.successRate(n),
    };
  }

  /** The model a provider receives for a client model name. */
  static resolveModel(p: ProviderConfig, model: string): string {
    const mapped = p.model_map?.[model];
    if (mapped) return mapped;
    if (p.models?.includes(model)) return model;
    return p.default_model;
  }

  /** A provider's breaker state (for /health, /stats, /metrics), or undefined for an unknown provider. */
  providerState(name: string): BreakerState | undefined {
    return this.#breakerOf.get(name)?.state;
  }

  /** Breaker snapshots of this config's providers, in config order. */
  breakerSnapshots(): Record<string, BreakerSnapshot> {
    const out: Record<string, BreakerSnapshot> = {};
    for (const [name, b] of this.#breakerOf) out[name] = b.snapshot();
    return out;
  }

  /**
   * The body of GET /health: `down` when no provider can take traffic (every breaker open), `degraded` when at
   * least one breaker is not closed, else `ok`.
   */
  healthReport(): HealthReport {
    const providers = this.breakerSnapshots();
    let open = 0, notClosed = 0, n = 0;
    for (const name in providers) {
      n++;
      const st = providers[name].state;
      if (st !== "closed") notClosed++;
      if (st === "open") open++;
    }
    return { status: open === n ? "down" : notClosed ? "degraded" : "ok", providers };
  }

  /** Manual reset of a provider's breaker: the new snapshot, or undefined for an unknown provider. */
  resetBreaker(name: string): BreakerSnapshot | undefined {
    const b = this.#breakerOf.get(name);
    if (!b) return undefined;
    b.reset();
    return b.snapshot();
  }

  /** Candidates in chain order; a "provider/model" name pins one provider. (routing.max_attempts is applied in handle.) */
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
    return out;
  }

  /** The candidates of one request in the order the configured strategy tries them. */
  plan(kind: ApiKind, body: ChatRequest | TextRequest): Candidate[] {
    return orderCandidates(this.config.routing.strategy, this.candidates(body.model), this.#signals, () => estimateRequestTokens(kind, body));
  }

  async handle(kind: ApiKind, body: ChatRequest | TextRequest, ctx: RequestContext): Promise<Response> {
    const t0 = this.now();
    try {
      return await this.#route(kind, body, ctx, t0);
    } catch (e) {
      // an unexpected error still ends the request for the observers (the app answers 500)
      this.hooks.onRequest?.({ request_id: ctx.requestId, endpoint: kind, stream: body.stream === true, status: 500, attempts: [], latency_ms: this.now() - t0, requested_model: body.model, key_name: ctx.keyName, path: ctx.path });
      throw e;
    }
  }

  async #route(kind: ApiKind, body: ChatRequest | TextRequest, ctx: RequestContext, t0: number): Promise<Response> {
    const stream = body.stream === true;
    const attempts: AttemptRecord[] = [];
    const rq: Req = {
      kind, body, ctx, stream, attempts,
      includeUsage: stream && body.stream_options?.include_usage === true,
      deadline: t0 + this.config.routing.request_timeout_seconds * 1000,
      sent: 0,
      deadlineHit: false,
      finish: (status, extra = {}) => {
        if (extra.usage) ctx.onUsage?.(extra.usage);
        this.hooks.onRequest?.({ request_id: ctx.requestId, endpoint: kind, stream, status, attempts, latency_ms: this.now() - t0, requested_model: body.model, key_name: ctx.keyName, path: ctx.path, ...extra });
      },
    };
    const maxProviders = this.config.routing.max_attempts ?? Infinity;
    let tried = 0;
    let skipped = 0;
    let soonestMs = Infinity;
    let timedOut = false;

    let firstUnsupported: Failed | undefined;
    let failedOtherwise = false;
    providers: for (const cand of this.plan(kind, body)) {
      if (tried >= maxProviders) break;
      if (rq.deadlineHit || rq.deadline - this.now() <= 0) {
        timedOut = true;
        break;
      }
      const breaker = this.#breakerOf.get(cand.provider.name)!;
      let permit = breaker.acquire();
      if (!permit) {
        // open, or every half-open probe slot taken: skip without a network call
        skipped++;
        soonestMs = Math.min(soonestMs, breaker.retryInMs());
        const a: AttemptRecord = {
          provider: cand.provider.name, model: cand.model, outcome: "skipped", status: 0, latency_ms: 0,
          reason: breaker.state === "open" ? "circuit open" : "circuit half-open: probe in progress",
        };
        attempts.push(a);
        this.hooks.onAttempt?.(a);
        continue;
      }
      tried++;
      for (let n = 0; ; n++) {
        const r = await this.#attempt(rq, cand, breaker, permit);
        if (r instanceof Response) return r;
        if (r.cls === "unsupported") firstUnsupported ??= r;
        else failedOtherwise = true;
        // a context-window 400 goes straight to the next provider; other failures may retry this one
        if (rq.deadlineHit) {
          timedOut = true;
          break providers;
        }
        if (r.cls !== "retryable" || n >= cand.provider.max_retries || !sameProviderRetryable(r)) break;
        const wait = this.#retryDelay(n, r.retryAfter);
        if (wait === undefined) break; // Retry-After longer than the cap: move on instead of waiting
        if (this.now() + wait >= rq.deadline) break;
        if (!(await sleep(wait, ctx.signal))) {
          rq.finish(499);
          return clientClosed();
        }
        if (rq.deadline - this.now() <= 0) {
          timedOut = true;
          break providers;
        }
        const next = breaker.acquire();
        if (!next) break; // the breaker opened meanwhile (or another request holds the probe)
        permit = next;
      }
    }

    if (rq.sent === 0 && skipped > 0 && !timedOut) {
      const retryAfter = Math.max(1, Math.ceil(soonestMs / 1000));
      rq.finish(503);
      return errorResponse(503, {
        message: `no provider can take the request: every circuit breaker is open (or busy probing); retry in ${retryAfter}s`,
        type: "upstream_error",
        code: "all_providers_unavailable",
      }, { "retry-after": String(retryAfter) });
    }
    if (firstUnsupported && !failedOtherwise && !timedOut) {
      // no provider could take this request as written (e.g. an image URL where only base64 works): the client's to fix
      const f = firstUnsupported;
      rq.finish(400);
      return errorResponse(400, { message: f.message, type: f.type ?? "invalid_request_error", param: f.param ?? null, code: f.code ?? null });
    }
    const list = attempts.map((a) => ({ provider: a.provider, status: a.status, reason: a.reason ?? a.outcome }));
    if (timedOut) {
      rq.finish(504);
      return errorResponse(504, {
        message: `no provider answered within routing.request_timeout_seconds (${this.config.routing.request_timeout_seconds}s)`,
        type: "upstream_error",
        code: "request_timeout",
        attempts: list,
      });
    }
    rq.finish(502);
    return errorResponse(502, {
      message: `all ${rq.sent} provider attempt(s) failed`,
      type: "upstream_error",
      code: "all_providers_failed",
      attempts: list,
    });
  }

  /** Backoff before retry n (0-based): 200 ms x 2^n capped, with jitter, at least Retry-After; undefined past the cap. */
  #retryDelay(n: number, retryAfterSec: number | undefined): number | undefined {
    if (retryAfterSec !== undefined && retryAfterSec > this.config.routing.max_retry_after_seconds) return undefined;
    const backoff = Math.min(this.#retryMaxBackoffMs, this.#retryBaseMs * 2 ** n);
    const jittered = backoff / 2 + this.#random() * (backoff / 2);
    return Math.max(jittered, (retryAfterSec ?? 0) * 1000);
  }

  /** Breaker and health accounting of one attempt. */
  #settle(cand: Candidate, breaker: CircuitBreaker, permit: Permit, verdict: "success" | "failure" | "neutral", latencyMs: number, f?: UpstreamFailure): void {
    if (verdict === "success") {
      breaker.success(permit);
      this.health.success(cand.provider.name, latencyMs);
    } else if (verdict === "failure") {
      breaker.failure(permit, shortError(f ? failureSummary(f) : "failed"), f?.retryAfter);
      this.health.failure(cand.provider.name);
    } else {
      breaker.release(permit);
    }
  }

  /** One upstream attempt: a final Response (success, client error, client gone) or a failure to go on from. */
  async #attempt(rq: Req, cand: Candidate, breaker: CircuitBreaker, permit: Permit): Promise<Response | Failed> {
    const { ctx, attempts } = rq;
    const remaining = rq.deadline - this.now();
    const ac = new AbortController();
    const onClientAbort = () => ac.abort(ctx.signal?.reason);
    ctx.signal?.addEventListener("abort", onClientAbort, { once: true });
    if (ctx.signal?.aborted) ac.abort(ctx.signal.reason);
    const providerMs = cand.provider.timeout_seconds * 1000;
    const timer = setTimeout(() => {
      if (remaining < providerMs) rq.deadlineHit = true;
      ac.abort(timeoutReason());
    }, Math.min(providerMs, remaining));
    const ta = this.now();
    const record = (outcome: AttemptOutcome, status: number, extra: Partial<AttemptRecord> = {}) => {
      const a: AttemptRecord = { provider: cand.provider.name, model: cand.model, outcome, status, latency_ms: this.now() - ta, ...extra };
      attempts.push(a);
      this.hooks.onAttempt?.(a);
      return a;
    };
    const fail = (f: UpstreamFailure): Response | Failed => {
      ctx.signal?.removeEventListener("abort", onClientAbort);
      const cls = classifyFailure(f);
      // an attempt cut short by the request deadline (before its own timeout_seconds) is not the provider's fault
      const counts = cls === "retryable" && !(f.kind === "timeout" && rq.deadlineHit);
      this.#settle(cand, breaker, permit, counts ? "failure" : "neutral", 0, f);
      record(cls === "client" || cls === "unsupported" ? "client_error" : f.kind === "timeout" ? "timeout" : "error", f.status, {
        reason: cls === "client" ? f.message : shortError(f.message),
      });
      if (cls === "aborted") {
        rq.finish(499);
        return clientClosed();
      }
      if (cls === "client") {
        rq.finish(f.status, { provider: cand.provider.name, model: cand.model });
        return errorResponse(f.status, {
          message: f.message, type: f.type ?? "invalid_request_error", param: f.param ?? null, code: f.code ?? null,
        }, { "x-router-provider": cand.provider.name, "x-router-attempts": String(rq.sent) });
      }
      return { ...f, cls };
    };

    rq.sent++;
    this.hooks.onAttemptStart?.(cand.provider.name);
    const opts = {
      model: cand.model,
      stream: rq.stream,
      includeUsage: rq.includeUsage,
      signal: ac.signal,
      maxEventBytes: this.config.routing.stream_max_event_bytes,
      maxBodyBytes: this.config.server.max_upstream_body_bytes,
    };
    const res = rq.kind === "chat" ? await cand.adapter.chat(rq.body as ChatRequest, opts) : await cand.adapter.text(rq.body as TextRequest, opts);

    if (!res.ok) {
      clearTimeout(timer);
      return fail(res);
    }

    const headers = { "x-router-provider": cand.provider.name, "x-router-attempts": String(rq.sent) };
    if (!res.stream) {
      clearTimeout(timer);
      ctx.signal?.removeEventListener("abort", onClientAbort);
      const usage = res.usage ?? estimateUsage(rq.kind, rq.body, res.body);
      const a = record("success", 200, { usage });
      this.#settle(cand, breaker, permit, "success", a.latency_ms);
      rq.finish(200, { provider: cand.provider.name, model: res.model, usage });
      ctx.tap?.body(res.body);
      return new Response(res.body, { status: 200, headers: { "content-type": "application/json", ...headers } });
    }

    // Stream: read ahead until the first content chunk; a failure before it still fails over.
    const pending: string[] = [];
    let usage: Usage | undefined;
    let failure: UpstreamFailure | undefined;
    let ended = false;
    try {
      for (let content = false; !content;) {
        const batch = await res.events.read();
        if (batch === null) {
          ended = true;
          break;
        }
        for (let i = 0; i < batch.length; i++) {
          const ev = batch[i];
          if (ev.usage) usage = ev.usage;
          if (ev.data !== null) pending.push(ev.data);
          if (ev.content) content = true;
        }
      }
    } catch (e) {
      failure = streamFailure(e, ac.signal);
    }
    clearTimeout(timer);
    if (failure) return fail(failure);
    // Committed: the breaker and health verdict waits for the end of the stream.
    const ttfb = this.now() - ta;
    const done: StreamDone = (end, u0, reason) => {
      const u = end === "ok" ? u0 ?? estimateUsage(rq.kind, rq.body) : u0;
      const status = end === "ok" ? 200 : end === "aborted" ? 499 : 502;
      record(end === "ok" ? "success" : "error", status, { ttfb_ms: ttfb, usage: u, reason });
      this.#settle(cand, breaker, permit, end === "ok" ? "success" : end === "aborted" ? "neutral" : "failure", ttfb, {
        ok: false, status: 502, kind: "protocol", message: reason ?? "stream failed",
      });
      rq.finish(end === "ok" ? 200 : status, { provider: cand.provider.name, model: res.model, usage: u });
    };
    const detach = () => ctx.signal?.removeEventListener("abort", onClientAbort);
    const { stream_idle_timeout_seconds: idleS, stream_max_duration_seconds: maxS } = this.config.routing;
    const pipe = new SsePipe(res.events, pending, ended, usage, ac, detach, done, idleS * 1000, maxS, this.#encodeChunk, ctx.tap);
    const body = new ReadableStream<Uint8Array>(pipe, { highWaterMark: 0 });
    return new Response(body, { status: 200, headers: { ...SSE_HEADERS, ...headers } });
  }
}

/** How a committed stream ended, with its usage, for the attempt record, the breaker and the observers. */
type StreamDone = (end: "ok" | "failed" | "aborted", usage: Usage | undefined, reason?: string) => void;

/**
 * The source of a committed stream's client-facing body: each pull is one read of the adapter's events (one
 * promise per upstream read, callbacks made once per stream), and the events of that read go out in one chunk.
 * Two limits end it with an error event: no event for the client within `idleMs` of asking for one, and
 * `maxSeconds` since the commit point.
 */
class SsePipe implements UnderlyingDefaultSource<Uint8Array> {
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  // One timer per stream, not one per chunk: it re-arms itself for the rest of the current wait.
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #maxTimer: ReturnType<typeof setTimeout> | undefined;
  // when the current wait for an event to forward began; 0 while not waiting. Reads that bring nothing for the
  // client (SSE comments, pings, part of an event) do not restart it: an upstream cannot hold a stream open
  // with keep-alives alone.
  #waitingSince = 0;
  #closed = false;
  // Dropped when the stream ends: a finished pipe that the GC has promoted would otherwise keep what they point
  // to alive through the next young-generation collections (docs/decisions/0014-finished-streams-let-go.md).
  #pending: string[] | null;
  #usage: Usage | undefined;
  #detach: (() => void) | null;
  #done: StreamDone | null;
  #tap: ResponseTap | null;

  constructor(
    readonly events: StreamEvents,
    pending: string[],
    readonly ended: boolean,
    usage: Usage | undefined,
    readonly ac: AbortController,
    detach: () => void,
    done: StreamDone,
    readonly idleMs: number,
    readonly maxSeconds: number,
    readonly encode: (text: string) => Uint8Array,
    tap: ResponseTap | undefined,
  ) {
    this.#pending = pending;
    this.#usage = usage;
    this.#detach = detach;
    this.#done = done;
    this.#tap = tap ?? null;
    if (tap) tap.attached = true;
  }

  /** one chunk to the client (and to the tap) */
  #send(bytes: Uint8Array): void {
    this.#controller.enqueue(bytes);
    this.#tap?.chunk(bytes);
  }

  start(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.#controller = controller;
    const pending = this.#pending!;
    this.#pending = null;
    if (pending.length) this.#send(this.encode(pending.map((d) => `data: ${d}\n\n`).join("")));
    if (this.ended) {
      this.#send(DONE);
      controller.close();
      this.#close("ok");
    } else this.#maxTimer = setTimeout(this.#onMaxDuration, this.maxSeconds * 1000);
  }

  pull(): Promise<void> {
    this.#waitingSince = performance.now();
    if (!this.#idleTimer) this.#idleTimer = setTimeout(this.#onIdleTimer, this.idleMs);
    return this.#read();
  }

  #read(): Promise<void> {
    return this.events.read().then(this.#forward, this.#broke);
  }

  cancel(): void {
    this.ac.abort(new DOMException("client disconnected", "AbortError"));
    this.events.cancel();
    this.#close("aborted", "client disconnected");
  }

  /**
   * One read's events to the client; a read that carries nothing to forward (comments, a dropped usage chunk)
   * reads on within the same idle wait.
   */
  readonly #forward = (batch: StreamEvent[] | null): Promise<void> | void => {
    if (this.#closed) return; // ended meanwhile (stream_max_duration_seconds, the client went away)
    const controller = this.#controller;
    if (batch === null) {
      this.#waitingSince = 0;
      this.#send(DONE);
      controller.close();
      this.#close("ok");
      return;
    }
    let text = "";
    for (let i = 0; i < batch.length; i++) {
      const ev = batch[i];
      if (ev.usage) this.#usage = ev.usage;
      if (ev.data !== null) text += `data: ${ev.data}\n\n`;
    }
    if (!text) return this.#read();
    this.#waitingSince = 0;
    this.#send(this.encode(text));
  };

  readonly #broke = (e: unknown): void => {
    if (this.#closed) return;
    this.#waitingSince = 0;
    const f = streamFailure(e, this.ac.signal);
    const msg = f.kind === "timeout" ? `upstream stream stalled for more than ${this.idleMs / 1000}s` : f.message;
    if (f.kind !== "aborted") {
      try {
        this.#send(encoder.encode(`data: ${errorJson({ message: msg, type: "upstream_error", code: f.kind === "timeout" ? "stream_timeout" : (e as UpstreamStreamError).code ?? "upstream_stream_error" })}\n\n`));
        this.#controller.close();
      } catch { /* client gone */ }
    }
    this.#close(f.kind === "aborted" ? "aborted" : "failed", msg);
  };

  readonly #onIdleTimer = (): void => {
    this.#idleTimer = undefined;
    if (this.#closed) return;
    const waited = this.#waitingSince ? performance.now() - this.#waitingSince : 0;
    if (this.#waitingSince && waited >= this.idleMs) this.ac.abort(timeoutReason());
    else this.#idleTimer = setTimeout(this.#onIdleTimer, this.idleMs - waited);
  };

  /** Ends the stream here, whether a read is pending or the client is slow to take what was sent. */
  readonly #onMaxDuration = (): void => {
    this.#maxTimer = undefined;
    if (this.#closed) return;
    const msg = `the stream ran longer than routing.stream_max_duration_seconds (${this.maxSeconds}s)`;
    try {
      this.#send(encoder.encode(`data: ${errorJson({ message: msg, type: "upstream_error", code: "stream_max_duration" })}\n\n`));
      this.#controller.close();
    } catch { /* client gone */ }
    this.ac.abort(new DOMException("stream_max_duration_seconds reached", "AbortError"));
    this.events.cancel();
    this.#close("failed", msg);
  };

  #close(end: "ok" | "failed" | "aborted", reason?: string): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    if (this.#maxTimer) clearTimeout(this.#maxTimer);
    this.#idleTimer = this.#maxTimer = undefined;
    const detach = this.#detach!, done = this.#done!, usage = this.#usage, tap = this.#tap;
    this.#detach = this.#done = null;
    this.#tap = null;
    this.#usage = undefined;
    detach();
    tap?.end(end === "ok");
    done(end, usage, reason);
  }
}

function streamFailure(e: unknown, signal: AbortSignal): UpstreamFailure {
  if (!signal.aborted && e instanceof UpstreamStreamError) return { ok: false, status: 502, kind: "protocol", message: e.message, code: e.code };
  return fetchFailure(e, signal, "upstream stream broke", 502);
}
