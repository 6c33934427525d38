// Retries on the same provider: which failures are worth one, and how long to wait before it.
import type { UpstreamFailure } from "../providers/types.ts";

/**
 * Failures worth retrying on the same provider: errors that answer (5xx, 408, 429, a reset, an invalid answer).
 * Not 401/403 and other 4xx: they will not change; and not a timeout: a silent provider stays silent, so the
 * next provider gets the time a retry would wait for.
 */
export function sameProviderRetryable(f: UpstreamFailure): boolean {
  if (f.kind !== "http") return f.kind !== "aborted" && f.kind !== "timeout";
  return f.status >= 500 || f.status === 408 || f.status === 429;
}

export class Backoff {
  constructor(
    /** first backoff in ms (doubles per retry) */
    readonly baseMs: number,
    /** largest backoff in ms */
    readonly maxMs: number,
    /** routing.max_retry_after_seconds: a longer Retry-After moves on to the next provider instead */
    readonly maxRetryAfterSeconds: number,
    /** randomness for the jitter, 0..1 */
    readonly random: () => number,
  ) {}

  /** The wait before retry n (0-based): base x 2^n capped, with jitter, at least Retry-After; undefined past the cap. */
  delay(n: number, retryAfterSec: number | undefined): number | undefined {
    if (retryAfterSec !== undefined && retryAfterSec > this.maxRetryAfterSeconds) return undefined;
    const backoff = Math.min(this.maxMs, this.baseMs * 2 ** n);
    const jittered = backoff / 2 + this.random() * (backoff / 2);
    return Math.max(jittered, (retryAfterSec ?? 0) * 1000);
  }
}
