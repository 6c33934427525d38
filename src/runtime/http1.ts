// Why: fetch allocates a lot per slowly streamed response, setting off GCs that delay chunks (docs/decisions/0001).
// HTTP/1.1 over sockets for the runtime entrypoints' own upstream clients (bun-upstream.ts: every request, over TCP
// or TLS; deno-upstream.ts: every request to a plain-http upstream): the request head, an incremental response parser,
// a keep-alive connection pool, and the answers the adapters read (streamed, or buffered whole). Web-standard
// only: each entrypoint supplies its sockets as a Transport.
import { concatBytes } from "../bytes.ts";
import { type ChunkReader, DIRECT_CHUNKS } from "../providers/event-streams.ts";
import { ERROR_BODY_BYTES, UpstreamBodyTooLarge } from "../providers/upstream.ts";
import type { UpstreamFetch, UpstreamInit, UpstreamResponse } from "../providers/types.ts";

/** Where one upstream URL goes: parsed once per URL string (and CA), then reused for every request to it. */
export interface Endpoint {
  /** the connection pool's key: scheme, host, port and, for https, the CA certificates the connection trusts */
  readonly key: string;
  readonly hostname: string; // without IPv6 brackets
  readonly port: number;
  readonly path: string; // path and query
  /** https: the connection is TLS, verified against the default trust store plus `ca` (UpstreamInit.ca) */
  readonly tls: boolean;
  readonly ca: string | undefined;
  /** "POST <path> HTTP/1.1\r\nhost: ...\r\n": the fixed start of every request head */
  readonly start: string;
}

/** Endpoints by CA text (undefined: none), then URL. */
const endpoints = new Map<string | undefined, Map<string, Endpoint>>();
let endpointCount = 0;

/** The endpoint of an http or https URL (callers check the scheme) whose connections trust `ca` besides the default roots. */
function endpointOf(url: string, ca: string | undefined): Endpoint {
  return endpoints.get(ca)?.get(url) ?? newEndpoint(url, ca);
}

function newEndpoint(url: string, ca: string | undefined): Endpoint {
  // URLs and CA files come from config: this only bounds a pathological reload loop
  if (endpointCount++ > 1000) endpoints.clear(), endpointCount = 1;
  const u = new URL(url);
  const tls = u.protocol === "https:";
  const port = u.port ? Number(u.port) : tls ? 443 : 80;
  const hostname = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  const path = u.pathname + u.search;
  // a connection verified with one provider's CA file must never carry the request of a provider without it
  const key = `${u.protocol}//${hostname}:${port}${tls && ca ? `\n${ca}` : ""}`;
  const e = { key, hostname, port, path, tls, ca: tls ? ca : undefined, start: `POST ${path} HTTP/1.1\r\nhost: ${u.host}\r\n` };
  let byUrl = endpoints.get(ca);
  if (!byUrl) endpoints.set(ca, byUrl = new Map());
  byUrl.set(url, e);
  return e;
}

const encoder = new TextEncoder();

/**
 * The bytes of one request: head and body in one buffer, so one write sends both. No accept-encoding: the
 * upstream should answer uncompressed (one that compresses anyway is decoded, see CODINGS). Throws a TypeError
 * for a header value that would split the head (as fetch).
 */
function requestBytes(e: Endpoint, init: UpstreamInit): Uint8Array {
  const body = encoder.encode(init.body);
  let head = e.start;
  const headers = init.headers;
  for (const name in headers) head += `${name}: ${headerValue(name, headers[name])}\r\n`;
  head += `content-length: ${body.length}\r\n\r\n`;
  // head is ASCII unless a header value is not; encode it on its own for the exact byte length
  const h = encoder.encode(head);
  const out = new Uint8Array(h.length + body.length);
  out.set(h);
  out.set(body, h.length);
  return out;
}

/**
 * A header value as fetch sends it: leading and trailing whitespace removed (a key read from a file with its
 * newline); a line break or NUL inside is a TypeError.
 */
