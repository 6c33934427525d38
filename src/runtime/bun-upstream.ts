// Why: Bun's fetch allocates 256 KB per slowly streamed response, setting off GCs that delay chunks (docs/decisions/0001).
// The Bun entrypoint's upstream client: every request to an http or https upstream, streamed or not, goes over
// Bun.connect sockets (HTTP/1.1, http1.ts; TLS always verified); Bun's fetch only when a proxy is configured.
//
// Why: Bun's fetch allocates a 256 KB buffer for each streamed response whose data arrives slowly, which is
// every LLM stream; those buffers set off young-generation GCs that hold chunks back (the per-chunk transit
// tail). Here each socket read is one exactly-sized buffer that becomes the chunk itself, and the adapters take
// the chunks without a stream reader (DIRECT_CHUNKS).
// Over TLS the sockets cost the router a fraction of the CPU per chunk fetch does (docs/decisions/0027).
// Non-streaming requests take the sockets too: they cost no more CPU per request than fetch, and Bun's fetch
// holds at most 256 requests at once unless BUN_CONFIG_MAX_HTTP_REQUESTS is set when the process starts
// (docs/decisions/0028).
import { getCACertificates } from "node:tls";
import { fetchInit } from "../providers/upstream.ts";
import type { UpstreamFetch } from "../providers/types.ts";
import { type Conn, type Endpoint, IDLE_SECONDS, socketUpstreamFetch, type Transport } from "./http1.ts";

/** The upstream client for the Bun entrypoint: every request over Bun.connect sockets (socketUpstreamFetch). */
export function bunUpstreamFetch(env: Record<string, string | undefined>): UpstreamFetch {
  return socketUpstreamFetch(env, bunConnect, { tls: true }, bunFetch);
}

/**
 * Bun's fetch, redirects not followed (see globalFetch), trusting a provider's CA certificates (caList).
 * rejectUnauthorized set: Bun's fetch would otherwise skip verification when NODE_TLS_REJECT_UNAUTHORIZED=0.
 */
const bunFetch: UpstreamFetch = (url, init) =>
  fetch(url, fetchInit(init, { tls: init.ca ? { rejectUnauthorized: true, ca: caList(init.ca) } : VERIFY })).catch(fetchError);
const VERIFY = { rejectUnauthorized: true };

/** Bun's fetch says only the code of a host name mismatch: the reason in words, as the sockets give it. */
function fetchError(e: unknown): never {
  throw (e as { code?: string })?.code === "ERR_TLS_CERT_ALTNAME_INVALID" ? certificateError(e as Error) : e;
}

/**
 * The CA certificates for Bun's `tls.ca` of a provider with a CA file (UpstreamInit.ca). `tls.ca` replaces the
 * default trust store, so the list is that store (Bun's bundled roots, NODE_EXTRA_CA_CERTS, the system's with
 * --use-system-ca) plus the file: the file only ever adds trust.
 */
function caList(pem: string): string[] {
  if (lastCa?.pem !== pem) lastCa = { pem, list: [...getCACertificates("default"), pem] };
  return lastCa.list;
}
let lastCa: { pem: string; list: string[] } | undefined; // one array per CA file, not one per request

/** A Bun.connect socket as a Transport; the socket's handlers (shared) reach it through socket.data. */
class BunTransport implements Transport {
  socket: Bun.Socket<BunTransport> | null = null;
  #out: Uint8Array | null = null; // the rest of a request the socket did not take in one write
  #outAt = 0;
  #idle = false;
  /** set from the start of a TLS connection until its handshake completes or fails */
  #handshake: { resolve(): void; reject(e: unknown): void } | null = null;
  constructor(readonly conn: Conn) {}

  /** Resolves when the TLS handshake has verified the upstream's certificate; rejects when it failed. */
  handshake(): Promise<void> {
    return new Promise((resolve, reject) => void (this.#handshake = { resolve, reject }));
  }
  get handshaking(): boolean {
    return this.#handshake !== null;
  }
  handshakeDone(error?: unknown): void {
    const h = this.#handshake;
    this.#handshake = null;
    if (error === undefined) h?.resolve();
    else h?.reject(error);
  }

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
  handshake(socket, success, authorizationError) {
    if (success) return socket.data.handshakeDone();
    socket.data.conn.error ??= certificateError(authorizationError);
    socket.data.handshakeDone(socket.data.conn.error);
    socket.terminate();
  },
  close(socket, error) {
    const conn = socket.data.conn;
    socket.data.handshakeDone(error ?? conn.error ?? new TypeError("connection closed during the TLS handshake"));
    conn.closed(error);
  },
  end: (socket) => void socket.end(), // the upstream finished sending (FIN): close our side too; close() follows
  timeout(socket) {
    // an active request has the router's deadline instead
    if (socket.data.isIdle) socket.terminate();
    else if (socket.data.handshaking) {
      socket.data.conn.error ??= new TypeError("TLS handshake timed out");
      socket.terminate();
    }
  },
  connectError(socket, error) {
    socket.data.conn.error ??= error;
  },
};

/**
 * Seconds a TLS handshake may take. The request's deadline gives up on it sooner; this closes the socket of a
 * handshake that never completes, which would otherwise stay open.
 */
const HANDSHAKE_SECONDS = 30;

/**
 * A failed certificate check as the attempt's reason: OpenSSL's text (it names the problem, not the upstream)
 * and its code; a host name mismatch in words of our own, since Bun's text lists the upstream's addresses.
 */
function certificateError(e: Error | null): TypeError {
  if (!e) return new TypeError("TLS handshake failed");
  const code = (e as { code?: string }).code;
  const text = code === "ERR_TLS_CERT_ALTNAME_INVALID" ? "the certificate is not valid for the upstream's host name" : e.message;
  return new TypeError(`TLS certificate rejected: ${text}${code ? ` (${code})` : ""}`);
}

/**
 * A connection to `e`: TCP, or for https TLS with SNI and the certificate verified against the host name and the
 * default trust store plus the provider's CA file (caList), whatever NODE_TLS_REJECT_UNAUTHORIZED says. Resolves
 * once the handshake has completed, so nothing is written to an upstream that was not verified.
 */
async function bunConnect(e: Endpoint, conn: Conn): Promise<Transport> {
  const t = new BunTransport(conn);
  const verified = e.tls ? t.handshake() : undefined;
  verified?.catch(() => {}); // awaited below, unless connecting fails first
  const socket = await Bun.connect<BunTransport>({
    hostname: e.hostname,
    port: e.port,
    socket: handlers as unknown as Bun.SocketHandler<BunTransport>,
    data: t,
    tls: e.tls ? { serverName: e.hostname, rejectUnauthorized: true, ca: e.ca ? caList(e.ca) : undefined } : undefined,
  });
  socket.setNoDelay(true);
  t.socket = socket;
  if (verified) {
    socket.timeout(HANDSHAKE_SECONDS);
    await verified;
    socket.timeout(0);
  }
  return t;
}
