// The upstream client side every adapter shares: POST through the runtime's client, read a bounded answer body,
// and classify every way an upstream attempt fails (network, timeout, redirect, HTTP status, protocol) as an
// UpstreamFailure. Web standards only.
import { concatBytes } from "../bytes.ts";
import type { ProviderConfig } from "../config/schema.ts";
import type { CallOptions, UpstreamFailure, UpstreamFetch, UpstreamInit, UpstreamResponse } from "./types.ts";

/**
 * The runtime's own fetch (looked up per call), the adapters' default client. Redirects are not followed: fetch
 * would send the provider's key, its custom headers and (307/308) the prompt to wherever the Location points,
 * an internal address included. The 3xx comes back as the response, and postJson makes it a failure.
 */
export const globalFetch: UpstreamFetch = (url, init) => fetch(url, fetchInit(init));

/** The fetch options of an upstream request, redirects not followed; `extra`: a runtime's own options (its TLS). */
export function fetchInit(init: UpstreamInit, extra?: object): RequestInit {
  return { method: init.method, headers: init.headers, body: init.body, signal: init.signal, redirect: "manual", ...extra };
}

/**
 * POSTs JSON upstream through `send`; `opts.stream`: the answer will be read as a stream. Network errors,
 * aborts and redirects become an UpstreamFailure instead of a response.
 */
export async function postJson(
  send: UpstreamFetch,
  url: string,
  headers: Record<string, string>,
  body: unknown,
  opts: Pick<CallOptions, "signal" | "stream" | "maxBodyBytes">,
): Promise<UpstreamResponse | UpstreamFailure> {
  let res: UpstreamResponse;
  try {
    res = await send(url, { method: "POST", headers, body: JSON.stringify(body), signal: opts.signal, maxBodyBytes: opts.maxBodyBytes }, opts.stream);
  } catch (e) {
    return fetchFailure(e, opts.signal);
  }
  return redirectFailure(res, url) ?? res;
}

/**
 * A redirect (3xx) as a failure, its body dropped; null for any other answer. The reason names only the
 * target's origin: its path and query may carry anything.
 */
function redirectFailure(res: UpstreamResponse, url: string): UpstreamFailure | null {
  if (res.status < 300 || res.status > 399) return null;
  res.body?.cancel().catch(() => {});
  let message = `upstream answered HTTP ${res.status} without a valid location: not followed`;
  const location = res.headers.get("location");
  if (location) {
    try {
      const to = new URL(location, url);
      message = `redirect to ${to.origin === "null" ? to.protocol : to.origin} not followed`;
    } catch { /* keep the message without a location */ }
  }
  return { ok: false, status: res.status, kind: "http", message };
}

const TOO_LARGE = "upstream body too large";

/** A client's error for a non-streamed body past UpstreamInit.maxBodyBytes. */
export class UpstreamBodyTooLarge extends Error {
  constructor() {
    super(TOO_LARGE);
  }
}

/**
 * A failed fetch or upstream body read: a timeout or client abort when `signal` fired, else a body too large,
 * else a network failure (`what`: "connection failed", "upstream stream broke", ...) with the runtime's error
 * text, shortened.
 */
export function fetchFailure(e: unknown, signal: AbortSignal, what = "connection failed", status = 0): UpstreamFailure {
  if (signal.aborted) {
    const timeout = (signal.reason as Error | undefined)?.name === "TimeoutError";
    return timeout
      ? { ok: false, status: 504, kind: "timeout", message: "upstream timed out" }
      : { ok: false, status: 499, kind: "aborted", message: "request aborted" };
  }
  if (e instanceof UpstreamBodyTooLarge) return protocolFailure(TOO_LARGE);
  return { ok: false, status, kind: "connect", message: `${what}: ${networkErrorText(e)}` };
}

/** Bytes of an error (non-2xx) body read: plenty for any provider's error JSON; the rest is never read. */
export const ERROR_BODY_BYTES = 64 * 1024;

const utf8 = new TextDecoder();

/**
 * A body as text, whole or its first `max` bytes: past them the rest is cancelled, which drops the upstream
 * connection, and `cut` is true. A body the client already read (no stream) it has bounded itself.
 */
async function readText(res: UpstreamResponse, max: number): Promise<{ text: string; cut: boolean }> {
  if (!res.body) return { text: await res.text(), cut: false };
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { text: utf8.decode(concatBytes(chunks)), cut: false };
    if (n + value.length > max) {
      chunks.push(value.subarray(0, max - n));
      reader.cancel().catch(() => {});
      return { text: utf8.decode(concatBytes(chunks)), cut: true };
    }
    chunks.push(value);
    n += value.length;
  }
}

/**
 * The text of a non-streamed answer, or the failure that ended reading it: a body over `opts.maxBodyBytes`
 * (the upstream request is dropped), the timeout or the client's abort, a broken connection. The signal is
 * checked after the read too: a runtime may end a body cut short by the abort as if it were complete.
 */
async function bodyText(res: UpstreamResponse, opts: Pick<CallOptions, "signal" | "maxBodyBytes">): Promise<string | UpstreamFailure> {
  try {
    const { text, cut } = await readText(res, opts.maxBodyBytes);
    if (opts.signal.aborted) return fetchFailure(undefined, opts.signal);
    return cut ? protocolFailure(TOO_LARGE) : text;
  } catch (e) {
    return fetchFailure(e, opts.signal);
  }
}

