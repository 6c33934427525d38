// Command-line parsing: failover-router [serve|check] [--config PATH] [--host HOST] [--port PORT].
export interface CliOptions {
  command: "serve" | "check" | "healthcheck" | "help" | "version";
  config?: string;
  /** healthcheck: the URL to probe */
  url?: string;
  host?: string;
  port?: number;
}

export const HELP = `failover-router: one OpenAI-compatible endpoint in front of many LLM providers.

Usage:
  failover-router [serve] [--config PATH] [--host HOST] [--port PORT]
  failover-router check [--config PATH]
  failover-router healthcheck [--url URL | --config PATH --host HOST --port PORT]
  failover-router --help | --version

Commands:
  serve     run the router (default)
  check     validate the config and print the resolved chain; exit 1 on any problem
  healthcheck
            GET /health of a running router (default http://127.0.0.1:<port>/health, port as for
            serve); exit 0 when it answers 200, else 1. For container HEALTHCHECKs (no curl needed)

Options:
  -c, --config PATH   config file (default: $ROUTER_CONFIG, else ./config.yaml)
      --host HOST     listen address (default: $HOST, else server.host, else 0.0.0.0)
  -p, --port PORT     listen port (default: $PORT, else server.port, else 8000)
      --url URL       healthcheck: the URL to probe
  -h, --help          show this help
  -v, --version       print version, runtime and git commit

Environment: ./.env is loaded if present (variables already set win).

Signals (serve): SIGHUP reloads the config file (an invalid file keeps the old config); SIGTERM or SIGINT
drain in-flight requests and streams (up to server.shutdown_timeout_seconds), then exit 0; a second
SIGTERM or SIGINT exits at once.`;

export class CliError extends Error {}

export function parseArgs(argv: string[]): CliOptions {
  const out: CliOptions = { command: "serve" };
  let commandSeen = false;
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let inline: string | undefined;
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    if (eq > 0) {
      inline = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === "") throw new CliError(`${arg} needs a value`);
      return v;
    };
    switch (arg) {
      case "-h":
      case "--help":
        return { command: "help" };
      case "-v":
      case "--version":
        return { command: "version" };
      case "-c":
      case "--config":
        out.config = value();
        break;
      case "--host":
        out.host = value();
        break;
      case "-p":
      case "--port": {
        const v = value();
        const n = Number(v);
        if (!/^\d+$/.test(v) || n > 65535) throw new CliError(`--port must be a number from 0 to 65535, got "${v}"`);
        out.port = n;
        break;
      }
      case "--url":
        out.url = value();
        break;
      case "serve":
      case "check":
      case "healthcheck":
        if (commandSeen) throw new CliError(`unexpected argument "${arg}"`);
        commandSeen = true;
        out.command = arg;
        break;
      default:
        throw new CliError(`unknown ${arg.startsWith("-") ? "option" : "argument"} "${arg}" (see --help)`);
    }
  }
  return out;
}

/** Parses .env text: KEY=VALUE lines, optional `export `, quotes, # comments. */
export function parseDotenv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2];
    if ((v.startsWith('"') && v.endsWith('"') && v.length >= 2) || (v.startsWith("'") && v.endsWith("'") && v.length >= 2)) {
      const dq = v[0] === '"';
      v = v.slice(1, -1);
      if (dq) v = v.replace(/\\n/g, "\n").replace(/\\"/g, '"');
    } else {
      const hash = v.indexOf(" #");
      if (hash >= 0) v = v.slice(0, hash).trimEnd();
    }
    out[m[1]] = v;
  }
  return out;
}
