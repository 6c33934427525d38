// The runtime-agnostic program: CLI, .env, config loading, and serving through the Platform interface.
import { CliError, HELP, parseArgs, parseDotenv, type CliOptions } from "./cli.ts";
import { ConfigError, loadTlsFiles, parseConfig } from "./config/load.ts";
import type { Config } from "./config/schema.ts";
import { createApp } from "./http/app.ts";
import { EventHub } from "./observability/events.ts";
import { createLogger } from "./observability/logger.ts";
import { Observability } from "./observability/observability.ts";
import { safeUrl } from "./observability/requestlog.ts";
import type { Platform, ServerHandle, Signal } from "./platform.ts";
import { createAdapter } from "./providers/registry.ts";
import { configSecrets, redactSecrets } from "./providers/redact.ts";
import type { UpstreamFetch } from "./providers/types.ts";
import { ConfigHolder } from "./reload.ts";
import { BreakerRegistry } from "./routing/breaker.ts";
import { Router, type RouterOptions } from "./routing/failover.ts";
import type { RouterHooks } from "./routing/records.ts";
import { HealthTracker } from "./routing/health.ts";
import { createState } from "./state/index.ts";
import { STARTUP_WAIT_MS } from "./state/redis/index.ts";
import type { BreakerStore } from "./state/types.ts";
import { GIT_COMMIT, VERSION } from "./version.ts";

/** The routing state that outlives a config reload: create it once at startup and pass it to every buildRouter. */
export interface RoutingState {
  breakers: BreakerRegistry;
  health: HealthTracker;
}

/**
 * Breakers and health tracker for a config; `clock` is wall-clock ms (injected by tests). With `shared` (the
 * state backend's breaker store) the breakers share their openings with other replicas.
 */
export function createRoutingState(config: Config, clock: () => number = Date.now, shared?: BreakerStore): RoutingState {
  return { breakers: new BreakerRegistry(config, clock, shared), health: new HealthTracker(config, clock) };
}

export interface BuildOptions extends RouterOptions {
  /** the adapters' upstream client (Platform.upstreamFetch; default the global fetch) */
  upstreamFetch?: UpstreamFetch;
}

/**
 * A Router for a config, built at start-up and again on every config reload: it creates no long-lived state
 * itself. Pass the same `opts.breakers` / `opts.health` (see createRoutingState) to every Router
 * built after a reload: the Router syncs them to its config, keeping the state of unchanged provider names.
 */
export function buildRouter(config: Config, hooks: RouterHooks = {}, opts: BuildOptions = {}): Router {
  const { upstreamFetch, ...routerOpts } = opts;
  const secrets = configSecrets(config);
  return new Router(config, new Map(config.providers.map((p) => [p.name, redactSecrets(createAdapter(p, upstreamFetch), secrets)])), hooks, routerOpts);
}

export function configPath(opts: CliOptions, env: Record<string, string | undefined>): string {
  return opts.config ?? env.ROUTER_CONFIG ?? "./config.yaml";
}

/** Reads and validates the config file; throws ConfigError with every problem. */
export async function loadConfigFile(platform: Platform, path: string): Promise<Config> {
  const text = await platform.readTextFile(path);
  if (text === null) throw new ConfigError([`config file not found: ${path}`]);
  const config = parseConfig(text, platform.env);
  await loadTlsFiles(config, (p) => platform.readTextFile(p));
  return config;
}