function headerValue(name: string, value: string): string {
  if (value.charCodeAt(0) <= 32 || value.charCodeAt(value.length - 1) <= 32) value = value.trim();
  if (value.includes("\n") || value.includes("\r") || value.includes("\0")) throw new TypeError(`invalid value for header ${name}`);
  return value;
}

/** The position after the blank line that ends a response head starting at `pos` (LF LF or LF CR LF), or 0. */
function headEnd(buf: Uint8Array, pos: number): number {
  for (let i = buf.indexOf(10, pos); i >= 0; i = buf.indexOf(10, i + 1)) {
    if (buf[i + 1] === 10) return i + 2;
    if (buf[i + 1] === 13 && buf[i + 2] === 10) return i + 3;
  }
  return 0;
}

/** A response that is not HTTP/1.x as we can read it. */
class ProtocolError extends TypeError {
  constructor(message: string) {
    super(`upstream sent an invalid response: ${message}`);
  }
}

const MAX_HEAD_BYTES = 64 * 1024;
/** A header name (RFC 9110 token). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const latin1 = new TextDecoder("latin1");

/** Status and headers of a response (names lower-cased; repeated headers joined with ", ", as fetch). */
class Head {
  readonly headers = new Map<string, string>();
  constructor(readonly status: number) {}
  get(name: string): string | null {
    return this.headers.get(name.toLowerCase()) ?? null;
  }
}

interface ResponseSink {
  head(head: Head): void;
  /** a piece of the body: a view into the fed buffer (kept by the sink only when the transport gave it away) */
  body(bytes: Uint8Array): void;
  /** the body is complete; `reusable`: the connection can carry another request */
  end(reusable: boolean): void;
}

const enum State { Head, Length, ChunkSize, ChunkData, ChunkDataEnd, Trailers, UntilClose, Done }

/**
 * Incremental HTTP/1.1 response parser: feed() it what the socket delivers, it calls the sink. Throws a
 * ProtocolError on a response it cannot read; eof() throws when the connection closed mid-response.
 */
class ResponseParser {
  #state = State.Head;
  #pending: Uint8Array | null = null; // a head or chunk-size line split across reads
  #remaining = 0; // body bytes left (Length) or bytes left in the current chunk
  #keepAlive = false;
  #started = false;

  constructor(readonly sink: ResponseSink) {}

  /** Whether any byte of the response has arrived. */
  get started(): boolean {
    return this.#started;
  }

