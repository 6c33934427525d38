// The one structured log line written per client request; the free text it carries (upstream failure reasons,
// the client's model name) goes through the router's one redaction. Bodies and headers are never logged.
import { redact } from "../providers/redact.ts";
import type { AttemptRecord } from "../routing/records.ts";

const MAX_TEXT = 200;

/** Shortens client- or upstream-controlled text for a log line. */
export function clip(s: string, max = MAX_TEXT): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
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

/** `secrets`: the config's (configSecrets) */
export function loggedAttempt(a: AttemptRecord, secrets: readonly string[]): LoggedAttempt {
  const out: LoggedAttempt = { provider: a.provider, model: clip(a.model), outcome: a.outcome, status: a.status, latency_ms: ms(a.latency_ms) };
  if (a.ttfb_ms !== undefined) out.ttfb_ms = ms(a.ttfb_ms);
  if (a.reason) out.reason = clip(redact(a.reason, secrets), 300);
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