export async function main(platform: Platform): Promise<void> {
  let opts: CliOptions;
  try {
    opts = parseArgs(platform.args);
  } catch (e) {
    if (!(e instanceof CliError)) throw e;
    platform.stderr(`error: ${e.message}`);
    platform.exit(2);
  }
  if (opts.command === "help") {
    platform.stdout(HELP);
    return;
  }
  if (opts.command === "version") {
    platform.stdout(`failover-router ${VERSION} (${platform.runtime} ${platform.runtimeVersion}, commit ${GIT_COMMIT})`);
    return;
  }

  let dotenv: string | null;
  try {
    dotenv = await platform.readTextFile(".env");
  } catch (e) {
    platform.stderr(`.env: cannot read the file: ${(e as Error)?.message ?? String(e)}`);
    platform.exit(1);
  }
  if (dotenv !== null) {
    for (const [k, v] of Object.entries(parseDotenv(dotenv))) if (platform.env[k] === undefined) platform.setEnv(k, v);
  }

  // a $PORT set by mistake would otherwise be ignored and the router listen elsewhere without a word (--port wins)
  const envPort = platform.env.PORT;
  if (opts.port === undefined && envPort && !(/^\d+$/.test(envPort) && Number(envPort) <= 65535)) {
    platform.stderr(`error: PORT must be a number from 0 to 65535, got "${envPort}"`);
    platform.exit(2);
  }

  const path = configPath(opts, platform.env);
  if (opts.command === "healthcheck") return healthcheck(platform, opts, path);

  let config: Config;
  try {
    config = await loadConfigFile(platform, path);
  } catch (e) {
    if (!(e instanceof ConfigError)) {
      // unreadable (permissions, a directory): the reason in one line, not a stack trace
      platform.stderr(`${path}: cannot read the config file: ${(e as Error)?.message ?? String(e)}`);
      platform.exit(1);
    }
    platform.stderr(`${path}: invalid config (${e.problems.length} problem${e.problems.length === 1 ? "" : "s"})`);
    for (const p of e.problems) platform.stderr(`  ${p}`);
    platform.exit(1);
  }

  if (opts.command === "check") {
    platform.stdout(`${path}: OK`);
    platform.stdout(`strategy: ${config.routing.strategy}`);
    platform.stdout(`chain: ${config.routing.fallback_chain.join(" -> ")}`);
    const st = config.state;
    platform.stdout(`state: ${st.backend}${st.backend === "redis" ? ` ${safeUrl(st.redis.url)} (key prefix "${st.redis.key_prefix}", command timeout ${st.redis.command_timeout_ms} ms)` : ""}`);
    for (const p of config.providers) platform.stdout(`provider ${p.name}: ${p.type} ${p.endpoint} (default model ${p.default_model})`);
    return;
  }

  await serve(platform, opts, path, config);
}

/** The port as `serve` picks it; main has refused a $PORT that is not a port (unless --port is given). */
function listenPort(opts: CliOptions, env: Record<string, string | undefined>, config: Config | undefined): number {
  return opts.port ?? (env.PORT ? Number(env.PORT) : config?.server.port ?? 8000);
}

/**
 * File descriptors for `maxConnections` streams: the client's connection and the upstream's for each, and some
 * for the process itself (listening socket, idle upstream connections, files, the runtime's own).
 */
function openFilesNeeded(maxConnections: number): number {
  return 2 * maxConnections + 256;
}

const SIGNAL_NUMBER: Record<Signal, number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

