// One upstream attempt: the call under its timeout, its record, the breaker and health verdict, and what the
// loop gets back: a final outcome (a success, a client error, the client gone) or a failure to go on from. A
// stream is read ahead until its first content event (the commit point): a failure before it still fails over.
// A recovery leg of a broken stream (src/routing/stream-recovery.ts) is an attempt too, that answers with the
// leg rather than to the client.
import type { Config } from "../config/schema.ts";
import { CLIENT_CLOSED } from "../errors.ts";
import type { CallOptions, ChatRequest, StreamEvent, TextRequest, UpstreamFailure, Usage } from "../providers/types.ts";
import { UpstreamStreamError } from "../providers/types.ts";
import { estimateUsage } from "../providers/tokens.ts";
import { shortError, type CircuitBreaker, type Permit } from "./breaker.ts";
import { classifyFailure, failureSummary, streamFailure, timeoutReason, type ClassifiedFailure } from "./failures.ts";
import type { HealthTracker } from "./health.ts";
import { errorOutcome, type Outcome } from "./outcome.ts";
import type { Candidate } from "./plan.ts";
import type { AttemptOutcome, AttemptRecord, RequestRun } from "./records.ts";
import { EventPipe, type StreamEnd, type StreamLeg } from "./stream-pipe.ts";

/** What an attempt needs from the Router. */
export interface AttemptEnv {
  readonly config: Config;
  readonly health: HealthTracker;
  readonly now: () => number;
}

/**
 * An attempt's place in a hedge (src/routing/hedge.ts): `signal` fires when the other attempt has claimed the
 * request; `claim()` takes it for this one (false when the other was first).
 */
export interface RaceSlot {
  readonly signal: AbortSignal;
  claim(): boolean;
  /**
   * The hedge's own place: its provider's client error (a 400) does not answer the request while the first attempt
   * goes on, since without the hedge that one would have answered.
   */
  readonly hedge: boolean;
  /**
   * The other attempt, once started. An attempt that claims the request and answers it at once (JSON, a client
   * error) waits for it first: the claim aborted it, so it settles at once, and its record belongs in the request's.
   */
  readonly rival?: Promise<unknown>;
}

/** A recovery leg of a stream that broke (src/routing/stream-recovery.ts): what it sends, and what stops it. */
export interface LegSpec {
  body: ChatRequest;
  /** the body ends with the text sent so far, to continue (CallOptions.prefill) */
  prefill: boolean;
  /** aborts the leg: the client's stream ended meanwhile */
  signal: AbortSignal;
}

/** A recovery leg that reached its first content event: the leg, with what it read ahead. */
export interface StartedLeg {
  leg: StreamLeg;
  pending: StreamEvent[];
  ended: boolean;
  usage: Usage | undefined;
}

const statusOf = (end: StreamEnd) => (end === "ok" ? 200 : end === "aborted" ? 499 : 502);

/** Breaker and health accounting of one attempt. */
function settle(env: AttemptEnv, cand: Candidate, breaker: CircuitBreaker, permit: Permit, verdict: "success" | "failure" | "neutral", latencyMs: number, f?: UpstreamFailure): void {
  if (verdict === "success") {
    breaker.success(permit);
    env.health.success(cand.provider.name, latencyMs);
  } else if (verdict === "failure") {
    breaker.failure(permit, shortError(f ? failureSummary(f) : "failed"), f?.retryAfter);
    env.health.failure(cand.provider.name);
  } else {
    breaker.release(permit);
  }
}

