// What the routing loop reports: one record per upstream attempt and one per request, handed to the observers
// (RouterHooks: stats, metrics, the request log), and the per-request run that keeps them.
import type { ApiKind, ChatRequest, TextRequest, Usage } from "../providers/types.ts";
import type { BudgetEvent, Hold } from "./budgets.ts";
import type { RecoveryOutcome, StreamRecovery } from "./stream-recovery.ts";

/** `cancelled`: the client went away (or its stream ended) before the attempt did; not the provider's failure. */
export type AttemptOutcome = "success" | "error" | "timeout" | "skipped" | "client_error" | "hedge_lost" | "cancelled";

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
  /** a hedge was sent to this provider (routing.hedge) */
  onHedge?(provider: string): void;
  /** the hedge sent to this provider answered first */
  onHedgeWin?(provider: string): void;
  /** a stream event from this provider was not valid JSON and was skipped; `first`: the stream's first such event */
  onMalformedEvent?(provider: string, requestId: string, first: boolean): void;
  /** a recovery leg of a broken stream at this provider ended so (routing.stream_recovery) */
  onStreamRecovery?(provider: string, outcome: RecoveryOutcome): void;
  onRequest?(r: RequestRecord): void;
  /** a budget's soft limit was crossed, or it ran out (once per budget and period) */
  onBudget?(e: BudgetEvent): void;
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
  /** the client's own cost ceiling for this request (x-router-max-cost-usd): it can only lower the configured one */
  maxCostUsd?: number;
}

/** One request through the routing loop: what it asks for, its deadline, its attempts so far, and their reports. */
export class RequestRun {
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly deadline: number;
  readonly attempts: AttemptRecord[] = [];
  /** upstream attempts actually sent (retries included, skipped ones not) */
  sent = 0;
  /** an attempt was cut short by the request deadline (timers may fire a hair early, so do not rely on now()) */
  deadlineHit = false;
  /** the budget reservations of the attempts in flight, by provider, settled with their records (routing/budgets.ts) */
  readonly holds = new Map<string, Hold>();
  /** routing.stream_recovery, when it applies to this request: set by the Router */
  recovery?: StreamRecovery;

  constructor(
    readonly kind: ApiKind,
    readonly body: ChatRequest | TextRequest,
    readonly ctx: RequestContext,
    // its members are read at each report: an observer may be swapped on a live Router
    readonly hooks: RouterHooks,
    readonly now: () => number,
    readonly t0: number,
    timeoutSeconds: number,
  ) {
    this.stream = body.stream === true;
    this.includeUsage = this.stream && body.stream_options?.include_usage === true;
    this.deadline = t0 + timeoutSeconds * 1000;
  }

  /** Keeps one attempt's record and tells the observers. */
  record(a: AttemptRecord): AttemptRecord {
    const hold = a.outcome === "skipped" ? undefined : this.holds.get(a.provider);
    if (hold) {
      this.holds.delete(a.provider);
      hold.settle(a);
    }
    this.attempts.push(a);
    this.hooks.onAttempt?.(a);
    return a;
  }

  /** The request is over (a stream: its last chunk is sent): usage to the rate limiter, the record to the observers. */
  finish(status: number, extra: Partial<RequestRecord> = {}): void {
    const { ctx, body } = this;
    if (extra.usage) ctx.onUsage?.(extra.usage);
    this.hooks.onRequest?.({
      request_id: ctx.requestId, endpoint: this.kind, stream: this.stream, status, attempts: this.attempts, latency_ms: this.now() - this.t0,
      requested_model: body.model, key_name: ctx.keyName, path: ctx.path, ...extra,
    });
  }
}
