// Hedged requests (routing.hedge): when an attempt has not reached its first content token after `after_ms`,
// the next candidate starts in parallel; the first of the two to reach its commit point answers, and the other
// is aborted at once (its upstream connection closes). At most one hedge per request, within a budget of extra
// requests over a rolling minute.
import type { Config } from "../config/schema.ts";
import { attempt, type AttemptEnv, type RaceSlot } from "./attempt.ts";
import type { CircuitBreaker, Permit } from "./breaker.ts";
import type { ClassifiedFailure } from "./failures.ts";
import type { Outcome } from "./outcome.ts";
import type { Candidate } from "./plan.ts";
import type { RequestRun } from "./records.ts";

type HedgeConfig = Config["routing"]["hedge"];

/** A candidate with its breaker permit, ready to be attempted. */
export interface Started {
  cand: Candidate;
  breaker: CircuitBreaker;
  permit: Permit;
}

/** Times to first token kept per provider for `after_ms: auto`. */
const SAMPLES = 100;
/** Below this many samples, `auto` waits AUTO_FALLBACK_MS. */
const MIN_SAMPLES = 20;
const AUTO_FALLBACK_MS = 2000;
const AUTO_MIN_MS = 500;
/** The hedge budget's window: BUCKETS buckets of BUCKET_MS. */
const BUCKETS = 6;
const BUCKET_MS = 10_000;

/** The last SAMPLES times to first token of one provider, in a ring. */
class Samples {
  readonly ms = new Float64Array(SAMPLES);
  size = 0;
  next = 0;

  push(v: number): void {
    this.ms[this.next] = v;
    this.next = (this.next + 1) % SAMPLES;
    if (this.size < SAMPLES) this.size++;
  }

  p95(): number {
    const sorted = this.ms.slice(0, this.size).sort();
    return sorted[Math.min(this.size - 1, Math.ceil(0.95 * this.size) - 1)];
  }
}

/** The state of hedging for one config: the providers' times to first token and the budget of extra requests. */
export class Hedger {
  readonly #samples = new Map<string, Samples>();
  // requests and hedges per bucket of the rolling window; `#bucketAt[i]` is the start of bucket i's period
  readonly #requests = new Uint32Array(BUCKETS);
  readonly #hedges = new Uint32Array(BUCKETS);
  readonly #bucketAt = new Float64Array(BUCKETS);

  constructor(readonly config: HedgeConfig, readonly now: () => number) {}

  /** Whether this request may be hedged at all (`with_tools`: a request with tools may act twice). */
  applies(run: RequestRun): boolean {
    const tools = (run.body as { tools?: unknown[] }).tools;
    return this.config.with_tools || !Array.isArray(tools) || tools.length === 0;
  }

  /** A request came in: the budget is a share of them. */
  request(): void {
    this.#requests[this.#bucket()]++;
  }

  /** How long an attempt at `provider` may go without its first token before a hedge starts. */
  afterMs(provider: string): number {
    const after = this.config.after_ms;
    if (after !== "auto") return after;
    const s = this.#samples.get(provider);
    if (!s || s.size < MIN_SAMPLES) return AUTO_FALLBACK_MS;
    return Math.max(AUTO_MIN_MS, s.p95());
  }

  /** An attempt at `provider` reached its first token after `ms`. */
  sample(provider: string, ms: number): void {
    let s = this.#samples.get(provider);
    if (!s) this.#samples.set(provider, (s = new Samples()));
    s.push(ms);
  }

  /** Whether the budget has room for one more hedge: the window's hedges stay within max_extra_percent of its requests. */
  allowed(): boolean {
    const period = this.#bucketAt[this.#bucket()];
    let requests = 0, hedges = 0;
    for (let j = 0; j < BUCKETS; j++) {
      if (this.#bucketAt[j] <= period - BUCKETS) continue; // a bucket not touched within the window
      requests += this.#requests[j];
      hedges += this.#hedges[j];
    }
    return hedges + 1 <= (requests * this.config.max_extra_percent) / 100;
  }

  /** A hedge was sent: it counts against the budget. */
  spent(): void {
    this.#hedges[this.#bucket()]++;
  }

  /** The current bucket, emptied when its period is new. */
  #bucket(): number {
    const period = Math.floor(this.now() / BUCKET_MS);
    const i = period % BUCKETS;
    if (this.#bucketAt[i] !== period) {
      this.#bucketAt[i] = period;
      this.#requests[i] = this.#hedges[i] = 0;
    }
    return i;
  }
}

/** The two places of a race: the first to claim aborts the other's signal. */
class Slot implements RaceSlot {
  readonly #ac = new AbortController();
  other: Slot | null = null;
  rival?: Promise<unknown>;

  constructor(readonly hedge: boolean) {}

  get signal(): AbortSignal {
    return this.#ac.signal;
  }

  claim(): boolean {
    if (this.#ac.signal.aborted) return false;
    if (this.other) this.other.#ac.abort(new DOMException("the other attempt of the hedge answered first", "AbortError"));
    return true;
  }
}

const failed = (r: Outcome | ClassifiedFailure): r is ClassifiedFailure => "cls" in r;

/**
 * An attempt at `first`, hedged by one at the candidate `next()` gives (with its permit) if `first` has not
 * reached its first token within the hedger's `after_ms`. The answer is the first outcome of the two; when both
 * fail, the first attempt's failure (the loop may retry that provider).
 */
export async function hedgedAttempt(env: AttemptEnv, hedger: Hedger, run: RequestRun, first: Started, next: () => Promise<Started | undefined>): Promise<Outcome | ClassifiedFailure> {
  const a = new Slot(false), b = new Slot(true);
  a.other = b;
  b.other = a;
  const t0 = env.now();
  const pa = attempt(env, run, first.cand, first.breaker, first.permit, a);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const fired = new Promise<null>((resolve) => (timer = setTimeout(resolve, hedger.afterMs(first.cand.provider.name), null)));
  const early = await Promise.race([pa, fired]);
  clearTimeout(timer);
  const won = (r: Outcome | ClassifiedFailure, s: Started, t: number) => {
    if (!failed(r) && r.type !== "error") hedger.sample(s.cand.provider.name, env.now() - t);
    return r;
  };
  if (early !== null) return won(early, first, t0);
  const second = hedger.allowed() ? await next() : undefined;
  if (!second) return won(await pa, first, t0);
  hedger.spent();

  run.hooks.onHedge?.(second.cand.provider.name);
  const t1 = env.now();
  const pb = attempt(env, run, second.cand, second.breaker, second.permit, b);
  a.rival = pb;
  b.rival = pa;
  const one = await Promise.race([pa.then((r) => ({ r, primary: true })), pb.then((r) => ({ r, primary: false }))]);
  let { r, primary } = one;
  if (failed(r)) {
    // the first to end failed (or lost the race to the other's claim): the other decides
    const other = await (primary ? pb : pa);
    if (!failed(other) || r.cls === "hedge_lost") {
      r = other;
      primary = !primary;
    }
  }
  if (failed(r)) return primary ? r : await pa;
  if (!primary) run.hooks.onHedgeWin?.(second.cand.provider.name);
  return won(r, primary ? first : second, primary ? t0 : t1);
}
