// Why: Bun's fetch allocates 256 KB per slowly streamed response, setting off GCs that delay chunks (docs/decisions/0001).
// The Bun entrypoint's upstream client: streamed requests to plain-http upstreams go over Bun.connect sockets
// (HTTP/1.1, http1.ts); everything else through Bun's fetch (non-streaming requests, https upstreams, and every
// request when an HTTP proxy is configured).
//
// Why: Bun's fetch allocates a 256 KB buffer for each streamed response whose data arrives slowly, which is
// every LLM stream; those buffers set off young-generation GCs that hold chunks back (the per-chunk transit
// tail). Here each socket read is one exactly-sized buffer that becomes the chunk itself, and the adapters take
// the chunks without a stream reader (DIRECT_CHUNKS).
// Non-streaming requests stay on fetch: its HTTP thread does the upstream I/O beside the JS thread, so it
// carries more requests per second at saturation than sockets driven from JS.
import { rootCertificates } from "node:tls";
import { fetchInit } from "../providers/upstream.ts";
import type { UpstreamFetch } from "../providers/types.ts";
import { type Conn, type Endpoint, IDLE_SECONDS, socketUpstreamFetch, type Transport } from "./http1.ts";

/** The upstream client for the Bun entrypoint: streams over Bun.connect sockets (socketUpstreamFetch). */
export function bunUpstreamFetch(env: Record<string, string | undefined>): UpstreamFetch {
  return socketUpstreamFetch(env, bunConnect, true, bunFetch);
}

/**
 * Bun's fetch, redirects not followed (see globalFetch). A provider's CA certificates (UpstreamInit.ca) go in
 * `tls.ca`, which replaces Bun's bundled roots: they are added to them, so the file only ever adds trust.
 */
const bunFetch: UpstreamFetch = (url, init) => fetch(url, fetchInit(init, init.ca ? { tls: { ca: caList(init.ca) } } : undefined));

let lastCa: { pem: string; list: string[] } | undefined; // one array per CA file, not one per request
function caList(pem: string): string[] {
  if (lastCa?.pem !== pem) lastCa = { pem, list: [...rootCertificates, pem] };
  return lastCa.list;
}

/** A Bun.connect socket as a Transport; the socket's handlers (shared) reach it through socket.data. */
class BunTransport implements Transport {
  socket: Bun.Socket<BunTransport> | null = null;
  #out: Uint8Array | null = null; // the rest of a request the socket did not take in one write
  #outAt = 0;
  #idle = false;
  constructor(readonly conn: Conn) {}

  get flushed(): boolean {
    return this.#out === null;
  }
  get isIdle(): boolean {
    return this.#idle;
  }

  write(bytes: Uint8Array): void {
    const n = this.socket!.write(bytes);
    if (n < bytes.length) {
      this.#out = bytes;
      this.#outAt = n > 0 ? n : 0;
    }
  }

  /** The socket can take more (drain). */
  flush(): void {
    const out = this.#out;
    if (!out || !this.socket) return;
    const n = this.socket.write(out.subarray(this.#outAt));
    if (n > 0) this.#outAt += n;
    if (this.#outAt >= out.length) this.#out = null;
  }

  pause(): void {
    this.socket?.pause();
  }
  resume(): void {
    this.socket?.resume();
  }
  close(): void {
    this.socket?.terminate();
  }
  idle(on: boolean): void {
    this.#idle = on;
    const s = this.socket!;
    s.timeout(on ? IDLE_SECONDS : 0);
    if (on) s.unref();
    else s.ref();
  }
}

const handlers: Bun.SocketHandler<BunTransport, "uint8array"> = {
  binaryType: "uint8array", // each read is a fresh, exactly-sized Uint8Array: the body keeps it as the chunk
  data: (socket, bytes) => socket.data.conn.data(bytes),
  drain: (socket) => socket.data.flush(),
  error(socket, error) {
    // a socket error, or one of these handlers threw: either way the connection is done
    socket.data.conn.error ??= error;
    socket.terminate();
  },
  close: (socket, error) => socket.data.conn.closed(error),
  end: (socket) => void socket.end(), // the upstream finished sending (FIN): close our side too; close() follows
  timeout(socket) {
    if (socket.data.isIdle) socket.terminate(); // an active request has the router's deadline instead
  },
  connectError(socket, error) {
    socket.data.conn.error ??= error;
  },
};

async function bunConnect(e: Endpoint, conn: Conn): Promise<Transport> {
  const t = new BunTransport(conn);
  const socket = await Bun.connect<BunTransport>({
    hostname: e.hostname,
    port: e.port,
    socket: handlers as unknown as Bun.SocketHandler<BunTransport>,
    data: t,
  });
  socket.setNoDelay(true);
  t.socket = socket;
  return t;
}