/**
 * A non-streamed answer's text and its JSON (undefined when the text is not JSON), or the failure that ended
 * reading it (bodyText).
 */
export async function bodyJson(res: UpstreamResponse, opts: Pick<CallOptions, "signal" | "maxBodyBytes">): Promise<{ text: string; json: any } | UpstreamFailure> {
  const text = await bodyText(res, opts);
  if (typeof text !== "string") return text;
  try {
    return { text, json: JSON.parse(text) };
  } catch {
    return { text, json: undefined };
  }
}

/** The headers of a JSON request answered with `accept`: the config's own headers, and its api_key as a Bearer token. */
export function bearerHeaders(config: Pick<ProviderConfig, "headers" | "api_key">, accept: string): Record<string, string> {
  const headers: Record<string, string> = { "content-type": "application/json", accept, ...config.headers };
  if (config.api_key) headers.authorization = `Bearer ${config.api_key}`;
  return headers;
}

/**
 * A runtime's network error message without the upstream URL and the runtime's debugging hints (Bun:
 * `InvalidHTTPResponse fetching "http://...". For more information, pass \`verbose: true\` ...`), which mean
 * nothing to the router's client.
 */
export function networkErrorText(e: unknown): string {
  // Deno's fetch (and undici's) says only "fetch failed"; the reason, a certificate problem say, is in its cause
  const cause = (e as Error)?.cause;
  if ((e as Error)?.message === "fetch failed" && typeof (cause as Error)?.message === "string") e = cause;
  const m = (e as Error)?.message;
  if (typeof m !== "string") return String(e);
  return m
    .replace(/ fetching "[^"]*"/, "")
    .replace(/^error sending request for url \([^)]*\): /, "")
    .replace(/\.? *(For more information, pass `verbose: true`.*|Is the computer able to access the url\?)$/s, "")
    .trim() || "network error";
}

function parseRetryAfter(v: string | null): number | undefined {
  if (!v) return undefined;
  const n = Number(v);
  if (Number.isFinite(n)) return Math.max(0, n);
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, (t - Date.now()) / 1000);
}

const CONTEXT_RE = /context[_ ]length|context window|maximum context|prompt is too long|too many tokens|exceeds the context/i;

/**
 * Turns a non-2xx upstream response into an UpstreamFailure, reading at most ERROR_BODY_BYTES of its body.
 * `pick` extracts message/type/code from the provider's error JSON (each protocol nests it differently).
 */
export async function failureFromResponse(
  res: UpstreamResponse,
  pick: (json: any) => { message?: unknown; type?: unknown; code?: unknown; param?: unknown } | undefined,
): Promise<UpstreamFailure> {
  let text = "";
  try {
    text = (await readText(res, ERROR_BODY_BYTES)).text.slice(0, 4000);
  } catch { /* body unreadable: keep the status */ }
  let message = "", type: string | undefined, code: string | null = null, param: string | null = null;
  try {
    const p = pick(JSON.parse(text));
    if (p) {
      if (typeof p.message === "string") message = p.message;
      if (typeof p.type === "string") type = p.type;
      if (typeof p.code === "string" || typeof p.code === "number") code = String(p.code);
      if (typeof p.param === "string") param = p.param;
    }
  } catch { /* not JSON (an HTML error page, say) */ }
  if (!message) message = `upstream returned HTTP ${res.status}${text && !text.trimStart().startsWith("<") ? `: ${text.slice(0, 200)}` : ""}`;
  return {
    ok: false,
    status: res.status,
    kind: "http",
    message,
    type,
    code,
    param,
    retryAfter: parseRetryAfter(res.headers.get("retry-after")),
    contextExceeded: (res.status === 400 || res.status === 413) && (code === "context_length_exceeded" || CONTEXT_RE.test(message)),
  };
}

export function protocolFailure(message: string): UpstreamFailure {
  return { ok: false, status: 502, kind: "protocol", message };
}

/** The body of an answer to a stream request, or a protocol failure when it is not text/event-stream. */
export function sseBody(res: UpstreamResponse): ReadableStream<Uint8Array> | UpstreamFailure {
  const ct = res.headers.get("content-type");
  if (res.body && ct?.includes("text/event-stream")) return res.body;
  res.body?.cancel().catch(() => {});
  return protocolFailure(`upstream answered a stream request with ${ct ?? "no content type"}`);
}

/**
 * A request this provider's protocol cannot express (a remote image for Ollama, a tool call whose arguments are
 * not a JSON object, ...), thrown while translating it. Nothing is sent upstream: the failure is a 400 naming
 * the field, and the router moves on to a provider that may express it.
 */
export class Untranslatable extends Error {
  constructor(readonly param: string, message: string) {
    super(`${param}: ${message}`);
  }

  failure(): UpstreamFailure {
    return { ok: false, status: 400, kind: "http", type: "invalid_request_error", code: "invalid_value", param: this.param, message: this.message, unsupported: true };
  }
}

/**
 * Throws Untranslatable for a request that asks for log probabilities (chat `logprobs: true`, completions
 * `logprobs: <n>`) from a provider whose protocol cannot return them: answering `logprobs: null` would drop
 * what the client asked for without a word.
 */
export function refuseLogprobs(req: Record<string, unknown>, provider: string): void {
  if (req.logprobs != null && req.logprobs !== false) {
    throw new Untranslatable("logprobs", `the ${provider} provider cannot return log probabilities; send the request to an OpenAI-protocol provider (provider/model)`);
  }
}
