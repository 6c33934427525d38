// Helpers every adapter uses: upstream fetch with failure classification, SSE / NDJSON readers,
// OpenAI chunk builders and token estimates. Web standards only.
import type { CallOptions, ChatRequest, StreamEvent, StreamEvents, TextRequest, UpstreamFailure, UpstreamFetch, UpstreamResponse, Usage } from "./types.ts";
import { UpstreamStreamError } from "./types.ts";

export const encoder = new TextEncoder();

/** The chunks in one new buffer. */
export function concatBytes(chunks: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const c of chunks) n += c.byteLength;
  const out = new Uint8Array(n);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

/**
 * The runtime's own fetch (looked up per call), the adapters' default client. Redirects are not followed: fetch
 * would send the provider's key, its custom headers and (307/308) the prompt to wherever the Location points,
 * an internal address included. The 3xx comes back as the response, and postJson makes it a failure.
 */
export const globalFetch: UpstreamFetch = (url, init) =>
  fetch(url, { method: init.method, headers: init.headers, body: init.body, signal: init.signal, redirect: "manual" });

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
export function redirectFailure(res: UpstreamResponse, url: string): UpstreamFailure | null {
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
export async function bodyText(res: UpstreamResponse, opts: Pick<CallOptions, "signal" | "maxBodyBytes">): Promise<string | UpstreamFailure> {
  try {
    const { text, cut } = await readText(res, opts.maxBodyBytes);
    if (opts.signal.aborted) return fetchFailure(undefined, opts.signal);
    return cut ? protocolFailure(TOO_LARGE) : text;
  } catch (e) {
    return fetchFailure(e, opts.signal);
  }
}

/**
 * A runtime's network error message without the upstream URL and the runtime's debugging hints (Bun:
 * `InvalidHTTPResponse fetching "http://...". For more information, pass \`verbose: true\` ...`), which mean
 * nothing to the router's client.
 */
export function networkErrorText(e: unknown): string {
  const m = (e as Error)?.message;
  if (typeof m !== "string") return String(e);
  return m
    .replace(/ fetching "[^"]*"/, "")
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

/** Bytes of an upstream body read into one reused buffer where the stream allows it (see chunkReader). */
export interface ChunkReader {
  /** the next chunk (valid only until the next read), or null at the end of the body */
  read(): Promise<Uint8Array | null>;
  cancel(): void;
  /**
   * The consumer has all it needs, though the body may not have ended (an SSE stream's [DONE] can come before
   * the end of the HTTP body): the rest may be discarded, and a client that can keeps the connection if the body
   * ends soon. Without it, cancel().
   */
  done?(): void;
}

/**
 * A body from a runtime entrypoint's own stream client (src/runtime/http1.ts) can hand out its chunks
 * directly: `body[DIRECT_CHUNKS]()` returns a ChunkReader, which saves a stream reader's promise and result
 * object per read. Such a body is still a ReadableStream for everyone else.
 */
export const DIRECT_CHUNKS: unique symbol = Symbol.for("failover-router.direct-chunks") as never;

/** Size of the reused read buffer: bigger reads just take more than one read. */
export const READ_BUFFER_BYTES = 8192;

/**
 * Reads a body chunk by chunk. Where the body is a byte stream (Deno's fetch bodies) a BYOB reader fills one
 * buffer of READ_BUFFER_BYTES per body, reused for every read: the default reader of such a stream allocates a
 * fresh 64 KiB buffer per read (Deno's autoAllocateChunkSize), which for a stream of small SSE events means
 * 64 KiB of garbage per event and 64 KiB held by every open stream's pending read. Other streams (Bun's fetch
 * bodies are not byte streams) use a default reader. A chunk is only valid until the next read(): decode or
 * copy it first.
 */
export function chunkReader(body: ReadableStream<Uint8Array>): ChunkReader {
  const direct = (body as { [DIRECT_CHUNKS]?: () => ChunkReader })[DIRECT_CHUNKS];
  if (direct) return direct.call(body);
  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = body.getReader({ mode: "byob" });
  } catch { /* not a byte stream */ }
  if (byob) {
    const reader = byob;
    let buf = new Uint8Array(READ_BUFFER_BYTES);
    return {
      async read() {
        const { done, value } = await reader.read(buf);
        if (done || !value) return null;
        // the read transferred the buffer: the next read reuses its memory through the new view's buffer
        buf = new Uint8Array(value.buffer);
        return value;
      },
      cancel: () => void reader.cancel().catch(() => {}),
    };
  }
  const reader = body.getReader();
  return {
    async read() {
      const { done, value } = await reader.read();
      return done ? null : value;
    },
    cancel: () => void reader.cancel().catch(() => {}),
  };
}

const STREAM_DECODE: TextDecodeOptions = { stream: true };
const NO_BYTES = new Uint8Array(0);

/** The failure of a stream that sends one event (or line) larger than the router holds. */
function tooLarge(max: number): UpstreamStreamError {
  return new UpstreamStreamError(`upstream stream event larger than ${max} bytes`);
}

/**
 * Cuts a byte stream into lines (LF or CRLF), decoded as UTF-8. A line that a read cuts waits as bytes in one
 * buffer of at most `max` bytes, and each read is decoded once from its first line to its last newline: a line
 * that never ends costs bounded memory and time linear in its length, however it is cut into reads (a byte is
 * searched for a newline at most twice as bytes and once as text, never again with each read). A line longer
 * than `max` fails the stream (UpstreamStreamError); a complete line is measured decoded, in UTF-16 units,
 * never more than its bytes.
 */
class LineCutter {
  readonly #decoder = new TextDecoder();
  #part = NO_BYTES;
  #len = 0; // bytes of #part holding the start of a line

  constructor(readonly max: number) {}

  /** Calls `line(text, start, end)` for each line `chunk` completes, without its CR / LF. */
  push(chunk: Uint8Array, line: (text: string, start: number, end: number) => void): void {
    const last = chunk.lastIndexOf(10);
    if (last < 0) return this.#keep(chunk, 0);
    const upTo = last === chunk.length - 1 ? chunk : chunk.subarray(0, last + 1);
    let s: string;
    if (this.#len) {
      if (this.#len + chunk.indexOf(10) > this.max) throw tooLarge(this.max);
      // the buffered start may end inside a character: decode it in stream mode, the rest flushes it
      s = this.#decoder.decode(this.#part.subarray(0, this.#len), STREAM_DECODE) + this.#decoder.decode(upTo);
      this.#len = 0;
      if (this.#part.byteLength > READ_BUFFER_BYTES) this.#part = NO_BYTES; // do not hold a long line's buffer
    } else s = this.#decoder.decode(upTo);
    let pos = 0, nl: number;
    while ((nl = s.indexOf("\n", pos)) >= 0) {
      if (nl - pos > this.max) throw tooLarge(this.max);
      line(s, pos, nl > pos && s.charCodeAt(nl - 1) === 13 ? nl - 1 : nl);
      pos = nl + 1;
    }
    if (last < chunk.length - 1) this.#keep(chunk, last + 1);
  }

  /** The body ended: a last line without a newline still counts. */
  end(line: (text: string, start: number, end: number) => void): void {
    if (!this.#len) return;
    const s = this.#decoder.decode(this.#part.subarray(0, this.#len));
    this.#len = 0;
    line(s, 0, s.charCodeAt(s.length - 1) === 13 ? s.length - 1 : s.length);
  }

  /** Appends chunk[start..] to the unterminated line. */
  #keep(chunk: Uint8Array, start: number): void {
    const n = this.#len + chunk.length - start;
    if (n > this.max) throw tooLarge(this.max);
    if (n > this.#part.byteLength) {
      // doubling keeps the copies linear in the line's length when it arrives in many small reads
      const grown = new Uint8Array(Math.min(this.max, Math.max(n, 2 * this.#part.byteLength, 256)));
      grown.set(this.#part.subarray(0, this.#len));
      this.#part = grown;
    }
    this.#part.set(start ? chunk.subarray(start) : chunk, this.#len);
    this.#len = n;
  }
}

/**
 * Splits a byte stream into lines (LF or CRLF), decoded as UTF-8; a line longer than `maxLineBytes` fails the
 * stream (UpstreamStreamError).
 */
export async function* lines(body: ReadableStream<Uint8Array>, maxLineBytes: number): AsyncGenerator<string, void, undefined> {
  const reader = chunkReader(body);
  const cutter = new LineCutter(maxLineBytes);
  const out: string[] = [];
  const line = (s: string, start: number, end: number) => void out.push(s.slice(start, end));
  try {
    while (true) {
      const value = await reader.read();
      if (value === null) break;
      cutter.push(value, line);
      for (let i = 0; i < out.length; i++) yield out[i];
      out.length = 0;
    }
    cutter.end(line);
    if (out.length) yield out[0];
  } finally {
    reader.cancel();
  }
}

export interface SseEvent {
  event: string;
  data: string;
}

/**
 * Incremental text/event-stream parser: push() the body's bytes as they arrive, get the complete events (event
 * name defaults to "message"; comments and unknown fields are ignored; LF or CRLF line ends). Synchronous and
 * allocation-light, so an adapter can parse inside its own read loop instead of stacking generators. One line,
 * or the data of one event, larger than `maxEventBytes` fails the stream (UpstreamStreamError).
 */
export class SseParser {
  readonly #cutter: LineCutter;
  #out: SseEvent[] = [];
  #event = "";
  #data: string | null = null;
  #more: string[] | null = null;
  #dataLength = 0;

  constructor(readonly maxEventBytes: number) {
    this.#cutter = new LineCutter(maxEventBytes);
  }

  /** Parses `chunk` (the next bytes of the body) and appends every event it completes to `out`. */
  push(chunk: Uint8Array, out: SseEvent[]): void {
    this.#out = out;
    this.#cutter.push(chunk, this.#line);
  }

  /** The body ended: a last unterminated line and a pending event still count. */
  end(out: SseEvent[]): void {
    this.#out = out;
    this.#cutter.end(this.#line);
    this.#dispatch();
  }

  readonly #line = (s: string, start: number, end: number): void => {
    if (start === end) this.#dispatch();
    else if (s.startsWith("data:", start)) {
      const v = s.charCodeAt(start + 5) === 32 ? start + 6 : start + 5;
      this.#dataLength += end - v;
      if (this.#dataLength > this.maxEventBytes) throw tooLarge(this.maxEventBytes);
      const d = s.slice(v, end);
      if (this.#data === null) this.#data = d;
      else (this.#more ??= []).push(d);
    } else if (s.startsWith("event:", start)) {
      this.#event = s.slice(start + 6, end).trim();
    } // comments (":") and other fields are ignored
  };

  #dispatch(): void {
    if (this.#data !== null) {
      const data = this.#more ? [this.#data, ...this.#more].join("\n") : this.#data;
      this.#out.push({ event: this.#event || "message", data });
    }
    this.#event = "";
    this.#data = null;
    this.#more = null;
    this.#dataLength = 0;
  }
}

/**
 * Reads a text/event-stream body one upstream read at a time, without a generator of its own (a hot-path
 * caller such as the OpenAI passthrough loops over it inside its own generator).
 */
export class SseReader {
  readonly #reader: ChunkReader;
  readonly #parser: SseParser;
  readonly #out: SseEvent[] = [];
  #ended = false;

  /** `maxEventBytes`: see SseParser. */
  constructor(body: ReadableStream<Uint8Array>, maxEventBytes: number) {
    this.#reader = chunkReader(body);
    this.#parser = new SseParser(maxEventBytes);
  }

  /**
   * The events completed by the next read (possibly none; the array is reused, so consume it before the next
   * call), or null once the body has ended and its last events were returned.
   */
  read(): Promise<SseEvent[] | null> {
    if (this.#ended) return Promise.resolve(null);
    // a then() with a callback made once, not an async function: one promise per read fewer on the chunk path
    return this.#reader.read().then(this.#parse);
  }

  readonly #parse = (value: Uint8Array | null): SseEvent[] => {
    this.#out.length = 0;
    if (value === null) {
      this.#ended = true;
      this.#parser.end(this.#out);
    } else this.#parser.push(value, this.#out);
    return this.#out;
  };

  cancel(): void {
    this.#reader.cancel();
    this.#out.length = 0;
  }

  /** The consumer has read all it needs (an SSE stream's [DONE]): see ChunkReader.done. */
  done(): void {
    if (this.#reader.done) this.#reader.done();
    else this.#reader.cancel();
    this.#out.length = 0;
  }
}

/** Parses a text/event-stream body into events (event name defaults to "message"); `maxEventBytes`: see SseParser. */
export async function* sseEvents(body: ReadableStream<Uint8Array>, maxEventBytes: number): AsyncGenerator<SseEvent, void, undefined> {
  const sse = new SseReader(body, maxEventBytes);
  try {
    for (let events = await sse.read(); events !== null; events = await sse.read()) {
      for (let i = 0; i < events.length; i++) yield events[i];
    }
  } finally {
    sse.cancel();
  }
}

/**
 * An adapter's event generator as StreamEvents, one event per read (for the adapters that translate another
 * protocol event by event; the OpenAI passthrough implements StreamEvents itself, one upstream read per read).
 */
export function generatorEvents(gen: AsyncGenerator<StreamEvent, void, undefined>): StreamEvents {
  const one: StreamEvent[] = [];
  const step = (r: IteratorResult<StreamEvent, void>): StreamEvent[] | null => {
    if (r.done) return null;
    one[0] = r.value;
    return one;
  };
  return {
    read: () => gen.next().then(step),
    cancel: () => void gen.return(undefined).catch(() => {}),
  };
}

export function usageOf(prompt: number, completion: number, estimated?: boolean): Usage {
  const u: Usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  if (estimated) u.estimated = true;
  return u;
}

/** Rough token estimate (about 4 characters per token) for providers that report no usage. */
export function estimateTokens(text: string): number {
  return estimateTokensForLength(text.length);
}

/** The same estimate from a character count (for text that was counted, not kept). */
export function estimateTokensForLength(chars: number): number {
  return chars > 0 ? Math.ceil(chars / 4) : 0;
}

export function chatPromptText(req: ChatRequest): string {
  let s = "";
  for (const m of req.messages) {
    if (typeof m.content === "string") s += m.content + "\n";
    else if (Array.isArray(m.content)) for (const p of m.content) if (p.type === "text") s += (p as { text: string }).text + "\n";
  }
  return s;
}

export function randomId(prefix: string): string {
  return prefix + crypto.randomUUID().replace(/-/g, "").slice(0, 24);
}

export function stopList(stop: string | string[] | null | undefined): string[] | undefined {
  if (stop == null) return undefined;
  return typeof stop === "string" ? [stop] : stop.length ? stop : undefined;
}

/** The text prompt of a legacy completions request as one string. */
export function promptOf(req: TextRequest): string {
  return Array.isArray(req.prompt) ? req.prompt.join("") : req.prompt;
}

/** A legacy completions request turned into a one-message chat request, for chat-only providers. */
export function textToChat(req: TextRequest): ChatRequest {
  const { prompt: _p, ...rest } = req;
  return { ...rest, messages: [{ role: "user", content: promptOf(req) }] } as ChatRequest;
}

export type FinishReason = "stop" | "length" | "tool_calls" | "content_filter" | null;

/**
 * Builds OpenAI-shaped responses and chunks for adapters that translate another protocol, in either the
 * chat (chat.completion[.chunk]) or the legacy text (text_completion) shape.
 */
export class OpenAIShaper {
  readonly created = Math.floor(Date.now() / 1000);
  constructor(readonly kind: "chat" | "text", readonly id: string, readonly model: string) {}

  chunk(delta: Record<string, unknown>, finish: FinishReason = null): string {
    if (this.kind === "text") {
      return JSON.stringify({
        id: this.id, object: "text_completion", created: this.created, model: this.model,
        choices: [{ index: 0, text: typeof delta.content === "string" ? delta.content : "", logprobs: null, finish_reason: finish }],
      });
    }
    return JSON.stringify({
      id: this.id, object: "chat.completion.chunk", created: this.created, model: this.model,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    });
  }

  usageChunk(usage: Usage): string {
    const { estimated: _e, ...u } = usage;
    return JSON.stringify({
      id: this.id, object: this.kind === "text" ? "text_completion" : "chat.completion.chunk",
      created: this.created, model: this.model, choices: [], usage: u,
    });
  }

  /** A complete (non-streamed) response. */
  response(content: string | null, finish: FinishReason, usage: Usage, toolCalls?: unknown[]): string {
    const { estimated: _e, ...u } = usage;
    if (this.kind === "text") {
      return JSON.stringify({
        id: this.id, object: "text_completion", created: this.created, model: this.model,
        choices: [{ index: 0, text: content ?? "", logprobs: null, finish_reason: finish }], usage: u,
      });
    }
    const message: Record<string, unknown> = { role: "assistant", content, refusal: null };
    if (toolCalls && toolCalls.length) message.tool_calls = toolCalls;
    return JSON.stringify({
      id: this.id, object: "chat.completion", created: this.created, model: this.model,
      choices: [{ index: 0, message, logprobs: null, finish_reason: finish }], usage: u,
    });
  }

  /** Events for the end of a stream: the finish chunk and, if asked, the usage chunk. */
  *finish(finish: FinishReason, usage: Usage, includeUsage: boolean): Generator<StreamEvent> {
    yield { data: this.chunk({}, finish), content: true };
    yield { data: includeUsage ? this.usageChunk(usage) : null, content: false, usage };
  }
}
