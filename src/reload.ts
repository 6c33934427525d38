// Hot reload: holds the config (and the Router built from it) in force, and swaps in a freshly loaded and
// validated config on SIGHUP, POST /admin/reload, or a change of the file (server.watch_config).
//
// The swap is one assignment: the app reads `holder.router` once when a request starts, and every step of the
// request (auth, rate limit, body limits, idempotency, routing) reads that Router's config, so a request in
// flight keeps the one config snapshot it started with, and the next request gets the new one. An invalid
// file changes nothing: the old config keeps serving and the problems show on /health.
//
// State that must survive a reload (breakers, stats, rate-limit buckets) is NOT created here or in the
// Router: it is created once at start-up (src/server.ts) and handed to every Router by the `build`
// function, which is how it carries over for providers and keys whose names are unchanged.
import { ConfigError } from "./config/load.ts";
import type { Config } from "./config/schema.ts";
import type { Logger } from "./observability/logger.ts";
import type { FileStat } from "./platform.ts";
import type { Router } from "./routing/failover.ts";

export type ReloadTrigger = "SIGHUP" | "admin" | "watch";

export type ReloadResult =
  | { ok: true; loaded_at: string; strategy: string; chain: string[]; providers: string[] }
  | { ok: false; status: 400 | 500; message: string; problems: string[] };

/** The `config` block of /health. */
export interface ConfigHealth {
  /** when the config in force was loaded (start-up or the last successful reload) */
  loaded_at: string;
  /** the problems of the last reload if it failed (the old config is still in force), else null */
  last_reload_error: string | null;
}

export interface ConfigHolderOptions {
  path: string;
  /** the config loaded at start-up (already validated) */
  config: Config;
  /** reads and validates the file; throws ConfigError listing every problem */
  load(path: string): Promise<Config>;
  /** builds the Router for a config */
  build(config: Config): Router;
  /** file status, for server.watch_config (polling) */
  stat?(path: string): Promise<FileStat | null>;
  logger?: Logger;
  /** how often server.watch_config looks at the file (default 1000 ms) */
  watchIntervalMs?: number;
  now?(): Date;
}

type Listener = (config: Config, previous: Config) => void;

const fileKey = (s: FileStat | null) => (s ? `${s.mtimeMs}:${s.size}` : null);

export class ConfigHolder {
  #router: Router;
  #loadedAt: Date;
  #lastError: string | null = null;
  #queue: Promise<unknown> = Promise.resolve();
  #listeners: Listener[] = [];
  #opts: ConfigHolderOptions;
  #fileKey: string | null = null;
  #watchTimer: ReturnType<typeof setTimeout> | undefined;
  #watching = false;
  #stopped = true;
  #closed = false;

  constructor(opts: ConfigHolderOptions) {
    this.#opts = opts;
    this.#router = opts.build(opts.config);
    this.#loadedAt = this.#now();
  }

  /** The Router in force. Read it once per request. */
  get router(): Router {
    return this.#router;
  }

  get config(): Config {
    return this.#router.config;
  }

  health(): ConfigHealth {
    return { loaded_at: this.#loadedAt.toISOString(), last_reload_error: this.#lastError };
  }

  /** Called after each successful swap, e.g. to re-tune long-lived state or the log level. */
  onReload(fn: Listener): void {
    this.#listeners.push(fn);
  }

  /** Loads, validates and swaps in the file. Reloads run one at a time, in order. */
  reload(trigger: ReloadTrigger): Promise<ReloadResult> {
    const run = this.#queue.then(() => this.#reload(trigger));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #reload(trigger: ReloadTrigger): Promise<ReloadResult> {
    const { path, logger } = this.#opts;
    const previous = this.#router;
    let next: Router;
    try {
      if (this.#opts.stat) this.#fileKey = fileKey(await this.#opts.stat(path).catch(() => null));
      const config = await this.#opts.load(path);
      next = this.#opts.build(config);
    } catch (e) {
      const isConfig = e instanceof ConfigError;
      const problems = isConfig ? e.problems : [`${(e as Error)?.message ?? String(e)}`];
      this.#lastError = problems.join("; ");
      logger?.log("error", "config reload failed; keeping the config in force", {
        trigger,
        config: path,
        problems,
        loaded_at: this.#loadedAt.toISOString(),
      });
      return {
        ok: false,
        status: isConfig ? 400 : 500,
        message: `config reload failed (${problems.length} problem${problems.length === 1 ? "" : "s"}); still serving the config loaded at ${this.#loadedAt.toISOString()}: ${this.#lastError}`,
        problems,
      };
    }
    this.#router = next; // the atomic swap: requests that already hold `previous` finish on it
    this.#loadedAt = this.#now();
    this.#lastError = null;
    const config = next.config;
    const old = previous.config;
    for (const fn of this.#listeners) {
      try {
        fn(config, old);
      } catch (e) {
        logger?.log("error", "config reload listener failed", { error: (e as Error)?.message ?? String(e) });
      }
    }
    // read once at start-up (the listener, the replica's name, the state backend); logging takes effect at once
    const restartNeeded = (["host", "port", "header_timeout_seconds", "replica_id"] as const).filter((k) => config.server[k] !== old.server[k]).map((k) => `server.${k}`);
    if (JSON.stringify(config.state) !== JSON.stringify(old.state)) restartNeeded.push("state");
    if (restartNeeded.length) {
      logger?.log("warn", "some changed settings take effect only after a restart", { settings: restartNeeded });
    }
    logger?.log("info", "config reloaded", { trigger, config: path, strategy: config.routing.strategy, chain: config.routing.fallback_chain });
    if (!this.#stopped) this.#syncWatch();
    return {
      ok: true,
      loaded_at: this.#loadedAt.toISOString(),
      strategy: config.routing.strategy,
      chain: config.routing.fallback_chain,
      providers: config.providers.map((p) => p.name),
    };
  }

  /** Starts polling the file when server.watch_config is true (and follows later reloads that change it). */
  async start(): Promise<void> {
    if (this.#opts.stat && this.#fileKey === null) this.#fileKey = fileKey(await this.#opts.stat(this.#opts.path).catch(() => null));
    if (this.#closed) return;
    this.#stopped = false;
    this.#syncWatch();
  }

  /** Stops polling for good (at shutdown). */
  stop(): void {
    this.#closed = true;
    this.#stopped = true;
    this.#watching = false;
    if (this.#watchTimer) clearTimeout(this.#watchTimer);
    this.#watchTimer = undefined;
  }

  #syncWatch(): void {
    const want = this.config.server.watch_config && !!this.#opts.stat;
    if (want === this.#watching) return;
    this.#watching = want;
    if (want) {
      this.#opts.logger?.log("info", "watching the config file for changes", { config: this.#opts.path });
      this.#schedule();
    } else if (this.#watchTimer) {
      clearTimeout(this.#watchTimer);
      this.#watchTimer = undefined;
    }
  }

  #schedule(): void {
    this.#watchTimer = setTimeout(() => void this.#poll(), this.#opts.watchIntervalMs ?? 1000);
  }

  async #poll(): Promise<void> {
    this.#watchTimer = undefined;
    try {
      const key = fileKey(await this.#opts.stat!(this.#opts.path).catch(() => null));
      // a missing file (an editor between delete and rename) is not a change; wait for it to come back
      if (key !== null && key !== this.#fileKey) await this.reload("watch");
    } finally {
      if (this.#watching && !this.#stopped && !this.#watchTimer) this.#schedule();
    }
  }

  #now(): Date {
    return this.#opts.now ? this.#opts.now() : new Date();
  }
}
