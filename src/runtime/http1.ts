// Why: fetch allocates a lot per slowly streamed response, setting off GCs that delay chunks (docs/decisions/0001).
// HTTP/1.1 over sockets for the runtime entrypoints' own upstream clients (bun-upstream.ts: every request, over TCP
// or TLS; deno-upstream.ts: every request to a plain-http upstream): the request bytes (http1-request.ts), the
// response parser (http1-parser.ts), a keep-alive connection pool, and the answers the adapters read (streamed, or
// buffered whole). Web-standard only: each entrypoint supplies its sockets as a Transport.
import { concatBytes } from "../bytes.ts";
import { type ChunkReader, DIRECT_CHUNKS } from "../providers/event-streams.ts";
import { ERROR_BODY_BYTES, UpstreamBodyTooLarge } from "../providers/upstream.ts";
import type { UpstreamFetch, UpstreamInit, UpstreamResponse } from "../providers/types.ts";
import { Head, ProtocolError, ResponseParser, type ResponseSink } from "./http1-parser.ts";
import { type Endpoint, endpointOf, requestBytes } from "./http1-request.ts";

export type { Endpoint };

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
