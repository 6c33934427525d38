// The Deno entrypoint's upstream client. For plain-http upstreams, non-streaming requests go through node:http
// and streams over Deno.connect sockets; everything else through Deno's fetch.
//
// Why: Deno's fetch keeps objects of every request alive until the next full GC, so each young-generation
// scavenge copies megabytes of them: at 1,000 req/s the router paused 3-6 ms every half second (p99 +3.7 ms and
// more; --v8-flags=--trace-gc-nvp, "promoted" about 2.2 MB per scavenge). A bare proxy through node:http
// promotes about 55 KB per scavenge; the router allocates a quarter as much per request, its p99 drops by a
// third to two thirds and its CPU per request by 10-20% (docs/benchmarks.md, "Deno's upstream client").
// Streams go over Deno.connect sockets (HTTP/1.1, http1.ts): Deno's fetch allocates about 190 KB per slowly
// streamed response, and the GCs that sets off hold chunks back (docs/benchmarks.md, "Stream clients");
// node:http on Deno hands stream chunks on later still (per-chunk p99 +2.2 ms against +0.7 ms in a bare proxy).
// https upstreams stay on fetch for HTTP/2 and Deno's certificate store, and so does every request when an
// HTTP proxy is configured (fetch honours HTTP_PROXY / ALL_PROXY / NO_PROXY).
// FAILOVER_ROUTER_UPSTREAM_CLIENT=fetch sends everything through fetch.
import { Buffer } from "node:buffer";
import http from "node:http";
import type { UpstreamFetch, UpstreamInit, UpstreamResponse } from "../providers/types.ts";
import { type Conn, type Endpoint, endpointOf, headerValue, IDLE_SECONDS, networkError, ownClientsAllowed, StreamPool, type Transport } from "./http1.ts";

/**
 * The upstream client for the Deno entrypoint. `env` is read at the first request, after main() has loaded
 * .env into it.
 */
export function denoUpstreamFetch(env: Record<string, string | undefined>): UpstreamFetch {
  // null: a proxy is configured (or fetch asked for): fetch only
  let clients: { agent: http.Agent; streams: StreamPool } | null | undefined;
  return (url, init, stream) => {
    if (clients === undefined) {
      clients = ownClientsAllowed(env) ? { agent: new http.Agent({ keepAlive: true }), streams: new StreamPool(denoConnect) } : null;
    }
    if (clients === null || !url.startsWith("http:")) return fetch(url, init);
    return stream ? clients.streams.request(endpointOf(url), init) : nodeHttpPost(clients.agent, url, init);
  };
}

/** What the stream client uses of Deno's API (typed here: the Bun-typed tsc pass checks this file too). */
interface DenoNet {
  connect(o: { hostname: string; port: number }): Promise<{
    read(buf: Uint8Array): Promise<number | null>;
    write(bytes: Uint8Array): Promise<number>;
    close(): void;
    setNoDelay(on: boolean): void;
    ref(): void;
    unref(): void;
  }>;
  unrefTimer(id: number): void;
}
const Deno = (globalThis as unknown as { Deno: DenoNet }).Deno;

/** Bytes read per socket read; each chunk handed on is copied out at its own size. */
const READ_BYTES = 4 * 1024;

