// A small HTTP server for fake providers, with fault injection shared by every wire protocol:
// a status to answer with, a delay before answering, a hang, a stream cut mid-way.
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";

export interface Fault {
  /** answer with this HTTP status and `body` (JSON) instead of the normal answer */
  status?: number;
  body?: unknown;
  /** raw text body (e.g. an HTML error page) sent with `status` */
  rawBody?: string;
  headers?: Record<string, string>;
  /** wait this long before sending headers */
  delayMs?: number;
  /** never answer (until the client goes away) */
  hang?: boolean;
  /** for streams: send this many events, then destroy the socket */
  cutAfter?: number;
  /** for streams: send this many events, then stall (keep the connection open, send nothing) */
  stallAfter?: number;
  /** for streams: wait between events */
  chunkDelayMs?: number;
  /** apply the fault to this many requests only, then behave normally (default: every request) */
  times?: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: any;
}

export interface StreamWriter {
  /** writes one chunk of the response body, honouring cutAfter / stallAfter / chunkDelayMs; false once cut */
  write(text: string): Promise<boolean>;
  end(): void;
}

export type Handle = (req: RecordedRequest, res: http.ServerResponse, stream: (contentType: string) => StreamWriter) => void | Promise<void>;

export class FakeServer {
  readonly requests: RecordedRequest[] = [];
  fault: Fault | null = null;
  /** requests whose upstream connection was closed by the client before the answer ended */
  aborted = 0;
  /** TLS handshakes completed (an https fake): how many connections the client opened */
  tlsConnections = 0;
  #server: http.Server | https.Server;
  #sockets = new Set<import("node:net").Socket>();
  #tls: boolean;
  port = 0;

  /** `tls`: serve https with this key and certificate (PEM; tests/helpers/tls.ts makes them) */
  constructor(handle: Handle, tls?: { key: string; cert: string }) {
    this.#tls = !!tls;
    const listener: http.RequestListener = async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const text = Buffer.concat(chunks).toString("utf8");
      let body: any = text;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch { /* keep text */ }
      const rec: RecordedRequest = { method: req.method ?? "GET", path: req.url ?? "/", headers: req.headers, body };
      this.requests.push(rec);
      let finished = false;
      res.on("finish", () => (finished = true));
      res.on("close", () => {
        if (!finished) this.aborted++;
      });
      const fault = this.#takeFault();
      if (fault?.delayMs) await sleep(fault.delayMs);
      if (fault?.hang) return; // the client's abort or timeout closes it
      if (fault?.status) {
        const headers = { "content-type": fault.rawBody !== undefined ? "text/html" : "application/json", ...fault.headers };
        res.writeHead(fault.status, headers);
        res.end(fault.rawBody ?? JSON.stringify(fault.body ?? { error: { message: `fake error ${fault.status}`, type: "server_error" } }));
        return;
      }
      let written = 0;
      const stream = (contentType: string): StreamWriter => {
        res.writeHead(200, { "content-type": contentType, "cache-control": "no-cache", ...fault?.headers });
        res.flushHeaders();
        return {
          async write(t: string) {
            if (res.destroyed) return false;
            if (fault?.cutAfter !== undefined && written >= fault.cutAfter) {
              res.socket?.destroy();
              return false;
            }
            if (fault?.stallAfter !== undefined && written >= fault.stallAfter) {
              await new Promise<void>((r) => res.on("close", () => r()));
              return false;
            }
            if (fault?.chunkDelayMs && written > 0) await sleep(fault.chunkDelayMs);
            written++;
            res.write(t);
            return !res.destroyed;
          },
          end() {
            if (!res.destroyed) res.end();
          },
        };
      };
      await handle(rec, res, stream);
    };
    this.#server = tls ? https.createServer(tls, listener) : http.createServer(listener);
    this.#server.on("secureConnection", () => void this.tlsConnections++);
    this.#server.on("connection", (s) => {
      this.#sockets.add(s);
      s.on("close", () => this.#sockets.delete(s));
    });
  }

  #takeFault(): Fault | null {
    const f = this.fault;
    if (!f) return null;
    if (f.times !== undefined) {
      if (f.times <= 0) return null;
      f.times--;
    }
    return f;
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.#server.listen(0, "127.0.0.1", () => r()));
    this.port = (this.#server.address() as AddressInfo).port;
    return this;
  }

  get url(): string {
    return `${this.#tls ? "https" : "http"}://127.0.0.1:${this.port}`;
  }

  reset(): void {
    this.requests.length = 0;
    this.fault = null;
    this.aborted = 0;
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A 127.0.0.1 URL with nothing listening (connection refused). */
export async function refusedUrl(): Promise<string> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
}
