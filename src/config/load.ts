// Loads config.yaml text into a validated Config: YAML parse, ${VAR} expansion on string values,
// zod validation, and default resolution. Pure: the caller supplies the text and the environment.
import { parse as parseYaml } from "yaml";
import { type $ZodIssue } from "zod/v4/core";
import { PROVIDER_TYPES } from "../providers/registry.ts";
import { ConfigSchema, type Config, type ProviderConfig } from "./schema.ts";

export class ConfigError extends Error {
  constructor(public problems: string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

/** Formats a path like ["providers", 1, "endpoint"] as providers[1].endpoint. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else out += out ? `.${String(seg)}` : String(seg);
  }
  return out || "(root)";
}

const VAR_RE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;
const WHOLE_VAR_RE = /^\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}$/;

function expandString(s: string, env: Env, path: PropertyKey[], problems: string[]): unknown {
  if (!s.includes("${")) return s;
  const out = s.replace(VAR_RE, (_m, name: string, def: string | undefined) => {
    const v = env[name];
    if (v !== undefined && v !== "") return v;
    if (def !== undefined) return def;
    if (v !== undefined) return v;
    problems.push(`${formatPath(path)}: environment variable ${name} is not set (use \${${name}:-default} for a default)`);
    return "";
  });
  // A value that is exactly one ${VAR} may stand for a number or boolean (port: ${PORT:-8000}).
  if (WHOLE_VAR_RE.test(s)) {
    if (/^-?\d+(\.\d+)?$/.test(out)) return Number(out);
    if (out === "true" || out === "false") return out === "true";
  }
  return out;
}

function expand(node: unknown, env: Env, path: PropertyKey[], problems: string[]): unknown {
  if (typeof node === "string") return expandString(node, env, path, problems);
  if (Array.isArray(node)) return node.map((v, i) => expand(v, env, [...path, i], problems));
  if (node && typeof node === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) out[k] = expand(v, env, [...path, k], problems);
    return out;
  }
  return node;
}

function issueMessage(issue: $ZodIssue): string {
  if (issue.code === "unrecognized_keys") return `unknown key${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
  if (issue.code === "invalid_value" && "values" in issue) return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
  if (issue.code === "invalid_type" && issue.input === undefined) return `required`;
  return issue.message;
}

export function parseConfig(text: string, env: Env = {}): Config {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    // the first line only, without the colon that introduces the excerpt of the file after it (a line that may hold a key)
    throw new ConfigError([`invalid YAML: ${(e as Error).message.split("\n")[0].replace(/:\s*$/, "")}`]);
  }
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== "object" || Array.isArray(raw)) throw new ConfigError(["(root): must be a mapping"]);
  const problems: string[] = [];
  const expanded = expand(raw, env, [], problems);
  if (problems.length) throw new ConfigError(problems);
  // reportInput: zod 4 leaves issue.input out otherwise, and issueMessage needs it to tell "required" from a wrong type
  const result = ConfigSchema.safeParse(expanded, { reportInput: true });
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((i) => {
      // unrecognized_keys at a path: name the key itself in the path
      if (i.code === "unrecognized_keys" && i.keys.length === 1) return `${formatPath([...i.path, i.keys[0]])}: unknown key`;
      return `${formatPath(i.path)}: ${issueMessage(i)}`;
    }));
  }
  const cfg = result.data;
  const providers: ProviderConfig[] = cfg.providers.map((p) => ({
    ...p,
    api_key: p.api_key ? p.api_key : undefined,
    endpoint: (p.endpoint ?? PROVIDER_TYPES[p.type].defaultEndpoint ?? "http://localhost").replace(/\/+$/, ""),
    default_model: p.default_model ?? p.models?.[0] ?? "mock",
    circuit_breaker: { ...cfg.circuit_breaker, ...p.circuit_breaker },
  }));
  return {
    ...cfg,
    providers,
    routing: { ...cfg.routing, fallback_chain: cfg.routing.fallback_chain ?? providers.map((p) => p.name) },
  };
}

/**
 * Reads every provider's tls.ca_file (`read`: null when the file does not exist) into its `ca`. Problems name
 * the key: a missing or unreadable file, or one without a PEM certificate.
 */
export async function loadTlsFiles(config: Config, read: (path: string) => Promise<string | null>): Promise<void> {
  const problems: string[] = [];
  await Promise.all(config.providers.map(async (p, i) => {
    const file = p.tls?.ca_file;
    if (!file) return;
    const where = `providers[${i}].tls.ca_file`;
    let text: string | null;
    try {
      text = await read(file);
    } catch (e) {
      problems.push(`${where}: cannot read ${file}: ${(e as Error)?.message ?? String(e)}`);
      return;
    }
    if (text === null) problems.push(`${where}: file not found: ${file}`);
    else if (!text.includes("-----BEGIN CERTIFICATE-----")) problems.push(`${where}: no PEM certificate in ${file}`);
    else p.ca = text;
  }));
  if (problems.length) throw new ConfigError(problems);
}
