// How the routing loop reads an upstream failure: its class (what the loop does next), and a summary for
// the breaker's last_error.
import type { UpstreamFailure } from "../providers/types.ts";
import { UpstreamStreamError } from "../providers/types.ts";
import { fetchFailure } from "../providers/upstream.ts";

/** Why an attempt failed, as the failover loop and the breaker see it. */
export type FailureClass =
  | "client" // 400/413/422: the client's fault, returned at once
  | "context" // context window exceeded: try the next provider, not a breaker failure
  | "unsupported" // this provider's protocol cannot express the request (nothing sent): next provider, not a failure
  | "retryable" // connection error, timeout, 5xx, 408, 429, 401, 403, other 4xx: next provider
  | "aborted" // the client went away
  | "hedge_lost"; // the other attempt of a hedge answered first (src/routing/hedge.ts)

/** A failure the loop goes on from, with its class. */
export type ClassifiedFailure = UpstreamFailure & { cls: FailureClass };

export function classifyFailure(f: UpstreamFailure): FailureClass {
  if (f.kind === "aborted") return "aborted";
  if (f.unsupported) return "unsupported";
  if (f.kind !== "http") return "retryable";
  if (f.contextExceeded) return "context";
  if (f.status === 400 || f.status === 413 || f.status === 422) return "client";
  return "retryable";
}

/** A short description of a failure for the breaker's last_error. */
export function failureSummary(f: UpstreamFailure): string {
  if (f.kind === "http") return `HTTP ${f.status}: ${f.message}`;
  if (f.kind === "timeout") return `timeout: ${f.message}`;
  return f.message;
}

/** The abort reason of an attempt or stream that ran out of time (fetchFailure reads it as a timeout). */
export function timeoutReason(): Error {
  const e = new Error("timeout");
  e.name = "TimeoutError";
  return e;
}

/** What a read of a stream's events threw, as a failure. */
export function streamFailure(e: unknown, signal: AbortSignal): UpstreamFailure {
  if (!signal.aborted && e instanceof UpstreamStreamError) return { ok: false, status: 502, kind: "protocol", message: e.message, code: e.code };
  return fetchFailure(e, signal, "upstream stream broke", 502);
}
