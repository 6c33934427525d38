// Deno entrypoint: adapts Deno.serve, files, env and signals to the Platform interface.
import { main } from "./server.ts";
import type { Platform } from "./platform.ts";
import { denoUpstreamFetch } from "./runtime/deno-upstream.ts";
import { encodeChunk } from "./runtime/byte-slab.ts";

const enc = new TextEncoder();
const platform: Platform = {
  runtime: "deno",
  runtimeVersion: Deno.version.deno,
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
  serve(handler, { hostname, port }) {
    let bound = { hostname, port };
    const server = Deno.serve({ hostname, port, onListen: (addr) => void (bound = { hostname: addr.hostname, port: addr.port }) }, (req, info) =>
      // read now, not through a getter as on Bun: a getter's closure keeps Deno's per-request `info` alive as long
      // as the request, and what survives young-generation GCs sets the latency tail
      // (docs/decisions/0011-client-address.md)
      handler(req, { remoteAddr: (info.remoteAddr as Deno.NetAddr).hostname }));
    return {
      get port() {
        return (server.addr as Deno.NetAddr).port ?? bound.port;
      },
      hostname: (server.addr as Deno.NetAddr).hostname ?? bound.hostname,
      // shutdown() stops listening and resolves when in-flight requests and streams have finished; Deno has no
      // forced close, so a non-graceful stop is the same and the caller exits the process.
      stop: () => server.shutdown(),
    };
  },
  onSignal: (sig, fn) => Deno.addSignalListener(sig, fn),
  exit: (code) => Deno.exit(code),
  stdout: (line) => void Deno.stdout.writeSync(enc.encode(line + "\n")),
  stderr: (line) => void Deno.stderr.writeSync(enc.encode(line + "\n")),
};

platform.upstreamFetch = denoUpstreamFetch(platform.env);
// SSE chunks cut from shared slabs, not an ArrayBuffer each: fewer buffers for each scavenge to sweep (src/runtime/byte-slab.ts)
platform.encodeChunk = encodeChunk;

await main(platform);