async function serve(platform: Platform, opts: CliOptions, path: string, config: Config): Promise<void> {
  const logger = createLogger(platform.stdout, config.logging.level, config.logging.format);

  // ---- Long-lived state: created ONCE here, handed to every Router that a reload builds. ----
  // Stats, metrics, breakers and health survive a reload for providers whose names are unchanged (the Router
  // syncs the routing state to its config); the state backend (the `state` block, read here only: a reload does
  // not switch it) holds the rate-limit buckets and idempotency records the app uses and the breakers' openings.
  // the replica id is known once the server listens (its port may be 0 in the config)
  let replica = config.server.replica_id ?? "";
  const state = createState(config.state, { config: () => holder.config, connectRedis: platform.connectRedis, logger });
  const observability = new Observability({ version: VERSION, runtime: platform.runtime, logger, replica: () => replica, state: () => state.status() });
  const routing = createRoutingState(config, Date.now, state.breakers);
  const holder = new ConfigHolder({
    path,
    config,
    load: (p) => loadConfigFile(platform, p),
    build: (cfg) => buildRouter(cfg, observability.hooksFor(cfg), { ...routing, spend: state.spend, stateUp: () => state.status().connected, upstreamFetch: platform.upstreamFetch }),
    stat: (p) => platform.stat(p),
    logger,
  });
  holder.onReload((cfg) => {
    logger.level = cfg.logging.level;
    logger.format = cfg.logging.format;
  });

  let draining = false;
  const events = new EventHub({
    router: () => holder.router,
    observability,
    configHealth: () => holder.health(),
    reloadAvailable: true,
    replicaId: () => replica,
    sharedState: () => (state.status().backend === "memory" ? null : state.status()),
  });
  const app = createApp({
    events,
    router: () => holder.router,
    observability,
    draining: () => draining,
    reload: () => holder.reload("admin"),
    configHealth: () => holder.health(),
    stateStatus: () => state.status(),
    rateLimiter: state.rateLimits,
    idempotencyStore: state.idempotency,
  });
  const hostname = opts.host ?? platform.env.HOST ?? config.server.host;
  const port = listenPort(opts, platform.env, config);
  let server: ServerHandle;
  try {
    server = platform.serve((req, info) => app.fetch(req, info), { hostname, port, headerTimeoutSeconds: config.server.header_timeout_seconds });
  } catch (e) {
    // a port in use, an address not on this host: one line for the journal, not a stack trace
    platform.stderr(`error: cannot listen on ${hostname}:${port}: ${(e as Error)?.message ?? String(e)}`);
    platform.exit(1);
  }
  replica ||= `${platform.hostname}:${server.port}`;
  // signal handlers go in before "listening" is logged: a supervisor may signal as soon as it sees it
  platform.onSignal("SIGHUP", () => void holder.reload("SIGHUP"));

  // Graceful shutdown: stop listening, answer 503 to any new request on an open connection, let in-flight
  // requests and streams finish (up to server.shutdown_timeout_seconds), exit 0. A second signal exits at once.
  const shutdown = (sig: Signal) => {
    if (draining) {
      logger.log("warn", `second ${sig}: exiting at once`);
      platform.exit(128 + SIGNAL_NUMBER[sig]);
    }
    draining = true;
    holder.stop();
    events.close(); // open dashboard streams would otherwise hold the drain until the timeout
    const timeoutS = holder.config.server.shutdown_timeout_seconds;
    logger.log("info", "shutting down: draining in-flight requests", { signal: sig, timeout_seconds: timeoutS });
    const timer = setTimeout(() => {
      logger.log("warn", `shutdown timeout (${timeoutS}s) reached; closing the remaining connections`);
      platform.exit(0);
    }, timeoutS * 1000);
    server.stop(true).then(
      () => {
        clearTimeout(timer);
        logger.log("info", "stopped");
        platform.exit(0);
      },
      (e) => {
        clearTimeout(timer);
        logger.log("error", "error while stopping the server", { error: (e as Error)?.message ?? String(e) });
        platform.exit(1);
      },
    );
  };
  platform.onSignal("SIGTERM", () => shutdown("SIGTERM"));
  platform.onSignal("SIGINT", () => shutdown("SIGINT"));

  logger.log("info", "config loaded", {
    config: path,
    strategy: config.routing.strategy,
    chain: config.routing.fallback_chain,
    // no api_key, no header values; the endpoint without credentials or query string
    providers: config.providers.map((p) => ({ name: p.name, type: p.type, endpoint: safeUrl(p.endpoint), default_model: p.default_model })),
  });
  for (const w of platform.startupWarnings ?? []) logger.log("warn", w);
  // before "listening": a replica that says it listens already shares its state (or says it could not)
  const connected = await state.ready(STARTUP_WAIT_MS);
  const st = state.status();
  logger.log(connected ? "info" : "warn", `state backend: ${st.backend}${connected ? "" : ", not answering: serving from local state until it does"}`, {
    backend: st.backend,
    connected,
    replica,
    ...(config.state.backend === "redis" && { redis: safeUrl(config.state.redis.url), key_prefix: config.state.redis.key_prefix, last_error: st.last_error ?? undefined }),
  });
  const fds = platform.openFilesLimit;
  const needFds = openFilesNeeded(config.server.max_connections);
  if (fds !== undefined && fds < needFds) {
    logger.log("warn", `the open-files limit (${fds}) is below the ${needFds} that server.max_connections (${config.server.max_connections}) needs: raise the hard limit (LimitNOFILE=, ulimit -Hn, docker --ulimit nofile) or lower server.max_connections`);
  }
  logger.log("info", `listening on http://${server.hostname}:${server.port}`, {
    version: VERSION, commit: GIT_COMMIT, runtime: platform.runtime, open_files_limit: fds === Infinity ? "unlimited" : fds,
  });

  await holder.start();
}

/** `failover-router healthcheck`: GET /health of a running router; exit 0 on 200, else 1. */
async function healthcheck(platform: Platform, opts: CliOptions, path: string): Promise<void> {
  let url = opts.url;
  if (!url) {
    // the port and host as `serve` would pick them; an unreadable config falls back to the defaults
    let config: Config | undefined;
    try {
      config = await loadConfigFile(platform, path);
    } catch { /* defaults */ }
    let host = opts.host ?? platform.env.HOST ?? config?.server.host ?? "127.0.0.1";
    if (host === "0.0.0.0" || host === "::" || host === "[::]" || host === "") host = "127.0.0.1";
    if (host.includes(":") && !host.startsWith("[")) host = `[${host}]`;
    url = `http://${host}:${listenPort(opts, platform.env, config)}/health`;
  }
  let status = 0;
  let detail: string;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    status = res.status;
    detail = (await res.text()).slice(0, 500);
  } catch (e) {
    detail = (e as Error)?.message ?? String(e);
  }
  if (status === 200) {
    platform.stdout(`healthy: ${url}`);
    return;
  }
  platform.stderr(`unhealthy: ${url}: ${status ? `HTTP ${status} ` : ""}${detail}`);
  platform.exit(1);
}