/** A Deno.connect connection as a Transport: one read loop per connection, for as long as it is open. */
async function denoConnect(e: Endpoint, conn: Conn): Promise<Transport> {
  const c = await Deno.connect({ hostname: e.hostname, port: e.port });
  c.setNoDelay(true);
  let closed = false;
  let writing: Promise<void> = Promise.resolve();
  let pending = 0; // writes not done yet
  // set while the body's reader is behind (pause/resume); an object so the read loop sees the closures' changes
  const flow: { paused: { promise: Promise<void>; resolve(): void } | null } = { paused: null };
  let idleTimer: number | undefined;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      c.close(); // the pending read fails, and the loop reports the close
    } catch { /* already closed */ }
  };
  (async () => {
    const buf = new Uint8Array(READ_BYTES);
    let error: unknown;
    try {
      for (;;) {
        if (flow.paused) await flow.paused.promise;
        const n = await c.read(buf);
        if (n === null) break;
        conn.data(buf.slice(0, n));
      }
    } catch (err) {
      if (!closed) error = err;
    }
    close();
    clearTimeout(idleTimer);
    conn.closed(error);
  })();
  return {
    write(bytes) {
      pending++;
      writing = writing.then(async () => {
        for (let at = 0; at < bytes.length;) at += await c.write(at ? bytes.subarray(at) : bytes);
      }).catch((err) => {
        conn.error ??= err;
        close();
      }).finally(() => void pending--);
    },
    get flushed() {
      return pending === 0;
    },
    pause() {
      if (flow.paused) return;
      let resolve!: () => void;
      flow.paused = { promise: new Promise<void>((r) => resolve = r), resolve };
    },
    resume() {
      flow.paused?.resolve();
      flow.paused = null;
    },
    close,
    idle(on) {
      clearTimeout(idleTimer);
      if (on) {
        c.unref();
        idleTimer = setTimeout(close, IDLE_SECONDS * 1000) as unknown as number;
        Deno.unrefTimer(idleTimer);
      } else c.ref();
    },
  };
}

/**
 * One request over a kept-alive connection; resolves once the whole body is in (a BufferedResponse), and
 * otherwise keeps fetch's contract: a TypeError on network failure or a body cut short, the signal's reason
 * when it aborts (the socket is then destroyed, which the upstream sees as the client going away).
 */
function nodeHttpPost(agent: http.Agent, url: string, init: UpstreamInit): Promise<UpstreamResponse> {
  const { signal } = init;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const e = endpointOf(url);
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      fn();
    };
    const onAbort = () => {
      settle(() => reject(signal.reason));
      req.destroy();
    };
    const req = http.request({
      hostname: e.hostname,
      port: e.port,
      path: e.path,
      method: init.method,
      headers: nodeHeaders(init),
      agent,
    }, (res) => {
      const parts: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => void parts.push(c));
      res.on("error", (e) => settle(() => reject(networkError(e))));
      res.on("close", () => settle(() => reject(new TypeError("upstream closed the connection before the response ended"))));
      res.on("end", () => settle(() => {
        try {
          resolve(toResponse(res, parts));
        } catch (e) {
          reject(new TypeError(`upstream sent an invalid response: ${(e as Error).message}`));
        }
      }));
    });
    signal.addEventListener("abort", onAbort, { once: true });
    req.on("error", (e) => settle(() => reject(networkError(e))));
    req.end(init.body);
  });
}

/** The request's headers with fetch's value rules (headerValue), and its content-length. */
function nodeHeaders(init: UpstreamInit): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name in init.headers) out[name] = headerValue(name, init.headers[name]);
  out["content-length"] = String(Buffer.byteLength(init.body));
  return out;
}

const decoder = new TextDecoder();

/**
 * A non-streaming answer, body already in memory. Not a fetch Response: Deno registers every Response it
 * constructs (and its Headers) for finalization, which keeps them alive through the young-generation GCs, the
 * very cost this client is here to avoid; the adapters only need these members (UpstreamResponse).
 */
class BufferedResponse implements UpstreamResponse {
  readonly ok: boolean;
  readonly body = null;
  readonly headers: { get(name: string): string | null };
  constructor(readonly status: number, raw: http.IncomingHttpHeaders, readonly bytes: Uint8Array) {
    this.ok = status >= 200 && status < 300;
    // node:http lower-cases the names and joins repeated headers with ", " (set-cookie: an array), as fetch does
    this.headers = {
      get(name: string): string | null {
        const v = raw[name.toLowerCase()];
        return v === undefined ? null : Array.isArray(v) ? v.join(", ") : v;
      },
    };
  }
  text(): Promise<string> {
    return Promise.resolve(decoder.decode(this.bytes));
  }
  json(): Promise<unknown> {
    return this.text().then(JSON.parse);
  }
}

function toResponse(res: http.IncomingMessage, parts: Uint8Array[]): UpstreamResponse {
  const status = res.statusCode ?? 0;
  if (status < 200 || status > 599) throw new Error(`HTTP status ${status}`);
  return new BufferedResponse(status, res.headers, parts.length === 1 ? parts[0] : Buffer.concat(parts));
}