  feed(buf: Uint8Array): void {
    if (buf.length) this.#started = true;
    if (this.#pending) {
      // a head or line split across reads (rare): join the kept part and scan the whole again
      const p = this.#pending;
      this.#pending = null;
      const joined = new Uint8Array(p.length + buf.length);
      joined.set(p);
      joined.set(buf, p.length);
      buf = joined;
    }
    let pos = 0;
    const n = buf.length;
    while (pos < n) {
      switch (this.#state) {
        case State.Head:
        case State.ChunkSize:
        case State.Trailers: {
          const end = this.#state === State.Head ? headEnd(buf, pos) : buf.indexOf(10, pos) + 1;
          if (end <= 0) {
            if (n - pos > MAX_HEAD_BYTES) throw new ProtocolError(this.#state === State.Head ? "response head too large" : "line too long");
            this.#pending = buf.slice(pos);
            return;
          }
          // the bound holds however the head arrived: in one read, or pieced together above
          if (this.#state === State.Head && end - pos > MAX_HEAD_BYTES) throw new ProtocolError("response head too large");
          const line = buf.subarray(pos, end);
          pos = end;
          if (this.#state === State.Head) {
            if (this.#head(line)) this.#finish(this.#keepAlive && pos === n);
          } else if (this.#state === State.ChunkSize) this.#chunkSize(line);
          else if (line[0] === 10 || (line[0] === 13 && line[1] === 10)) this.#finish(this.#keepAlive && pos === n);
          break;
        }
        case State.Length:
        case State.ChunkData: {
          const take = Math.min(this.#remaining, n - pos);
          this.sink.body(buf.subarray(pos, pos + take));
          pos += take;
          this.#remaining -= take;
          if (this.#remaining > 0) break;
          if (this.#state === State.Length) this.#finish(this.#keepAlive && pos === n);
          else this.#state = State.ChunkDataEnd;
          break;
        }
        case State.ChunkDataEnd: {
          // CRLF (or a bare LF) after the chunk's data
          const c = buf[pos++];
          if (c === 10) this.#state = State.ChunkSize;
          else if (c !== 13) throw new ProtocolError("chunk data longer than its size");
          break;
        }
        case State.UntilClose:
          this.sink.body(pos === 0 ? buf : buf.subarray(pos));
          return;
        case State.Done:
          // bytes after the response: the sink was told the connection is not reusable unless they came later
          return;
      }
    }
  }

  /** The connection closed. */
  eof(): void {
    if (this.#state === State.UntilClose) this.#finish(false);
    else if (this.#state !== State.Done) {
      throw new TypeError(this.#state === State.Head ? "upstream closed the connection before answering" : "upstream closed the connection before the response ended");
    }
  }

  /** Reads a head; true when the response it starts has no body. */
  #head(bytes: Uint8Array): boolean {
    const text = latin1.decode(bytes);
    const lines = text.split("\n");
    const m = /^HTTP\/1\.([01]) (\d{3})(?: |\r?$)/.exec(lines[0]);
    if (!m) throw new ProtocolError("not an HTTP/1.x status line");
    const status = Number(m[2]);
    if (status < 200) {
      if (status === 101) throw new ProtocolError("unexpected protocol switch");
      return false; // 100 Continue, 103 Early Hints: the real head follows
    }
    const head = new Head(status);
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i];
      if (line === "" || line === "\r") continue; // the blank end line
      // a line that is not `name: value` (no colon, space before it, a folded line) is refused, as fetch does
      const colon = line.indexOf(":");
      if (colon <= 0 || !TOKEN.test(line.slice(0, colon))) throw new ProtocolError("malformed header line");
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      const prev = head.headers.get(name);
      head.headers.set(name, prev === undefined ? value : `${prev}, ${value}`);
    }
    const conn = head.headers.get("connection")?.toLowerCase();
    this.#keepAlive = m[1] === "1" ? !conn?.includes("close") : !!conn?.includes("keep-alive");
    const te = head.headers.get("transfer-encoding");
    const cl = head.headers.get("content-length");
    let empty = false;
    if (status === 204 || status === 304) empty = true;
    else if (te !== undefined) {
      if (!te.toLowerCase().endsWith("chunked")) {
        this.#keepAlive = false;
        this.#state = State.UntilClose;
      } else this.#state = State.ChunkSize;
    } else if (cl !== undefined) {
      if (!/^\d+$/.test(cl)) throw new ProtocolError("bad content-length");
      this.#remaining = Number(cl);
      if (this.#remaining === 0) empty = true;
      else this.#state = State.Length;
    } else {
      this.#keepAlive = false;
      this.#state = State.UntilClose;
    }
    this.sink.head(head);
    return empty;
  }

  #chunkSize(line: Uint8Array): void {
    let size = 0, digits = 0;
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
      if (d < 0) break; // ";extension", CR, LF
      size = size * 16 + d;
      if (++digits > 12) throw new ProtocolError("chunk size too large");
    }
    if (digits === 0) throw new ProtocolError("bad chunk size");
    if (size === 0) this.#state = State.Trailers;
    else {
      this.#remaining = size;
      this.#state = State.ChunkData;
    }
  }

  #finish(reusable: boolean): void {
    this.#state = State.Done;
    this.sink.end(reusable);
  }
}

const utf8 = new TextDecoder();

/**
 * A complete answer, body in memory: what a non-streaming request resolves with. Not a fetch Response: Deno
 * registers every Response it constructs (and its Headers) for finalization, which keeps them alive through the
 * young-generation GCs; the adapters only need these members (UpstreamResponse).
 */
class BufferedResponse implements UpstreamResponse {
  readonly ok: boolean;
  readonly status: number;
  readonly body = null;
  constructor(readonly headers: Head, readonly bytes: Uint8Array) {
    this.status = headers.status;
    this.ok = this.status >= 200 && this.status < 300;
  }
  text(): Promise<string> {
    return Promise.resolve(utf8.decode(this.bytes));
  }
  json(): Promise<unknown> {
    return this.text().then(JSON.parse);
  }
}

/** A streaming answer: status and headers now, the body as it arrives. */
class StreamedResponse implements UpstreamResponse {
  readonly ok: boolean;
  readonly status: number;
  constructor(readonly headers: Head, readonly body: ReadableStream<Uint8Array>) {
    this.status = headers.status;
    this.ok = this.status >= 200 && this.status < 300;
  }
  text(): Promise<string> {
    return new Response(this.body).text();
  }
  json(): Promise<unknown> {
    return this.text().then(JSON.parse);
  }
}

// ---------- connections ----------

/** Any of these set: every request through fetch (for https URLs the runtimes read HTTPS_PROXY, some fall back to HTTP_PROXY). */
const PROXY_VARS = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];

/**
 * An entrypoint's upstream client: requests to http upstreams, and with `tls` to https ones too, over its sockets
 * (`connect`), streamed or not; the rest through `fetch`, the runtime's fetch applying UpstreamInit.ca. Everything
 * goes through fetch when a proxy is configured (fetch honours HTTP_PROXY / HTTPS_PROXY / ALL_PROXY / NO_PROXY, the
 * sockets do not) or FAILOVER_ROUTER_UPSTREAM_CLIENT=fetch. `env` is read at the first request, after main() has
 * loaded .env.
 */
export function socketUpstreamFetch(env: Record<string, string | undefined>, connect: Connect, opts: { tls: boolean }, fetch: UpstreamFetch): UpstreamFetch {
  let pool: Http1Pool | null | undefined; // null: fetch only
  return (url, init, stream) => {
    if (pool === undefined) {
      pool = env.FAILOVER_ROUTER_UPSTREAM_CLIENT !== "fetch" && !PROXY_VARS.some((k) => env[k]) ? new Http1Pool(connect) : null;
    }
    if (pool === null || !(url.startsWith("http:") || (opts.tls && url.startsWith("https:")))) return fetch(url, init, stream);
    return pool.request(endpointOf(url, init.ca), init, stream);
  };
}

/** Seconds a kept-alive connection may stay idle before we close it (servers commonly allow 5 s or more). */
export const IDLE_SECONDS = 4;
/** Idle connections kept per upstream host:port; more are closed when released. */
const MAX_IDLE = 512;
/**
 * Connections opened to one upstream at once. A burst beyond it waits for a connection to open or to come free:
 * a TLS handshake runs on the JavaScript thread, and one handshake per request of a burst slows every stream
 * down, which holds connections longer and opens yet more.
 */
export const MAX_CONNECTING = 16;
/** Bytes a stream may hold unread before its socket pauses (TCP then slows the upstream down). */
const STREAM_HIGH_WATER = 64 * 1024;
/**
 * How long a stream whose reader has all it needs (ChunkReader.done: the SSE [DONE] came) may take to end its
 * HTTP body, the rest discarded, before its connection is closed instead of kept for the next request.
 */
const DRAIN_MS = 1000;

/** A runtime's socket, as the pool drives it. */
export interface Transport {
  /** Sends all of `bytes`, queuing what the socket does not take at once. */
  write(bytes: Uint8Array): void;
  /** whether everything written has gone to the socket */
  readonly flushed: boolean;
  pause(): void;
  resume(): void;
  /** Closes the connection now; Conn.closed() follows. */
  close(): void;
  /**
   * In the idle pool (true) or carrying a request (false). An idle transport does not keep the process alive
   * and closes itself after IDLE_SECONDS.
   */
  idle(on: boolean): void;
}

/** Opens a connection to `e` whose events go to `conn`; rejects like fetch (see networkError). */
export type Connect = (e: Endpoint, conn: Conn) => Promise<Transport>;

/** One connection as the pool sees it; the runtime's transport reports its events here. */
export class Conn {
  transport: Transport | null = null;
  exchange: Exchange | null = null;
  /** carried a response before: a close before any byte of the next one means it went stale while idle */
  reused = false;
  isClosed = false;
  error: unknown;
  constructor(readonly key: string) {}

  /** Bytes read from the socket: a buffer of their own, which the body may keep. */
  data(bytes: Uint8Array): void {
    if (this.exchange) this.exchange.feed(bytes);
    else this.transport?.close(); // nothing was asked: a misbehaving upstream
  }

  /** The socket closed (`error`: why, when it failed). */
  closed(error?: unknown): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.error ??= error;
    this.exchange?.closed();
  }
}

/** Short reasons for the socket errors a client can act on (the raw messages carry the upstream address). */
const NET_ERRORS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ConnectionRefused: "connection refused",
  ECONNRESET: "connection reset by the upstream",
  ConnectionReset: "connection reset by the upstream",
  EPIPE: "connection closed by the upstream",
  BrokenPipe: "connection closed by the upstream",
  ETIMEDOUT: "connection timed out",
  TimedOut: "connection timed out",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host name lookup failed",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
};

/** A socket error as fetch reports it: a TypeError with a short reason (Node-style codes, Deno error names). */
function networkError(e: unknown): TypeError {
  if (e instanceof TypeError) return e;
  const code = (e as { code?: string })?.code, name = (e as Error)?.name;
  return new TypeError((code && NET_ERRORS[code]) || (name && NET_ERRORS[name]) || (e as Error)?.message || "network error");
}

/** Keep-alive connections per upstream host:port, and requests over them. */
class Http1Pool {
  readonly #idle = new Map<string, Conn[]>();
  /** connections being opened, per upstream */
  readonly #connecting = new Map<string, number>();
  /** requests waiting for a connection to open or come free, per upstream, first come first served */
  readonly #waiting = new Map<string, (() => void)[]>();
  constructor(readonly connect: Connect) {}

