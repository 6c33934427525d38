// The one structured log line written per client request, and the redaction of configured secrets from the
// only free text it carries (upstream failure reasons). Bodies and headers are never logged.
import type { Config } from "../config/schema.ts";
import { providerSecrets, redact } from "../providers/redact.ts";
import type { AttemptRecord } from "../routing/failover.ts";

const MAX_TEXT = 200;

/** Shortens client- or upstream-controlled text for a log line. */
export function clip(s: string, max = MAX_TEXT): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/** Replaces every configured secret (provider keys, header values, client keys, admin key) with [REDACTED]. */
export class Redactor {
  readonly #secrets: string[];
  constructor(config: Pick<Config, "providers"> & Partial<Pick<Config, "auth">>) {
    const s = new Set<string>();
    for (const p of config.providers) for (const v of providerSecrets(p)) s.add(v);
    for (const k of config.auth?.api_keys ?? []) {
      if (typeof k === "string") s.add(k);
      else if ("key" in k) s.add(k.key);
    }
    if (config.auth?.admin_api_key) s.add(config.auth.admin_api_key);
    // longest first, so a secret containing another is replaced whole; very short values are not secrets
    this.#secrets = [...s].filter((v) => v.length >= 6).sort((a, b) => b.length - a.length);
  }

  redact(text: string): string {
    return redact(text, this.#secrets);
  }
}

const ms = (x: number) => Math.round(x * 10) / 10;

export interface LoggedAttempt {
  provider: string;
  model: string;
  outcome: string;
  status: number;
  latency_ms: number;
  ttfb_ms?: number;
  reason?: string;
}

export function loggedAttempt(a: AttemptRecord, redactor: Redactor): LoggedAttempt {
  const out: LoggedAttempt = { provider: a.provider, model: clip(a.model), outcome: a.outcome, status: a.status, latency_ms: ms(a.latency_ms) };
  if (a.ttfb_ms !== undefined) out.ttfb_ms = ms(a.ttfb_ms);
  if (a.reason) out.reason = clip(redactor.redact(a.reason), 300);
  return out;
}

export { ms as roundMs };

/** A URL fit for a log line: no user:password and no query string (either may carry a key). */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname === "/" ? "" : u.pathname}`;
  } catch {
    return "(invalid URL)";
  }
}
