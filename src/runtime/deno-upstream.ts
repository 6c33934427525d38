// Why: Deno's fetch keeps each request's objects alive into the young GCs, which then pause longer (docs/decisions/0002).
// The Deno entrypoint's upstream client. Requests to plain-http upstreams, streamed or not, go over
// Deno.connect sockets (HTTP/1.1, http1.ts); everything else through Deno's fetch.
//
// Why: Deno's fetch keeps objects of every request alive until the next full GC, so each young-generation
// scavenge copies them and pauses the process (the latency tail), and it allocates a lot per slowly streamed
// response. Deno's node:http keeps less alive than fetch but costs more CPU per request than the socket client
// and registers an AsyncResource per request for finalization (docs/decisions/0001-socket-http1-client.md,
// docs/decisions/0002-deno-buffered-socket-client.md).
// https upstreams stay on fetch for HTTP/2 and Deno's certificate store, and so does every request when an
// HTTP proxy is configured (fetch honours HTTP_PROXY / ALL_PROXY / NO_PROXY).
// FAILOVER_ROUTER_UPSTREAM_CLIENT=fetch sends everything through fetch.
import { fetchInit } from "../providers/upstream.ts";
import type { UpstreamFetch } from "../providers/types.ts";
import { type Conn, type Endpoint, IDLE_SECONDS, socketUpstreamFetch, type Transport } from "./http1.ts";

/** The upstream client for the Deno entrypoint: every request over Deno.connect sockets (socketUpstreamFetch). */
export function denoUpstreamFetch(env: Record<string, string | undefined>): UpstreamFetch {
  return socketUpstreamFetch(env, denoConnect, { tls: false }, denoFetch);
}

/**
 * Deno's fetch, redirects not followed (see globalFetch). A provider's CA certificates (UpstreamInit.ca) go in an
 * HttpClient of their own, which trusts them besides the default roots.
 */
const denoFetch: UpstreamFetch = (url, init) => fetch(url, fetchInit(init, init.ca ? { client: clientFor(init.ca) } : undefined));

/** Clients kept, one per distinct CA text: the config names a few; a changed file after a reload makes another. */
const MAX_CLIENTS = 16;
const clients = new Map<string, HttpClient>();
function clientFor(pem: string): HttpClient {
  let c = clients.get(pem);
  if (!c) {
    if (clients.size >= MAX_CLIENTS) {
      const [oldest, old] = clients.entries().next().value!;
      clients.delete(oldest);
      old.close(); // requests already sent on it keep their connections
    }
    c = Deno.createHttpClient({ caCerts: [pem] });
    clients.set(pem, c);
  }
  return c;
}

/** What the socket client uses of Deno's API (typed here: the Bun-typed tsc pass checks this file too). */
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
  createHttpClient(o: { caCerts: string[] }): HttpClient;
}
interface HttpClient {
  close(): void;
}
const Deno = (globalThis as unknown as { Deno: DenoNet }).Deno;

/** Bytes read per socket read; what came is copied out and handed on. */
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