  /**
   * Sends a request to `e`. `stream`: resolves at the response head and the body follows (StreamedResponse);
   * otherwise resolves once the whole body is in (BufferedResponse).
   */
  async request(e: Endpoint, init: UpstreamInit, stream = true): Promise<UpstreamResponse> {
    const { signal } = init;
    if (signal.aborted) throw signal.reason;
    const bytes = requestBytes(e, init);
    let fresh = false;
    for (;;) {
      const conn = await this.#get(e, signal, !fresh);
      const res = await new Exchange(this, conn, signal, stream, init.maxBodyBytes).send(bytes);
      if (res) return res;
      fresh = true; // the kept-alive connection had closed while idle, before the request went out: a new one
    }
  }

  /** An idle connection (when `idleOk`), or a new one within MAX_CONNECTING, waiting for either when neither is at hand. */
  async #get(e: Endpoint, signal: AbortSignal, idleOk: boolean): Promise<Conn> {
    const key = e.key;
    for (;;) {
      const idle = idleOk ? this.#take(key) : null;
      if (idle) {
        this.#wakeIfRoom(key);
        return idle;
      }
      const n = this.#connecting.get(key) ?? 0;
      if (n < MAX_CONNECTING) {
        this.#connecting.set(key, n + 1);
        this.#wakeIfRoom(key);
        try {
          return await this.#open(e, signal);
        } finally {
          const left = this.#connecting.get(key)! - 1;
          if (left) this.#connecting.set(key, left);
          else this.#connecting.delete(key);
          this.#wake(key);
        }
      }
      await this.#wait(key, signal);
    }
  }

