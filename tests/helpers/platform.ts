// Runs the real main() in-process on a stand-in Platform: config from memory, output captured, served with
// the current runtime's server. For tests that need the whole start-up path but no child process.
import { main } from "../../src/server.ts";
import type { Platform } from "../../src/platform.ts";
import { runtime, serve, upstreamFetch } from "./router.ts";

export interface InProcessRouter {
  url: string;
  /** every line main() wrote to stdout or stderr */
  out: string[];
  stop(): Promise<void>;
}

export async function runMain(opts: { args: string[]; files: Record<string, string>; env: Record<string, string | undefined> }): Promise<InProcessRouter> {
  const out: string[] = [];
  const env = { ...opts.env };
  let url = "";
  let stop: () => Promise<void> = async () => {};
  const platform: Platform = {
    runtime,
    runtimeVersion: "test",
    hostname: "test-host",
    args: opts.args,
    env,
    setEnv: (k, v) => void (env[k] = v),
    upstreamFetch,
    readTextFile: async (p) => opts.files[p] ?? null,
    stat: async () => null,
    serve(handler, { hostname }) {
      const s = serve((req) => handler(req, { remoteAddr: "127.0.0.1" }));
      url = `http://127.0.0.1:${s.port}`;
      stop = s.stop;
      return { port: s.port, hostname, stop: () => s.stop() };
    },
    onSignal() {},
    exit(code) {
      throw new Error(`exit ${code}: ${out.join("\n")}`);
    },
    stdout: (l) => void out.push(l),
    stderr: (l) => void out.push(l),
  };
  await main(platform);
  return { url, out, stop: () => stop() };
}
