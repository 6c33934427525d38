// Runs the router's CLI as a real process (Bun entrypoint by default) for CLI and process-level tests.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "../..");
export const BUN = join(ROOT, "node_modules/.bin/bun");
export const DENO = join(ROOT, "node_modules/.bin/deno");

export function entry(runtime: "bun" | "deno" = "bun"): string[] {
  return runtime === "bun" ? [BUN, join(ROOT, "src/main.bun.ts")] : [DENO, "run", "-A", join(ROOT, "src/main.deno.ts")];
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion. */
export function runCli(args: string[], opts: { cwd?: string; env?: Record<string, string>; runtime?: "bun" | "deno"; timeoutMs?: number } = {}): Promise<RunResult> {
  const [cmd, ...pre] = entry(opts.runtime);
  return new Promise((res, rej) => {
    const p = spawn(cmd, [...pre, ...args], { cwd: opts.cwd ?? ROOT, env: cleanEnv(opts.env), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    p.stdout!.on("data", (d) => (stdout += d));
    p.stderr!.on("data", (d) => (stderr += d));
    const t = setTimeout(() => p.kill("SIGKILL"), opts.timeoutMs ?? 20000);
    p.on("error", rej);
    p.on("close", (code) => {
      clearTimeout(t);
      res({ code, stdout, stderr });
    });
  });
}

/** The environment for a child: ours without router variables that would change its behaviour. */
function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !["PORT", "HOST", "ROUTER_CONFIG"].includes(k)) env[k] = v;
  }
  return { ...env, NO_COLOR: "1", ...extra };
}

export interface ServerProc {
  proc: ChildProcess;
  url: string;
  output(): string;
  stop(): Promise<number | null>;
}

/** Starts `serve` on a free port and resolves once it answers /health. */
export async function startServer(args: string[], opts: { cwd?: string; env?: Record<string, string>; runtime?: "bun" | "deno"; command?: string[] } = {}): Promise<ServerProc> {
  const [cmd, ...pre] = opts.command ?? entry(opts.runtime);
  const p = spawn(cmd, [...pre, ...args], { cwd: opts.cwd ?? ROOT, env: cleanEnv(opts.env), stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  p.stdout!.on("data", (d) => (out += d));
  p.stderr!.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((r) => p.on("close", (c) => r(c)));
  const deadline = Date.now() + 20000;
  let url = "";
  while (Date.now() < deadline) {
    const m = /listening on http:\/\/([^:\s"]+):(\d+)/.exec(out);
    if (m) {
      url = `http://127.0.0.1:${m[2]}`;
      try {
        const r = await fetch(`${url}/health`);
        await r.body?.cancel();
        break;
      } catch { /* not yet */ }
    }
    if (p.exitCode !== null) throw new Error(`router exited early (${p.exitCode}):\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!url) {
    p.kill("SIGKILL");
    throw new Error(`router did not start:\n${out}`);
  }
  return {
    proc: p,
    url,
    output: () => out,
    stop: async () => {
      // process.kill, not p.kill: Deno's child_process reports a child that exits 0 after p.kill() as killed
      if (p.exitCode === null) process.kill(p.pid!, "SIGTERM");
      const t = setTimeout(() => p.kill("SIGKILL"), 10000);
      const c = await exited;
      clearTimeout(t);
      return c;
    },
  };
}

export function tempDir(files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), "fr-test-"));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}