  /** Waits for #wake on `key`; rejects with the signal's reason if it fires first. */
  #wait(key: string, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let list = this.#waiting.get(key);
      if (!list) this.#waiting.set(key, list = []);
      const onAbort = () => {
        const l = this.#waiting.get(key);
        const i = l ? l.indexOf(wake) : -1;
        if (i >= 0) l!.splice(i, 1);
        if (l && !l.length) this.#waiting.delete(key);
        reject(signal.reason);
      };
      const wake = () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      signal.addEventListener("abort", onAbort, { once: true });
      list.push(wake);
    });
  }

  /** Lets the first request waiting on `key` try again: a connection came free, or one finished opening. */
  #wake(key: string): void {
    const list = this.#waiting.get(key);
    if (!list) return;
    const wake = list.shift()!;
    if (!list.length) this.#waiting.delete(key);
    wake();
  }

  /** A woken request that took an idle connection leaves the opening slot it was woken for to the next one. */
  #wakeIfRoom(key: string): void {
    if ((this.#connecting.get(key) ?? 0) < MAX_CONNECTING) this.#wake(key);
  }

  #take(key: string): Conn | null {
    const list = this.#idle.get(key);
    if (!list) return null;
    for (let conn = list.pop(); conn; conn = list.pop()) {
      if (!conn.isClosed && conn.transport) {
        conn.transport.idle(false);
        return conn;
      }
    }
    return null;
  }

  /** A new connection, given up when `signal` fires first (an unreachable host can take minutes to refuse). */
  async #open(e: Endpoint, signal: AbortSignal): Promise<Conn> {
    const conn = new Conn(e.key);
    const connecting = this.connect(e, conn);
    let onAbort!: () => void;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
    });
    let t: Transport;
    try {
      t = await Promise.race([connecting, aborted]);
    } catch (err) {
      connecting.then((late) => late.close(), () => {}); // a connection that completes after the abort is closed
      throw signal.aborted ? signal.reason : networkError(conn.error ?? err);
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
    conn.transport = t;
    return conn;
  }

  /** The response on `conn` is complete: keep the connection for the next request, or close it. */
  release(conn: Conn, reusable: boolean): void {
    conn.exchange = null;
    const t = conn.transport;
    if (!t || conn.isClosed) return;
    let list = this.#idle.get(conn.key);
    if (!reusable || !t.flushed || (list && list.length >= MAX_IDLE)) {
      t.close();
      return;
    }
    if (!list) this.#idle.set(conn.key, list = []);
    conn.reused = true;
    t.idle(true);
    list.push(conn);
    this.#wake(conn.key);
  }
}

