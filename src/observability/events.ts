// The dashboard's live feed (GET /admin/events, server-sent events). Deltas go out as they happen: breaker
// transitions, failovers, config reloads and reload errors. A `snapshot` of the whole dashboard goes out every
// tick: it is built and encoded once for all subscribers, and the ticker runs only while someone subscribes,
// so an idle router does no per-second work and a hundred dashboards cost one snapshot a second.
//
// Breaker transitions are found by comparing each provider's state with the last one seen: after every
// attempt (on a microtask, once the router has settled the breaker), on every tick (an open breaker turns
// half-open by the clock alone), and when an admin action asks (reset, reload). The same goes for the config
// in force and the last reload error, so a reload by SIGHUP or by the file watcher shows up too.
//
// Every subscriber's queue is bounded: the stream hands over what is queued only when the server pulls
// (when the socket has room), and a subscriber that does not read (a stuck tab, a dead connection) is dropped
// once maxQueuedBytes wait for it: its queue is let go and its stream ends.
import { concatBytes, encoder } from "../bytes.ts";
import type { BreakerState } from "../routing/breaker.ts";
import { dashboardState, type DashboardState, type SnapshotSources } from "./snapshot.ts";

/** Event names of the stream (the `event:` field). */
export type DashboardEvent = "snapshot" | "breaker" | "failover" | "config" | "reload_error" | "shutdown" | "budget_soft_limit" | "budget_exhausted";

export const TICK_MS = 1000;
/** bytes queued for one subscriber before it is dropped (a few dozen snapshots of a large config) */
export const MAX_QUEUED_BYTES = 512 * 1024;
/** open event streams at most; more get 503 */
export const MAX_SUBSCRIBERS = 1000;

export interface EventHubOptions extends SnapshotSources {
  tickMs?: number;
  maxQueuedBytes?: number;
  maxSubscribers?: number;
}

interface Subscriber {
  controller: ReadableStreamDefaultController<Uint8Array>;
  /** frames not yet pulled, and their size */
  queue: Uint8Array[];
  queued: number;
  /** resolves the server's pending pull */
  wake: (() => void) | null;
}

