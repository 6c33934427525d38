// The Deno entrypoint's upstream client. Non-streaming requests to plain-http upstreams go through node:http;
// everything else through Deno's fetch.
//
// Why: Deno's fetch keeps objects of every request alive until the next full GC, so each young-generation
// scavenge copies megabytes of them: at 1,000 req/s the router paused 3-6 ms every half second (p99 +3.7 ms and
// more; --v8-flags=--trace-gc-nvp, "promoted" about 2.2 MB per scavenge). A bare proxy through node:http
// promotes about 55 KB per scavenge; the router allocates a quarter as much per request, its p99 drops by a
// third to two thirds and its CPU per request by 10-20% (docs/benchmarks.md, "Deno's upstream client").
// Streams stay on fetch: node:http on Deno hands stream chunks on later (per-chunk p99 +2.2 ms against +0.7 ms
// in a bare proxy). https upstreams stay on fetch for HTTP/2 and Deno's certificate store, and so does every
// request when an HTTP proxy is configured (fetch honours HTTP_PROXY / ALL_PROXY / NO_PROXY).
import { Buffer } from "node:buffer";
import http from "node:http";
import type { UpstreamFetch, UpstreamInit, UpstreamResponse } from "../providers/types.ts";

const PROXY_VARS = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];

/**
 * The upstream client for the Deno entrypoint. `env` is read at the first request, after main() has loaded
 * .env into it.
 */
export function denoUpstreamFetch(env: Record<string, string | undefined>): UpstreamFetch {
  let agent: http.Agent | null | undefined; // null: a proxy is configured, fetch only
  return (url, init, stream) => {
    if (agent === undefined) agent = PROXY_VARS.some((k) => env[k]) ? null : new http.Agent({ keepAlive: true });
    return stream || agent === null || !url.startsWith("http:") ? fetch(url, init) : nodeHttpPost(agent, url, init);
  };
}

/** Short reasons for the socket errors a client can act on (the raw messages carry the upstream address). */
const NET_ERRORS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset by the upstream",
  EPIPE: "connection closed by the upstream",
  ETIMEDOUT: "connection timed out",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host name lookup failed",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
};

function networkError(e: unknown): TypeError {
  const code = (e as { code?: string })?.code;
  return new TypeError((code && NET_ERRORS[code]) || (e as Error)?.message || "network error");
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
    const u = new URL(url);
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
      hostname: u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname,
      port: u.port || 80,
      path: u.pathname + u.search,
      method: init.method,
      headers: { ...init.headers, "content-length": String(Buffer.byteLength(init.body)) },
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