/**
 * Content codings an upstream may use though the request offered none, as DecompressionStream formats (Bun and
 * Deno both have these). Anything else fails the request, naming the coding.
 */
const CODINGS: Record<string, string> = { gzip: "gzip", "x-gzip": "gzip", deflate: "deflate", br: "brotli" };

type Decoder = ReadableWritablePair<Uint8Array, Uint8Array>;

/** A decoder for a content-encoding header's value; null when there is none for it. */
function decoderFor(coding: string): Decoder | null {
  const format = CODINGS[coding.trim().toLowerCase()];
  if (!format) return null;
  try {
    return new DecompressionStream(format as CompressionFormat) as unknown as Decoder;
  } catch {
    return null; // a runtime without this format
  }
}

/**
 * One request and its response on one connection: the parser's sink, and for a stream the body's ChunkReader
 * (chunks queue here until read; past STREAM_HIGH_WATER unread bytes the socket pauses). Not streamed: the
 * chunks queue until the body is complete, at most `maxBodyBytes` of a success and ERROR_BODY_BYTES of any other
 * answer; a compressed answer is handed out as a stream anyway, so that its reader bounds the decoded size.
 */
class Exchange implements ResponseSink, ChunkReader {
  readonly #parser = new ResponseParser(this);
  #queue: Uint8Array[] = [];
  #queued = 0;
  #paused = false;
  #waiting: { resolve: (c: Uint8Array | null) => void; reject: (e: unknown) => void } | null = null;
  #bodyEnd: { error: unknown } | null = null; // error null: complete
  #settled = false; // the response promise resolved or rejected
  #finished = false; // the exchange is over (complete, failed or cancelled)
  #written = false; // the request went out on the connection: the upstream may have seen it
  #resolve!: (v: UpstreamResponse | null) => void;
  #reject!: (e: unknown) => void;
  #head: Head | null = null; // not streamed: the head, until the body is complete
  #draining = false; // the reader is done (done()): the rest of the body is discarded
  #drainTimer: ReturnType<typeof setTimeout> | undefined;
  #stream: boolean;
  #limit = 0; // not streamed: the most body bytes held

