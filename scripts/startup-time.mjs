#!/usr/bin/env node
// Measures start-up time: from spawning the router to its first answered GET /health (HTTP 200), over
// several runs, in an empty temp folder holding only a config.yaml with one mock provider.
// Usage: node scripts/startup-time.mjs [--runs N] [--] COMMAND [ARGS...]
//   e.g. node scripts/startup-time.mjs dist/failover-router
//        node scripts/startup-time.mjs -- node_modules/.bin/bun src/main.bun.ts
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

let argv = process.argv.slice(2);
let runs = 10;
if (argv[0] === "--runs") {
  runs = Number(argv[1]);
  argv = argv.slice(2);
}
if (argv[0] === "--") argv = argv.slice(1);
if (!argv.length) argv = ["dist/failover-router"];
const [cmd, ...args] = argv;
const exe = cmd.includes("/") ? resolve(cmd) : cmd;
const absArgs = args.map((a) => (a.endsWith(".ts") ? resolve(a) : a));

async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

async function once() {
  const dir = mkdtempSync(join(tmpdir(), "fr-startup-"));
  const port = await freePort();
  writeFileSync(join(dir, "config.yaml"), `server: { host: 127.0.0.1, port: ${port} }\nlogging: { level: warn }\nproviders:\n  - { name: m, type: mock }\n`);
  const t0 = performance.now();
  const child = spawn(exe, absArgs, { cwd: dir, stdio: "ignore" });
  try {
    while (true) {
      if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}`);
      try {
        const res = await fetch(`http://127.0.0.1:${port}/health`);
        if (res.status === 200) {
          await res.arrayBuffer();
          return performance.now() - t0;
        }
      } catch { /* not listening yet */ }
      await new Promise((r) => setTimeout(r, 2));
      if (performance.now() - t0 > 30000) throw new Error("no answer within 30 s");
    }
  } finally {
    child.kill("SIGKILL");
    await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once("exit", r)));
    rmSync(dir, { recursive: true, force: true });
  }
}

await once(); // warm the page cache
const times = [];
for (let i = 0; i < runs; i++) times.push(await once());
times.sort((a, b) => a - b);
const med = times[Math.floor(times.length / 2)];
let size = "";
try {
  size = ` size=${(statSync(exe).size / 1024 / 1024).toFixed(1)} MiB`;
} catch { /* a command on PATH */ }
console.log(`${[cmd, ...args].join(" ")}: start-up to first /health: median ${med.toFixed(0)} ms, min ${times[0].toFixed(0)} ms, max ${times.at(-1).toFixed(0)} ms over ${runs} runs;${size}`);