export function attempt(env: AttemptEnv, run: RequestRun, cand: Candidate, breaker: CircuitBreaker, permit: Permit, slot?: RaceSlot): Promise<Outcome | ClassifiedFailure>;
export function attempt(env: AttemptEnv, run: RequestRun, cand: Candidate, breaker: CircuitBreaker, permit: Permit, slot: undefined, leg: LegSpec): Promise<StartedLeg | ClassifiedFailure>;
export async function attempt(env: AttemptEnv, run: RequestRun, cand: Candidate, breaker: CircuitBreaker, permit: Permit, slot?: RaceSlot, leg?: LegSpec): Promise<Outcome | StartedLeg | ClassifiedFailure> {
  const { ctx } = run;
  const { config, now } = env;
  const ac = new AbortController();
  const onClientAbort = () => ac.abort(ctx.signal?.reason);
  ctx.signal?.addEventListener("abort", onClientAbort, { once: true });
  if (ctx.signal?.aborted) ac.abort(ctx.signal.reason);
  const stop = slot?.signal ?? leg?.signal;
  const onStop = () => ac.abort(stop!.reason);
  stop?.addEventListener("abort", onStop, { once: true });
  if (leg?.signal.aborted) ac.abort(leg.signal.reason);
  const detach = () => {
    ctx.signal?.removeEventListener("abort", onClientAbort);
    stop?.removeEventListener("abort", onStop);
  };
  const ta = now();
  // a recovery leg comes after the request's deadline may have passed: the stream's own limits bound it
  const deadline = leg ? Infinity : run.deadline;
  let timer: ReturnType<typeof setTimeout> | undefined;
  /** Bounds the attempt to `ms` from its start, or to the request deadline when that comes first. */
  const bound = (ms: number) => {
    clearTimeout(timer);
    const left = ms - (now() - ta), remaining = deadline - now();
    timer = setTimeout(() => {
      if (remaining < left) run.deadlineHit = true;
      ac.abort(timeoutReason());
    }, Math.max(0, Math.min(left, remaining)));
  };
  bound(cand.provider.timeout_seconds * 1000);
  const record = (outcome: AttemptOutcome, status: number, extra: Partial<AttemptRecord> = {}) =>
    run.record({ provider: cand.provider.name, model: cand.model, outcome, status, latency_ms: now() - ta, ...extra });
  // characters of generated text this attempt's stream has read (StreamEvent.chars)
  let chars = 0;
  /**
   * The usage of an attempt the provider received but that ended before it reported any: what the provider bills,
   * its input and the output it sent so far (estimated). The record carries it, so budgets, /stats and the request
   * log agree.
   */
  const billedSoFar = () => estimateUsage(run.kind, run.body, chars);
  /** The other attempt of the hedge answered: this one ends without a verdict on its provider. */
  const lose = (): ClassifiedFailure => {
    detach();
    settle(env, cand, breaker, permit, "neutral", 0);
    record("hedge_lost", 0, { reason: "the other attempt of the hedge answered first", usage: billedSoFar() });
    return { ok: false, status: 0, kind: "aborted", message: "hedge lost", cls: "hedge_lost" };
  };
  /** `opened`: a stream the provider answered (200) broke before its first content event. */
  const fail = async (f: UpstreamFailure, opened = false): Promise<Outcome | ClassifiedFailure> => {
    const cls = classifyFailure(f);
    // an answer to the client (its error, its going away) is the race's too: only one attempt gives it
    const answers = cls === "aborted" || (cls === "client" && !slot?.hedge);
    if (slot && (slot.signal.aborted || (answers && !slot.claim()))) return lose();
    if (answers && slot) await slot.rival;
    detach();
    // an attempt cut short by the request deadline (before its own timeout_seconds) is not the provider's fault
    const counts = cls === "retryable" && !(f.kind === "timeout" && run.deadlineHit);
    settle(env, cand, breaker, permit, counts ? "failure" : "neutral", 0, f);
    const extra: Partial<AttemptRecord> = { reason: cls === "client" ? f.message : shortError(f.message) };
    // the provider bills a request it received and did not answer with an error: the client went away, it timed
    // out, or the stream it opened broke
    if (cls === "aborted" || f.kind === "timeout" || opened) extra.usage = billedSoFar();
    record(cls === "client" || cls === "unsupported" ? "client_error" : cls === "aborted" ? "cancelled" : f.kind === "timeout" ? "timeout" : "error", f.status, extra);
    if (leg) return { ...f, cls }; // the recovery goes on from it; the client's stream is not answered here
    if (cls === "aborted") {
      run.finish(499);
      return errorOutcome(499, CLIENT_CLOSED);
    }
    if (cls === "client" && answers) {
      run.finish(f.status, { provider: cand.provider.name, model: cand.model });
      return errorOutcome(f.status, {
        message: f.message, type: f.type ?? "invalid_request_error", param: f.param ?? null, code: f.code ?? null,
      }, { "x-router-provider": cand.provider.name, "x-router-attempts": String(run.sent) });
    }
    return { ...f, cls };
  };

  run.sent++;
  run.hooks.onAttemptStart?.(cand.provider.name);
  let malformed = 0;
  const maxMalformed = config.routing.max_malformed_events;
  const opts: CallOptions = {
    model: cand.model,
    stream: run.stream,
    includeUsage: run.includeUsage,
    signal: ac.signal,
    maxEventBytes: config.routing.stream_max_event_bytes,
    maxBodyBytes: config.server.max_upstream_body_bytes,
    // one bad event in a good stream is skipped, not worth the tokens after it; a stream of them is broken
    malformedEvent: () => {
      run.hooks.onMalformedEvent?.(cand.provider.name, ctx.requestId, ++malformed === 1);
      if (malformed > maxMalformed) throw new UpstreamStreamError(`upstream sent more than ${maxMalformed} stream events that are not JSON (routing.max_malformed_events)`);
    },
    prefill: leg?.prefill,
  };
  const res = leg ? await cand.adapter.chat(leg.body, opts) : run.kind === "chat" ? await cand.adapter.chat(run.body as ChatRequest, opts) : await cand.adapter.text(run.body as TextRequest, opts);

  if (!res.ok) {
    clearTimeout(timer);
    return fail(res);
  }

  if (!res.stream) {
    clearTimeout(timer);
    if (slot && !slot.claim()) return lose();
    if (slot) await slot.rival; // only a hedge has a rival: no extra await on every request
    detach();
    const usage = res.usage ?? estimateUsage(run.kind, run.body, res.body);
    const a = record("success", 200, { usage });
    settle(env, cand, breaker, permit, "success", a.latency_ms);
    run.finish(200, { provider: cand.provider.name, model: res.model, usage });
    return { type: "json", body: res.body, provider: cand.provider.name, attempts: run.sent };
  }

  // Stream: read ahead until the first content event, within first_token_timeout_seconds. With
  // routing.stream_recovery, the events are watched for what the client is sent, to continue from it.
  if (cand.provider.first_token_timeout_seconds !== undefined) bound(cand.provider.first_token_timeout_seconds * 1000);
  const watched = leg ? undefined : run.recovery?.watch(cand, res.events);
  const events = watched?.events ?? res.events;
  const pending: StreamEvent[] = [];
  let usage: Usage | undefined;
  let failure: UpstreamFailure | undefined;
  let ended = false;
  try {
    for (let content = false; !content;) {
      const batch = await events.read();
      if (batch === null) {
        ended = true;
        break;
      }
      for (let i = 0; i < batch.length; i++) {
        const ev = batch[i];
        if (ev.usage) usage = ev.usage;
        if (ev.chars) chars += ev.chars;
        if (ev.data !== null) pending.push(ev);
        if (ev.content) content = true;
      }
    }
  } catch (e) {
    failure = streamFailure(e, ac.signal);
  }
  clearTimeout(timer);
  if (failure) return fail(failure, true);
  if (slot && !slot.claim()) {
    events.cancel();
    return lose();
  }
  // Committed: the breaker and health verdict waits for the end of the stream (or of this leg of it).
  const ttfb = now() - ta;
  let recorded: Usage | undefined;
  const committed: StreamLeg = {
    events,
    ac,
    detach,
    end: (end, u0, streamChars, reason) => {
      chars += streamChars;
      // without reported usage: the input and the output read, which for a stream cut short (the client left, it
      // broke or stalled) is what the provider bills so far
      const u = (recorded = u0 ?? billedSoFar());
      record(end === "ok" ? "success" : end === "aborted" ? "cancelled" : "error", statusOf(end), { ttfb_ms: ttfb, usage: u, reason });
      // a restart that answers otherwise than the leg before it is no fault of its provider
      const verdict = end === "ok" ? "success" : end === "aborted" || end === "diverged" ? "neutral" : "failure";
      settle(env, cand, breaker, permit, verdict, ttfb, { ok: false, status: 502, kind: "protocol", message: reason ?? "stream failed" });
    },
    finish: (end) => run.finish(statusOf(end), { provider: cand.provider.name, model: res.model, usage: recorded }),
  };
  if (leg) return { leg: committed, pending, ended, usage };
  const { stream_idle_timeout_seconds: idleS, stream_max_duration_seconds: maxS } = config.routing;
  const pipe = new EventPipe(committed, pending, ended, usage, idleS * 1000, maxS, watched?.recover);
  return { type: "stream", events: pipe, provider: cand.provider.name, attempts: run.sent };
}
