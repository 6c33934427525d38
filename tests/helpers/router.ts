// Starts the router in-process on 127.0.0.1 with the current runtime's server (Bun.serve or Deno.serve),
// so every test goes through real HTTP.
import { readFile } from "node:fs/promises";
import { loadTlsFiles, parseConfig } from "../../src/config/load.ts";
import { createApp, type AppDeps } from "../../src/http/app.ts";
import { buildRouter, createRoutingState, type RoutingState } from "../../src/server.ts";
import type { Router, RouterOptions } from "../../src/routing/failover.ts";
import type { RouterHooks } from "../../src/routing/records.ts";
import { createLogger } from "../../src/observability/logger.ts";
import type { UpstreamFetch } from "../../src/providers/types.ts";
import { Observability } from "../../src/observability/observability.ts";
import { EventHub, type EventHubOptions } from "../../src/observability/events.ts";
import { VERSION } from "../../src/version.ts";

export interface RunningRouter {
  url: string;
  router: Router;
  /** the stats / metrics / request-log hub the router reports to */
  observability: Observability;
  /** every line the router logged (request log), in order */
  logs: string[];
  /** the breakers and health tracker, shared by every Router this server builds */
  state: RoutingState;
  /** the dashboard's event hub (GET /admin/state, /admin/events) */
  events: EventHub;
  stop(): Promise<void>;
}

export interface StartOptions extends Omit<RouterOptions, "breakers" | "health"> {
  /** wall clock in ms for breakers and health (a FakeClock's `now`), default Date.now */
  clock?: () => number;
  /** also receives every log line */
  logSink?: (line: string) => void;
  /** wall clock for the stats windows (ms) */
  statsNow?: () => number;
  /** the app's clock in ms: rate limiting and idempotency TTL */
  appNow?: () => number;
  /** the client address the app sees for a request (default 127.0.0.1) */
  remoteAddr?: (req: Request) => string | undefined;
  /** more observers of the routing loop (called after the observability hooks) */
  hooks?: RouterHooks;
  /** extra app dependencies (an idempotency store, a rate limiter) */
  deps?: Partial<AppDeps>;
  /** the adapters' upstream client (default: the one the runtime's entrypoint installs, `upstreamFetch`) */
  upstreamFetch?: UpstreamFetch;
  /** the dashboard event hub's tick, queue bound and subscriber cap */
  events?: Pick<EventHubOptions, "tickMs" | "maxQueuedBytes" | "maxSubscribers">;
}

/** A hand-driven wall clock for breaker cool-offs: starts at the real time, moves only with advance(). */
export class FakeClock {
  t = Date.now();
  readonly now = () => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

type ServeFn = (handler: (req: Request) => Response | Promise<Response>) => { port: number; stop(): Promise<void> };

export const runtime: "bun" | "deno" = (globalThis as any).Bun ? "bun" : "deno";

/** The upstream client the runtime's entrypoint gives the router (src/main.deno.ts, src/main.bun.ts). */
export const upstreamFetch: UpstreamFetch = runtime === "deno"
  ? (await import("../../src/runtime/deno-upstream.ts")).denoUpstreamFetch({})
  : (await import("../../src/runtime/bun-upstream.ts")).bunUpstreamFetch({});

export const serve: ServeFn = (handler) => {
  const g = globalThis as any;
  if (g.Bun) {
    const s = g.Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: 60, fetch: handler });
    return { port: s.port, stop: async () => void s.stop(true) };
  }
  const s = g.Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  return { port: s.addr.port, stop: () => s.shutdown() };
};

export async function startRouter(yaml: string, env: Record<string, string> = {}, opts: StartOptions = {}): Promise<RunningRouter> {
  const config = parseConfig(yaml, env);
  await loadTlsFiles(config, (path) => readFile(path, "utf8")); // providers' tls.ca_file, as main() reads them
  const { clock, logSink, statsNow, appNow, remoteAddr, hooks: extra, deps, upstreamFetch: client = upstreamFetch, events: eventOpts, ...routerOpts } = opts;
  const logs: string[] = [];
  const logger = createLogger((line) => {
    logs.push(line);
    logSink?.(line);
  }, config.logging.level, config.logging.format);
  const observability = new Observability({ version: VERSION, runtime, logger, now: statsNow });
  const obsHooks = observability.hooksFor(config);
  const hooks: RouterHooks = extra
    ? {
      ...obsHooks,
      onAttempt: (a) => (obsHooks.onAttempt?.(a), extra.onAttempt?.(a)),
      onRequest: (r) => (obsHooks.onRequest?.(r), extra.onRequest?.(r)),
    }
    : obsHooks;
  const state = createRoutingState(config, clock);
  const router = buildRouter(config, hooks, { ...routerOpts, ...state, upstreamFetch: client });
  let port = 0;
  const events = deps?.events ?? new EventHub({
    router: () => router, observability, configHealth: deps?.configHealth, reloadAvailable: !!deps?.reload, replicaId: () => `127.0.0.1:${port}`, ...eventOpts,
  });
  const app = createApp({ ...deps, router: () => router, observability, now: appNow, events });
  const s = serve((req) => app.fetch(req, { remoteAddr: remoteAddr ? remoteAddr(req) : "127.0.0.1" }));
  port = s.port;
  // open event streams end first, as at a real shutdown: a server waiting for its responses would wait forever
  const stop = () => (events.close(), s.stop());
  return { url: `http://127.0.0.1:${s.port}`, router, observability, logs, state, events, stop };
}

export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
}

/** Reads an SSE response into its data payloads (parsed JSON, or the raw string for [DONE]). */
export async function readSse(res: Response): Promise<any[]> {
  const text = await res.text();
  return text
    .split("\n\n")
    .filter((b) => b.startsWith("data: "))
    .map((b) => b.slice(6))
    .map((d) => (d === "[DONE]" ? d : JSON.parse(d)));
}
