// A real redis-server (Debian's `redis-server` package) for the tests of the redis state backend: started on a
// free port with persistence off, stopped after. Under CI=true a missing redis-server fails the tests; elsewhere
// they are skipped with a message.
import { spawn, type ChildProcess } from "node:child_process";
import { connect } from "node:net";
import { existsSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import assert from "node:assert/strict";
import { freePort, signalProcess, waitFor } from "./process.ts";

const IN_CI = !!process.env.CI && process.env.CI !== "false" && process.env.CI !== "0";
const INSTALL = "install Debian's redis-server package: apt-get update && apt-get install -y redis-server";

/** The path of redis-server; null (skip, with a message) when absent outside CI; a failure when absent in CI. */
export function redisServerBin(): string | null {
  for (const dir of [...(process.env.PATH ?? "").split(":"), "/usr/bin", "/usr/local/bin", "/usr/sbin"]) {
    if (dir && existsSync(join(dir, "redis-server"))) return join(dir, "redis-server");
  }
  if (IN_CI) assert.fail(`redis-server not found on PATH (CI=true): ${INSTALL}`);
  console.log(`SKIP: redis-server not found on PATH; ${INSTALL} (these tests fail instead of skipping when CI=true)`);
  return null;
}

export interface RedisServer {
  port: number;
  /** redis://[:password@]127.0.0.1:port/0 */
  url: string;
  /** sends one command (inline, no password) and resolves with the first line of the reply */
  command(...args: string[]): Promise<string>;
  /** SIGSTOP: Redis keeps its connections open and answers nothing */
  freeze(): void;
  /** SIGCONT */
  thaw(): void;
  /** SIGKILL, and wait for the exit */
  kill(): Promise<void>;
  /** a new, empty redis-server on the same port (after kill) */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts redis-server on a free port (with `password`: requirepass); null when it is not installed (outside CI). */
export async function startRedis(opts: { password?: string } = {}): Promise<RedisServer | null> {
  const bin = redisServerBin();
  if (!bin) return null;
  const port = await freePort();
  let child: ChildProcess;
  let exited: Promise<void>;
  const launch = async () => {
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--logfile", ""];
    if (opts.password) args.push("--requirepass", opts.password);
    child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => (out += d));
    exited = new Promise((r) => child.on("close", () => r()));
    await waitFor(() => out.includes("Ready to accept connections"), `redis-server on port ${port}:\n${out}`, 10000, 20);
  };
  await launch();
  const auth = opts.password ? `:${encodeURIComponent(opts.password)}@` : "";
  return {
    port,
    url: `redis://${auth}127.0.0.1:${port}/0`,
    command: (...args) =>
      new Promise((resolve, reject) => {
        const sock = connect(port, "127.0.0.1", () => sock.write(args.join(" ") + "\r\n"));
        let got = "";
        sock.on("data", (d) => {
          got += d;
          if (got.includes("\r\n")) {
            sock.destroy();
            resolve(got.split("\r\n")[0]);
          }
        });
        sock.on("error", reject);
      }),
    freeze: () => signalProcess(child, "SIGSTOP"),
    thaw: () => signalProcess(child, "SIGCONT"),
    async kill() {
      signalProcess(child, "SIGKILL");
      await exited;
    },
    restart: launch,
    async stop() {
      signalProcess(child, "SIGCONT");
      signalProcess(child, "SIGKILL");
      await exited;
    },
  };
}