function frame(event: DashboardEvent, data: unknown): Uint8Array {
  return encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

export class EventHub {
  readonly #opts: EventHubOptions;
  readonly #subs = new Set<Subscriber>();
  #timer: ReturnType<typeof setInterval> | undefined;
  /** last breaker state seen per provider (kept only while someone subscribes) */
  readonly #states = new Map<string, BreakerState>();
  #loadedAt: string | null = null;
  /** the auth config the open streams were let in under */
  #auth = "";
  #reloadError: string | null = null;
  #checkQueued = false;
  #closed = false;

  constructor(opts: EventHubOptions) {
    this.#opts = opts;
    const live = opts.observability.live;
    live.onFailover = (f) => this.#publish("failover", f);
    live.onBudget = (e) => this.#publish(e.event === "soft_limit" ? "budget_soft_limit" : "budget_exhausted", e);
    live.onAttempt = () => {
      if (this.#subs.size === 0 || this.#checkQueued) return;
      this.#checkQueued = true;
      queueMicrotask(() => {
        this.#checkQueued = false;
        this.check();
      });
    };
  }

  /** The dashboard as it is now (GET /admin/state). */
  state(): DashboardState {
    return dashboardState(this.#opts);
  }

  get subscribers(): number {
    return this.#subs.size;
  }

  /** A new event stream, starting with a snapshot; null once closed or when maxSubscribers are open. */
  subscribe(): ReadableStream<Uint8Array> | null {
    if (this.#closed || this.#subs.size >= (this.#opts.maxSubscribers ?? MAX_SUBSCRIBERS)) return null;
    let sub!: Subscriber;
    const first = this.state();
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        sub = { controller, queue: [], queued: 0, wake: null };
        if (this.#subs.size === 0) this.#prime(first);
        this.#subs.add(sub);
        this.#send(sub, frame("snapshot", first));
      },
      pull: () => {
        if (sub.queued) return void this.#deliver(sub);
        if (this.#subs.has(sub)) return new Promise<void>((resolve) => (sub.wake = resolve));
      },
      cancel: () => this.#drop(sub),
    }, { highWaterMark: 0 });
  }

  /** Publishes what changed since the last look: breaker transitions, a reload, a reload error. */
  check(): void {
    if (this.#subs.size === 0) return;
    const router = this.#opts.router();
    const seen = new Set<string>();
    for (const p of router.config.providers) {
      seen.add(p.name);
      const to = router.providerState(p.name);
      if (to === undefined) continue;
      const from = this.#states.get(p.name);
      this.#states.set(p.name, to);
      if (from === undefined || from === to) continue;
      const b = router.breakers.get(p.name)!;
      this.#publish("breaker", { provider: p.name, from, to, ...b.snapshot(), retry_in_ms: to === "open" ? b.retryInMs() : null });
    }
    for (const name of [...this.#states.keys()]) if (!seen.has(name)) this.#states.delete(name);
    const health = this.#opts.configHealth?.();
    if (!health) return;
    if (health.loaded_at !== this.#loadedAt) {
      this.#loadedAt = health.loaded_at;
      const c = router.config;
      this.#publish("config", { loaded_at: health.loaded_at, strategy: c.routing.strategy, chain: c.routing.fallback_chain, providers: c.providers.map((p) => p.name) });
      // a stream was let in once, by the keys of its time: when they change (a rotated admin key, auth turned
      // on), every stream ends, and its dashboard reconnects under the new ones or is refused
      const auth = JSON.stringify(c.auth);
      if (auth !== this.#auth) {
        for (const sub of [...this.#subs]) this.#end(sub);
        return;
      }
    }
    if (health.last_reload_error !== this.#reloadError) {
      this.#reloadError = health.last_reload_error;
      if (health.last_reload_error !== null) this.#publish("reload_error", { at: new Date().toISOString(), message: health.last_reload_error });
    }
  }

  /** Ends every stream (with a `shutdown` event) and refuses new ones: at shutdown, nothing waits on them. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const bye = frame("shutdown", { at: new Date().toISOString() });
    for (const sub of [...this.#subs]) {
      sub.queue.push(bye);
      sub.queued += bye.byteLength;
      this.#deliver(sub);
      this.#end(sub);
    }
  }

  /** The baseline the deltas are computed against, and the ticker: for the first subscriber. */
  #prime(first: DashboardState): void {
    this.#states.clear();
    for (const p of first.providers) this.#states.set(p.name, p.breaker.state);
    this.#loadedAt = first.config.loaded_at;
    this.#auth = JSON.stringify(this.#opts.router().config.auth);
    this.#reloadError = first.config.last_reload_error;
    this.#timer = setInterval(() => this.#tick(), this.#opts.tickMs ?? TICK_MS);
  }

  #tick(): void {
    this.check();
    if (this.#subs.size) this.#broadcast(frame("snapshot", this.state()));
  }

  #publish(event: DashboardEvent, data: unknown): void {
    if (this.#subs.size) this.#broadcast(frame(event, data));
  }

  #broadcast(bytes: Uint8Array): void {
    for (const sub of [...this.#subs]) this.#send(sub, bytes);
  }

  #send(sub: Subscriber, bytes: Uint8Array): void {
    if (sub.queued + bytes.byteLength > (this.#opts.maxQueuedBytes ?? MAX_QUEUED_BYTES)) {
      // the reader is that far behind (or gone): drop it, and its queue with it
      sub.queue = [];
      sub.queued = 0;
      this.#end(sub);
      return;
    }
    sub.queue.push(bytes);
    sub.queued += bytes.byteLength;
    if (sub.wake) this.#deliver(sub);
  }

  /** What is queued, as one chunk, to the server's pull. */
  #deliver(sub: Subscriber): void {
    if (sub.queued) sub.controller.enqueue(sub.queue.length === 1 ? sub.queue[0] : concatBytes(sub.queue));
    sub.queue = [];
    sub.queued = 0;
    this.#wake(sub);
  }

  #wake(sub: Subscriber): void {
    const wake = sub.wake;
    sub.wake = null;
    wake?.();
  }

  /** Ends the stream once what was handed over is sent. */
  #end(sub: Subscriber): void {
    try {
      sub.controller.close();
    } catch { /* cancelled meanwhile */ }
    this.#wake(sub);
    this.#drop(sub);
  }

  #drop(sub: Subscriber): void {
    if (!this.#subs.delete(sub) || this.#subs.size) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#states.clear();
  }
}
