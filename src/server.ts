// The runtime-agnostic program: CLI, .env, config loading, and serving through the Platform interface.
import { CliError, HELP, parseArgs, parseDotenv, type CliOptions } from "./cli.ts";
import { ConfigError, parseConfig } from "./config/load.ts";
import type { Config } from "./config/schema.ts";
import { createApp } from "./http/app.ts";
import { createLogger } from "./observability/logger.ts";
import { Observability } from "./observability/observability.ts";
import { safeUrl } from "./observability/requestlog.ts";
import type { Platform } from "./platform.ts";
import { createAdapter } from "./providers/index.ts";
import { redactSecrets } from "./providers/redact.ts";
import { BreakerRegistry } from "./routing/breaker.ts";
import { Router, type RouterHooks, type RouterOptions } from "./routing/failover.ts";
import { HealthTracker } from "./routing/health.ts";
import { GIT_COMMIT, VERSION } from "./version.ts";

/** The routing state that outlives a config reload: create it once at startup and pass it to every buildRouter. */
export interface RoutingState {
  breakers: BreakerRegistry;
  health: HealthTracker;
}

/** Breakers and health tracker for a config; `clock` is wall-clock ms (injected by tests). */
export function createRoutingState(config: Config, clock: () => number = Date.now): RoutingState {
  return { breakers: new BreakerRegistry(config, clock), health: new HealthTracker(config, clock) };
}

/**
 * A Router for a config. Pass the same `opts.breakers` / `opts.health` (see createRoutingState) to every Router
 * built after a reload: the Router syncs them to its config, keeping the state of unchanged provider names.
 */
export function buildRouter(config: Config, hooks: RouterHooks = {}, opts: RouterOptions = {}): Router {
  return new Router(config, new Map(config.providers.map((p) => [p.name, redactSecrets(createAdapter(p))])), hooks, opts);
}

export function configPath(opts: CliOptions, env: Record<string, string | undefined>): string {
  return opts.config ?? env.ROUTER_CONFIG ?? "./config.yaml";
}

/** Reads and validates the config file; throws ConfigError with every problem. */
export async function loadConfigFile(platform: Platform, path: string): Promise<Config> {
  const text = await platform.readTextFile(path);
  if (text === null) throw new ConfigError([`config file not found: ${path}`]);
  return parseConfig(text, platform.env);
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

  const dotenv = await platform.readTextFile(".env");
  if (dotenv !== null) {
    for (const [k, v] of Object.entries(parseDotenv(dotenv))) if (platform.env[k] === undefined) platform.setEnv(k, v);
  }

  const path = configPath(opts, platform.env);
  let config: Config;
  try {
    config = await loadConfigFile(platform, path);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    platform.stderr(`${path}: invalid config`);
    for (const p of e.problems) platform.stderr(`  ${p}`);
    platform.exit(1);
  }

  if (opts.command === "check") {
    platform.stdout(`${path}: OK`);
    platform.stdout(`strategy: ${config.routing.strategy}`);
    platform.stdout(`chain: ${config.routing.fallback_chain.join(" -> ")}`);
    return;
  }

  const logger = createLogger(platform.stdout, config.logging.level, config.logging.format);
  // created once: stats, metrics, breakers and health survive a config reload (which builds a new Router
  // with hooksFor(newConfig) and the same routing state)
  const observability = new Observability({ version: VERSION, runtime: platform.runtime, logger });
  const routing = createRoutingState(config);
  let router = buildRouter(config, observability.hooksFor(config), routing);
  const app = createApp({ router: () => router, observability });
  const hostname = opts.host ?? platform.env.HOST ?? config.server.host;
  const envPort = platform.env.PORT;
  const port = opts.port ?? (envPort && /^\d+$/.test(envPort) ? Number(envPort) : config.server.port);
  const server = platform.serve((req, info) => app.fetch(req, info), { hostname, port });
  logger.log("info", "config loaded", {
    config: path,
    strategy: config.routing.strategy,
    chain: config.routing.fallback_chain,
    // no api_key, no header values; the endpoint without credentials or query string
    providers: config.providers.map((p) => ({ name: p.name, type: p.type, endpoint: safeUrl(p.endpoint), default_model: p.default_model })),
  });
  logger.log("info", `listening on http://${server.hostname}:${server.port}`, { version: VERSION, runtime: platform.runtime });

  const shutdown = async () => {
    logger.log("info", "shutting down");
    await server.stop(true);
    platform.exit(0);
  };
  platform.onSignal("SIGTERM", shutdown);
  platform.onSignal("SIGINT", shutdown);
  void router;
}
