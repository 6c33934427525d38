#!/usr/bin/env bun
// Bun entrypoint: adapts Bun.serve, files, env and signals to the Platform interface.
// first: re-executes this process with Bun's fetch concurrency cap lifted (see the file) before anything loads
import { FETCH_CAP_VAR, fetchCapProblem } from "./runtime/bun-fetch-cap.ts";
import { stat } from "node:fs/promises";
import { main } from "./server.ts";
import { bunUpstreamFetch } from "./runtime/bun-upstream.ts";
import type { Platform } from "./platform.ts";

const platform: Platform = {
  runtime: "bun",
  runtimeVersion: Bun.version,
  args: Bun.argv.slice(2),
  env: process.env,
  setEnv: (k, v) => {
    process.env[k] = v;
  },
  async readTextFile(path) {
    const f = Bun.file(path);
    return (await f.exists()) ? await f.text() : null;
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
  serve(handler, { hostname, port }) {
    const server = Bun.serve({
      hostname,
      port,
      idleTimeout: 255,
      // the client address only when asked for (rate limiting by IP), not paid for on every request
      // (docs/decisions/0011-client-address.md)
      fetch: (req, srv) => handler(req, { get remoteAddr() { return srv.requestIP(req)?.address; } }),
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
  startupWarnings: fetchCapProblem
    ? [`at most 256 concurrent upstream requests (streams beyond that wait): ${fetchCapProblem}; set ${FETCH_CAP_VAR}=16384 in the environment to lift the cap`]
    : undefined,
};

platform.upstreamFetch = bunUpstreamFetch(platform.env);

await main(platform);
