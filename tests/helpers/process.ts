// Runs the router as a separate process (from source under the runtime running the tests, or the compiled
// binary), to test what only a process has: the CLI, exit codes, signals, reloading its config file.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";

export const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
export const runtime: "bun" | "deno" = (globalThis as any).Bun ? "bun" : "deno";

/** The command that runs the router from source under the current runtime (bun or deno). */
export function sourceCommand(): string[] {
  return runtime === "bun"
    ? [process.execPath, join(ROOT, "src/main.bun.ts")]
    : [process.execPath, "run", "-A", "--config", join(ROOT, "deno.json"), join(ROOT, "src/main.deno.ts")];
}

/** A fresh empty folder; remove it with rmTemp. */
export function tempDir(prefix = "fr-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function rmTemp(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export function writeFile(path: string, text: string): void {
  writeFileSync(path, text);
}

/** The environment for a child: this one, without variables that would change the router's behaviour. */
function childEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !["ROUTER_CONFIG", "PORT", "HOST", "BUN_CONFIG_MAX_HTTP_REQUESTS"].includes(k)) env[k] = v;
  }
  return { ...env, NO_COLOR: "1", ...extra };
}

export interface CliResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (killed after timeoutMs). */
export function run(cmd: string[], opts: { cwd: string; env?: Record<string, string>; timeoutMs?: number }): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0], cmd.slice(1), { cwd: opts.cwd, env: childEnv(opts.env ?? {}), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => signalProcess(child, "SIGKILL"), opts.timeoutMs ?? 30000);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export interface RouterProcess {
  child: ChildProcess;
  url: string;
  port: number;
  /** everything written to stdout and stderr so far */
  output(): string;
  /** JSON log lines so far */
  logs(): any[];
  /** resolves with the exit code (or the signal name) */
  exited: Promise<{ code: number | null; signal: string | null; at: number }>;
  /** true once the process has exited */
  readonly done: boolean;
  kill(signal?: NodeJS.Signals): void;
  /** SIGKILL if still running, and wait for the exit */
  stop(): Promise<void>;
}

/**
 * Starts the router (default: from source) in `cwd` and waits for its "listening on" log line.
 * The config should set server.host 127.0.0.1 and port 0, and logging.format json (the default).
 */
export async function startProcess(args: string[], opts: { cwd: string; cmd?: string[]; env?: Record<string, string>; timeoutMs?: number }): Promise<RouterProcess> {
  const cmd = [...(opts.cmd ?? sourceCommand()), ...args];
  const child = spawn(cmd[0], cmd.slice(1), { cwd: opts.cwd, env: childEnv(opts.env ?? {}), stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let done = false;
  const exited = new Promise<{ code: number | null; signal: string | null; at: number }>((resolve) => {
    child.on("close", (code, signal) => {
      done = true;
      resolve({ code, signal, at: Date.now() });
    });
  });
  const listening = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`router did not start within ${opts.timeoutMs ?? 20000} ms:\n${out}`)), opts.timeoutMs ?? 20000);
    const onData = (d: unknown) => {
      out += String(d);
      const m = /listening on (http:\/\/[^\s"]+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (d) => (out += String(d)));
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`router exited (${code ?? signal}) before listening:\n${out}`));
    });
  });
  let url: string;
  try {
    url = await listening;
  } catch (e) {
    signalProcess(child, "SIGKILL");
    await exited;
    throw e;
  }
  return {
    child,
    url,
    port: Number(new URL(url).port),
    output: () => out,
    logs: () =>
      out.split("\n").filter((l) => l.startsWith("{")).map((l) => {
        try {
          return JSON.parse(l);
        } catch {
          return { raw: l };
        }
      }),
    exited,
    get done() {
      return done;
    },
    kill: (signal = "SIGTERM") => signalProcess(child, signal),
    async stop() {
      if (!done) signalProcess(child, "SIGKILL");
      await exited;
    },
  };
}

/**
 * Sends a signal. Not child.kill(): Deno's node:child_process marks the child killed after the first signal
 * and ignores every later one (a SIGHUP would then block the SIGKILL that cleans up).
 */
export function signalProcess(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(child.pid!, signal);
  } catch { /* already gone */ }
}

/** Polls `fn` until it returns a truthy value (or throws after timeoutMs). */
export async function waitFor<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 15000, everyMs = 50): Promise<T> {
  const t0 = Date.now();
  let last: unknown;
  while (Date.now() - t0 < timeoutMs) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
}

/** A TCP port nothing listens on at the moment (for a server that cannot be told to pick one itself). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** True when nothing accepts a new TCP connection on the port any more. */
export function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.once("error", () => resolve(true));
  });
}

/** A raw TCP connection, to send an HTTP request in pieces on an already-open connection. */
export async function rawConnection(port: number): Promise<{ write(s: string): void; received(): string; closed: Promise<void>; destroy(): void }> {
  const s = net.connect(port, "127.0.0.1");
  let buf = "";
  s.on("data", (d) => (buf += d.toString()));
  s.on("error", () => {});
  const closed = new Promise<void>((r) => s.once("close", () => r()));
  await new Promise<void>((resolve, reject) => {
    s.once("connect", () => resolve());
    s.once("error", reject);
  });
  return { write: (t) => void s.write(t), received: () => buf, closed, destroy: () => s.destroy() };
}

/** Reads a streaming response until `pred(textSoFar)` holds; returns the reader and the text so far. */
export async function readUntil(res: Response, pred: (text: string) => boolean): Promise<{ text: string; rest(): Promise<string> }> {
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let text = "";
  while (!pred(text)) {
    const { done, value } = await reader.read();
    if (done) break;
    text += dec.decode(value, { stream: true });
  }
  return {
    text,
    async rest() {
      let more = "";
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        more += dec.decode(value, { stream: true });
      }
      return text + more;
    },
  };
}

/** The text of an SSE chat stream: the concatenated delta contents, and whether it ended with [DONE]. */
export function sseText(body: string): { text: string; done: boolean } {
  let text = "";
  let done = false;
  for (const block of body.split("\n\n")) {
    if (!block.startsWith("data: ")) continue;
    const d = block.slice(6);
    if (d === "[DONE]") {
      done = true;
      continue;
    }
    const j = JSON.parse(d);
    text += j.choices?.[0]?.delta?.content ?? j.choices?.[0]?.text ?? "";
  }
  return { text, done };
}
