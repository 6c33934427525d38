// Deno entrypoint: adapts Deno.serve, files, env and signals to the Platform interface.
import { main } from "./server.ts";
import type { Platform } from "./platform.ts";
import { denoUpstreamFetch } from "./runtime/deno-upstream.ts";
import { connectRedis } from "./runtime/redis.ts";
import { openFilesLimit } from "./runtime/open-files.ts";
import { connectionTimeoutProblem, serveWithTimeouts } from "./runtime/deno-serve.ts";

const enc = new TextEncoder();
const platform: Platform = {
  runtime: "deno",
  runtimeVersion: Deno.version.deno,
  hostname: Deno.hostname(),
  args: Deno.args,
  env: new Proxy({} as Record<string, string | undefined>, {
    get: (_t, k) => (typeof k === "string" ? Deno.env.get(k) : undefined),
    has: (_t, k) => typeof k === "string" && Deno.env.get(k) !== undefined,
    ownKeys: () => Object.keys(Deno.env.toObject()),
    getOwnPropertyDescriptor: (_t, k) =>
      typeof k === "string" && Deno.env.get(k) !== undefined ? { enumerable: true, configurable: true, value: Deno.env.get(k) } : undefined,
  }),
  setEnv: (k, v) => Deno.env.set(k, v),
  async readTextFile(path) {
    try {
      return await Deno.readTextFile(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
  },
  async stat(path) {
    try {
      const s = await Deno.stat(path);
      return { mtimeMs: s.mtime?.getTime() ?? 0, size: s.size };
    } catch (e) {
      if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return null;
      throw e;
    }
  },
  // Deno.serve cannot close a connection that never finishes its request head: src/runtime/deno-serve.ts can
  serve: serveWithTimeouts,
  onSignal: (sig, fn) => Deno.addSignalListener(sig, fn),
  exit: (code) => Deno.exit(code),
  stdout: (line) => void Deno.stdout.writeSync(enc.encode(line + "\n")),
  stderr: (line) => void Deno.stderr.writeSync(enc.encode(line + "\n")),
  startupWarnings: connectionTimeoutProblem ? [connectionTimeoutProblem] : undefined,
};

platform.upstreamFetch = denoUpstreamFetch(platform.env);
platform.connectRedis = connectRedis;

platform.openFilesLimit = openFilesLimit();

await main(platform);