  constructor(readonly pool: Http1Pool, readonly conn: Conn, readonly signal: AbortSignal, stream: boolean, readonly maxBodyBytes: number) {
    this.#stream = stream;
  }

  /** Writes the request; resolves with the response, or null when the connection had closed before it (retry). */
  send(bytes: Uint8Array): Promise<UpstreamResponse | null> {
    const conn = this.conn;
    conn.exchange = this;
    const p = new Promise<UpstreamResponse | null>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.signal.addEventListener("abort", this, { once: true });
    if (conn.isClosed) this.closed();
    else {
      this.#written = true;
      conn.transport!.write(bytes);
    }
    return p;
  }

  feed(bytes: Uint8Array): void {
    try {
      this.#parser.feed(bytes);
    } catch (e) {
      this.#fail(e);
    }
  }

  /** The socket closed. */
  closed(): void {
    if (this.#finished) return;
    if (!this.#written && this.conn.reused && !this.signal.aborted) {
      this.#end();
      this.#settled = true;
      this.#resolve(null); // a kept-alive connection that closed while idle: the request never left
      return;
    }
    // A connection that closes once the request went out is a failed attempt, whatever it carried before: the
    // upstream may have seen (and billed) the request, so the failover loop decides on another one and the
    // request log, the breaker and the stats count it (not a silent second request here).
    try {
      this.#parser.eof();
    } catch (e) {
      const err = this.conn.error;
      this.#fail(err ? networkError(err) : e);
    }
  }

  /** The signal fired (an EventListener object: no closure per request). */
  handleEvent(): void {
    this.#fail(this.signal.reason);
  }

  head(head: Head): void {
    const coding = head.get("content-encoding");
    let decoder: Decoder | null = null;
    if (coding !== null && coding.toLowerCase() !== "identity") {
      decoder = decoderFor(coding);
      if (!decoder) return this.#fail(new ProtocolError(`content-encoding ${coding} is not supported`));
      this.#stream = true;
    }
    if (!this.#stream) {
      this.#head = head;
      this.#limit = head.status >= 200 && head.status < 300 ? this.maxBodyBytes : ERROR_BODY_BYTES;
      return;
    }
    this.#settled = true;
    this.#resolve(new StreamedResponse(head, decoder ? this.#bodyStream().pipeThrough(decoder) : this.#bodyStream()));
  }

  body(bytes: Uint8Array): void {
    if (this.#draining || this.#finished) return;
    if (!this.#stream) {
      this.#queue.push(bytes);
      this.#queued += bytes.length;
      if (this.#queued > this.#limit) this.#overLimit();
      return;
    }
    if (this.#waiting) {
      const w = this.#waiting;
      this.#waiting = null;
      w.resolve(bytes);
      return;
    }
    this.#queue.push(bytes);
    this.#queued += bytes.length;
    if (this.#queued > STREAM_HIGH_WATER && !this.#paused) {
      this.#paused = true;
      this.conn.transport?.pause();
    }
  }

  end(reusable: boolean): void {
    if (this.#finished) return; // over its limit, or failed, earlier in the same read
    this.#end();
    if (this.#stream) this.#endBody(null);
    else {
      this.#settled = true;
      const q = this.#queue;
      this.#resolve(new BufferedResponse(this.#head!, q.length === 1 ? q[0] : concatBytes(q)));
      this.#head = null;
      this.#queue = [];
    }
    this.pool.release(this.conn, reusable);
  }

  /**
   * A body not streamed grew past its limit: a success fails (UpstreamBodyTooLarge); an error answer resolves
   * with its first ERROR_BODY_BYTES, enough for its message. The connection closes: the rest is never read.
   */
  #overLimit(): void {
    const head = this.#head!;
    if (head.status >= 200 && head.status < 300) return this.#fail(new UpstreamBodyTooLarge());
    this.#settled = true;
    this.#resolve(new BufferedResponse(head, concatBytes(this.#queue).subarray(0, this.#limit)));
    this.#head = null;
    this.#queue = [];
    this.#fail(null);
  }

  /** The next chunk of the body, or null at its end (ChunkReader.read). */
  read(): Promise<Uint8Array | null> {
    if (this.#queue.length) {
      const c = this.#queue.shift()!;
      this.#queued -= c.length;
      if (this.#paused && this.#queued <= STREAM_HIGH_WATER) {
        this.#paused = false;
        this.conn.transport?.resume();
      }
      return Promise.resolve(c);
    }
    const e = this.#bodyEnd;
    if (e) return e.error === null ? Promise.resolve(null) : Promise.reject(e.error);
    return new Promise((resolve, reject) => void (this.#waiting = { resolve, reject }));
  }

  /** The consumer stopped reading (ChunkReader.cancel): the connection closes unless the body was complete. */
  cancel(): void {
    this.#queue = [];
    this.#fail(null);
  }

  /**
   * The consumer has all it needs (ChunkReader.done): the rest of the body is discarded as it comes, and the
   * connection goes back to the pool if the body ends within DRAIN_MS; otherwise it closes.
   */
  done(): void {
    this.#queue = [];
    this.#queued = 0;
    if (this.#finished) return;
    this.#draining = true;
    if (this.#paused) {
      this.#paused = false;
      this.conn.transport?.resume();
    }
    this.#drainTimer = setTimeout(() => this.#fail(null), DRAIN_MS);
  }

  /** The body: a ReadableStream that also hands its chunks out directly (DIRECT_CHUNKS). */
  #bodyStream(): ReadableStream<Uint8Array> {
    const chunks: ChunkReader = this;
    const body = new ReadableStream<Uint8Array>({
      pull: (c) => chunks.read().then((v) => v === null ? c.close() : c.enqueue(v)),
      cancel: () => chunks.cancel(),
    }, { highWaterMark: 0 });
    return Object.assign(body, { [DIRECT_CHUNKS]: () => chunks });
  }

  /** The body ended: error null when complete; otherwise its reader gets the error after the queued chunks. */
  #endBody(error: unknown): void {
    if (this.#bodyEnd) return;
    this.#bodyEnd = { error };
    const w = this.#waiting;
    if (!w) return;
    this.#waiting = null;
    if (error === null) w.resolve(null);
    else w.reject(error);
  }

  #end(): void {
    this.#finished = true;
    this.signal.removeEventListener("abort", this);
    if (this.#drainTimer !== undefined) clearTimeout(this.#drainTimer);
  }

  /** Ends the exchange with `error` (null: the consumer cancelled) and closes the connection. */
  #fail(error: unknown): void {
    if (this.#finished) return;
    this.#end();
    this.conn.exchange = null;
    this.conn.transport?.close();
    if (!this.#settled) {
      this.#settled = true;
      this.#reject(error);
    } else this.#endBody(error ?? new TypeError("stream cancelled"));
  }
}
