// The `redis` backend's way to Redis: every command raced against `command_timeout_ms`, and a breaker around
// Redis itself, so a dead, frozen or refusing Redis costs a request at most one timeout and afterwards nothing.
//
// The first failed command (an error, a refusal, no answer in time) marks Redis down: from then on every call
// answers FAILED at once, without sending anything, and the stores serve from the replica's local state. A
// probe (a write) every PROBE_MS finds out when Redis answers again; sharing then resumes without a restart. Each
// transition is logged once and shown by status() (/health, /stats, failover_router_state_backend_up).
import type { Logger } from "../../observability/logger.ts";

/** One connection to Redis, from the runtime (src/runtime/redis.ts): commands as argument lists. */
export interface RedisConnection {
  /** Sends one command; bulk-string replies come back as bytes, errors as a rejection. */
  send(args: (string | Uint8Array)[]): Promise<unknown>;
  close(): void;
}

export interface ConnectRedisOptions {
  connectTimeoutMs: number;
  /** the client's own errors (the core learns of failures from its calls; these only must not go unhandled) */
  onError?: (message: string) => void;
}

/** Opens a connection to `url` (redis:// or rediss://); it connects, and reconnects, in the background. */
export type ConnectRedis = (url: string, opts: ConnectRedisOptions) => RedisConnection;

/** How the state backend is doing: the `state` block of /health and /stats. */
export interface StateStatus {
  backend: "memory" | "redis";
  /** false while Redis is down: the replica serves from its local state */
  connected: boolean;
  /** ISO time of the last transition (or of the start) */
  since: string;
  /** the last Redis failure, credentials removed; null when there was none */
  last_error: string | null;
}

/** What a call answers when Redis failed, timed out or is down: the caller falls back to local state. */
export const FAILED = Symbol("redis unavailable");
export type Reply<T = unknown> = T | typeof FAILED;

/** While Redis is down, a probe this often finds out when it answers again. */
const PROBE_MS = 500;
/** In the first seconds after start-up, while the client is still connecting, it asks more often. */
const FIRST_PROBE_MS = 25;
const STARTING_MS = 2000;
/** An error message kept for /health and the log is cut to this many characters. */
const MAX_ERROR_CHARS = 200;

/** A Lua script, run by EVALSHA (EVAL when Redis does not know it yet, e.g. after a restart). */
export class Script {
  sha: string | undefined;
  constructor(readonly source: string) {
    void crypto.subtle.digest("SHA-1", new TextEncoder().encode(source)).then((d) => {
      this.sha = [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
    });
  }
}

export interface LinkOptions {
  /** command_timeout_ms */
  timeoutMs: number;
  logger?: Logger;
  /** strings that never reach a log or /health (the URL's password and user) */
  secrets: string[];
  /** the key the probe writes: Redis counts as back only once it takes writes (not while out of memory, read-only) */
  probeKey: string;
}

export class RedisLink {
  #up = false;
  #since = new Date().toISOString();
  #lastError: string | null = null;
  #probe: ReturnType<typeof setTimeout> | undefined;
  #probing = false;
  #closed = false;
  #wasUp = false;
  readonly #started = Date.now();
  readonly #onUp = new Set<() => void>();

  constructor(readonly conn: RedisConnection, readonly opts: LinkOptions) {
    this.#scheduleProbe(0);
  }

  get up(): boolean {
    return this.#up;
  }

  /** Calls `fn` each time Redis answers again (the stores finish there what they could not while it was down). */
  onUp(fn: () => void): void {
    this.#onUp.add(fn);
  }

  status(): StateStatus {
    return { backend: "redis", connected: this.#up, since: this.#since, last_error: this.#lastError };
  }

  /** Resolves once Redis took the probe, or after `ms` (start-up waits for this to log whether Redis answered). */
  async ready(ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    while (!this.#up && !this.#closed && Date.now() < end) await new Promise((r) => setTimeout(r, 25));
    return this.#up;
  }

  /** One command, within the timeout; FAILED (never a rejection) when Redis failed or is down. */
  call<T = unknown>(args: (string | Uint8Array)[]): Promise<Reply<T>> {
    if (!this.#up) return Promise.resolve(FAILED);
    return this.#bounded(this.conn.send(args)) as Promise<Reply<T>>;
  }

  /** Runs a script on `keys` with `args`, within the timeout; FAILED when Redis failed or is down. */
  eval<T = unknown>(script: Script, keys: string[], args: (string | Uint8Array)[]): Promise<Reply<T>> {
    if (!this.#up) return Promise.resolve(FAILED);
    const tail = [String(keys.length), ...keys, ...args];
    const full = () => this.conn.send(["EVAL", script.source, ...tail]);
    const sent = script.sha
      ? this.conn.send(["EVALSHA", script.sha, ...tail]).catch((e) => (String((e as Error)?.message).startsWith("NOSCRIPT") ? full() : Promise.reject(e)))
      : full();
    return this.#bounded(sent) as Promise<Reply<T>>;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#probe);
    this.conn.close();
  }

  #bounded(p: Promise<unknown>): Promise<unknown> {
    const ms = this.opts.timeoutMs;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#down(`no answer within ${ms} ms`);
        resolve(FAILED);
      }, ms);
      p.then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (e) => {
          clearTimeout(timer);
          this.#down((e as Error)?.message ?? String(e));
          resolve(FAILED);
        },
      );
    });
  }

  #down(error: string): void {
    this.#lastError = this.#clean(error);
    if (!this.#up) return;
    this.#up = false;
    this.#since = new Date().toISOString();
    this.opts.logger?.log("warn", "state backend: redis unavailable, serving from local state", { error: this.#lastError });
    this.#scheduleProbe(PROBE_MS);
  }

  #scheduleProbe(ms: number): void {
    if (this.#closed) return;
    clearTimeout(this.#probe);
    this.#probe = setTimeout(() => void this.#ping(), ms);
  }

  async #ping(): Promise<void> {
    if (this.#closed || this.#up || this.#probing) return;
    this.#probing = true;
    const ms = this.opts.timeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        // a write, not a PING: a Redis out of memory (noeviction) or read-only answers PING but fails every
        // write, and would flap up and down, logging each turn, as long as it lasts
        this.conn.send(["SET", this.opts.probeKey, "1", "PX", String(PROBE_MS)]),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms))),
      ]);
      if (this.#closed) return;
      if (!this.#wasUp) this.#lastError = null; // failures while the client was first connecting are no news
      this.#wasUp = this.#up = true;
      this.#since = new Date().toISOString();
      this.opts.logger?.log("info", "state backend: redis connected, state shared with the other replicas");
      for (const fn of this.#onUp) fn();
    } catch (e) {
      this.#lastError = this.#clean((e as Error)?.message ?? String(e));
      this.#scheduleProbe(Date.now() - this.#started < STARTING_MS ? FIRST_PROBE_MS : PROBE_MS);
    } finally {
      clearTimeout(timer);
      this.#probing = false;
    }
  }

  /** An error message on one line, without credentials, cut short. */
  #clean(message: string): string {
    let s = message.replace(/\s+/g, " ").trim();
    for (const secret of this.opts.secrets) if (secret) s = s.split(secret).join("***");
    return s.length > MAX_ERROR_CHARS ? s.slice(0, MAX_ERROR_CHARS - 1) + "…" : s;
  }
}
