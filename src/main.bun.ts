#!/usr/bin/env bun
// Bun entrypoint: adapts Bun.serve, files, env and signals to the Platform interface.
import { stat } from "node:fs/promises";
import { hostname } from "node:os";
import { main } from "./server.ts";
import { bunUpstreamFetch } from "./runtime/bun-upstream.ts";
import { connectRedis } from "./runtime/redis.ts";
import { openFilesLimit } from "./runtime/open-files.ts";
import type { Platform } from "./platform.ts";

/**
 * Back to the between-requests timeout once the answer is handed over, except for an event stream, which keeps the
 * long one: Bun tells nothing when a stream ends, and its pauses may be long (routing.stream_idle_timeout_seconds).
 */
function answered(srv: Bun.Server<undefined>, req: Request, res: Response, seconds: number): Response {
  if (!res.headers.get("content-type")?.startsWith("text/event-stream")) srv.timeout(req, seconds);
  return res;
}

const platform: Platform = {
  runtime: "bun",
  hostname: hostname(),
  runtimeVersion: Bun.version,
  args: Bun.argv.slice(2),
  env: process.env,
  setEnv: (k, v) => {
    process.env[k] = v;
  },
  async readTextFile(path) {
    // only a missing file is null: a directory or a file without read permission is an error that says so
    try {
      return await Bun.file(path).text();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT" || (e as NodeJS.ErrnoException).code === "ENOTDIR") return null;
      throw e;
    }
  },
  async stat(path) {
    try {
      const s = await stat(path);
      return { mtimeMs: s.mtimeMs, size: s.size };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT" || (e as NodeJS.ErrnoException).code === "ENOTDIR") return null;
      throw e;
    }
  },
  serve(handler, { hostname, port, headerTimeoutSeconds }) {
    // Bun's idle timer is the connection's clock between requests: incoming bytes do not reset it, so it bounds an
    // idle keep-alive connection and a request head trickled on one (a connection's first head: Bun's own fixed 10 s).
    // While a request is handled it is lifted to the most Bun allows, so a slow upstream or a stream's pauses do not
    // cut the answer; the request body has its own deadline in the core (server.body_timeout_seconds).
    const betweenRequests = Math.min(255, Math.ceil(headerTimeoutSeconds));
    const server = Bun.serve({
      hostname,
      port,
      idleTimeout: betweenRequests,
      fetch(req, srv) {
        srv.timeout(req, 255);
        // the client address only when asked for (rate limiting by IP), not paid for on every request
        // (docs/decisions/0011-client-address.md)
        const res = handler(req, { get remoteAddr() { return srv.requestIP(req)?.address; } });
        return res instanceof Promise ? res.then((r) => answered(srv, req, r, betweenRequests)) : answered(srv, req, res, betweenRequests);
      },
    });
    return {
      port: server.port ?? port,
      hostname: server.hostname ?? hostname,
      // stop(false) stops listening and resolves when in-flight requests and streams have finished
      stop: (graceful) => server.stop(!graceful),
    };
  },
  onSignal: (sig, fn) => void process.on(sig, fn),
  exit: (code) => process.exit(code),
  stdout: (line) => void process.stdout.write(line + "\n"),
  stderr: (line) => void process.stderr.write(line + "\n"),
};

platform.upstreamFetch = bunUpstreamFetch(platform.env);
platform.connectRedis = connectRedis;

platform.openFilesLimit = openFilesLimit();

await main(platform);
