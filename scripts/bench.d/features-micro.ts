// In-process micro benchmark of the optional features (auth, rate limit, idempotency): the Hono app is
// driven with app.fetch(Request) (no sockets), so the CPU time per request is the router's own JavaScript
// work, without the HTTP server, the client or the upstream. Runs under Bun and Deno:
//
//   bun  scripts/bench.d/features-micro.ts [options]
//   deno run -A scripts/bench.d/features-micro.ts [options]
//
// Options:
//   --variants off,auth,rl,idem,all   feature sets to compare (default: all of them); idem and all send a
//                                     unique Idempotency-Key per request (the worst case: every response is
//                                     hashed and stored), replay sends the same key every time (served from
//                                     the store)
//   --n N            requests per round (default 20000)
//   --rounds R       rounds per variant (default 5)
//   --conc C         requests in flight at once (default 16)
//   --stream         streaming requests (the mock answers with a short SSE stream)
//   --upstream URL   an openai_compatible provider at URL (e.g. the bench upstream's http://127.0.0.1:PORT/v1)
//                    instead of the built-in mock provider (then fetch's cost is in the figures too)
//   --max-entries M  idempotency.max_entries (default 10000, as scripts/bench.d/router-features.yaml)
//   --heap           (Bun) print the JavaScript heap after each variant: size and the most common objects
// Prints one line per variant: CPU µs/request (user + system of this process): the fastest round (the one
// least disturbed by other work on the machine) and its difference to "off", the median, the system part;
// wall µs/request; every round; RSS after a GC.
import { readFileSync } from "node:fs";
import process from "node:process";
import { parseConfig } from "../../src/config/load.ts";
import { createApp } from "../../src/http/app.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { Observability } from "../../src/observability/observability.ts";
import { buildRouter, createRoutingState } from "../../src/server.ts";

const g = globalThis as any;
const runtime: "bun" | "deno" = g.Bun ? "bun" : "deno";
const argv: string[] = runtime === "bun" ? g.Bun.argv.slice(2) : g.Deno.args;
const opt = (name: string, def: string) => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : def;
};
const VARIANTS = opt("--variants", "off,auth,rl,idem,all").split(",");
const N = Number(opt("--n", "20000"));
const ROUNDS = Number(opt("--rounds", "5"));
const CONC = Number(opt("--conc", "16"));
const STREAM = argv.includes("--stream");
const UPSTREAM = opt("--upstream", "");
const MAX_ENTRIES = Number(opt("--max-entries", "10000"));

let sysMicros = 0;
function cpuMicros(): number {
  const u = process.cpuUsage();
  sysMicros = u.system;
  return u.user + u.system;
}
function rssMB(): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"))?.[1]) / 1024;
}
function gc() {
  if (runtime === "bun") g.Bun.gc(true);
  else g.gc?.();
}

function configFor(variant: string): string {
  const provider = UPSTREAM
    ? `{ name: p, type: openai_compatible, endpoint: "${UPSTREAM}", api_key: sk-up, default_model: bench, models: [bench] }`
    : `{ name: p, type: mock, default_model: bench, reply: "Hello w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 w17 w18 w19" }`;
  const on = (f: string) => variant === "all" || variant === f || (f === "idem" && variant === "replay");
  return [
    `providers: [${provider}]`,
    `auth: ${on("auth") ? "{ enabled: true, api_keys: [sk-bench-client] }" : "{ enabled: false }"}`,
    `rate_limit: ${on("rl") ? "{ enabled: true, requests_per_minute: 100000000, burst: 1000000 }" : "{ enabled: false }"}`,
    `idempotency: ${on("idem") ? `{ enabled: true, ttl_seconds: 60, max_entries: ${MAX_ENTRIES} }` : "{ enabled: false }"}`,
    `logging: { level: warn }`,
  ].join("\n");
}

const BODY = JSON.stringify({ model: "bench", messages: [{ role: "user", content: "Say hello" }], max_tokens: 32, ...(STREAM ? { stream: true } : {}) });

async function runVariant(variant: string) {
  const config = parseConfig(configFor(variant), {});
  const logger = createLogger(() => {}, "warn", "json");
  const observability = new Observability({ version: "micro", runtime, logger });
  const state = createRoutingState(config);
  const router = buildRouter(config, observability.hooksFor(config), { ...state });
  const app = createApp({ router: () => router, observability });
  let seq = 0;
  const headers = (): Record<string, string> => {
    const h: Record<string, string> = { "content-type": "application/json", "content-length": String(BODY.length), authorization: "Bearer sk-bench-client" };
    if (variant === "idem" || variant === "all") h["idempotency-key"] = `micro-${++seq}-${Math.random()}`;
    else if (variant === "replay") h["idempotency-key"] = "micro-replay";
    return h;
  };
  const one = async () => {
    const res = await app.fetch(new Request("http://127.0.0.1/v1/chat/completions", { method: "POST", body: BODY, headers: headers() }), { remoteAddr: "127.0.0.1" });
    if (res.status !== 200) throw new Error(`${variant}: status ${res.status}: ${await res.text()}`);
    await res.arrayBuffer();
  };
  const round = async (n: number) => {
    let left = n;
    await Promise.all(Array.from({ length: CONC }, async () => {
      while (left-- > 0) await one();
    }));
  };
  await round(N); // warm up the JIT
  const cpu: number[] = [], wall: number[] = [], sys: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = cpuMicros(), s0 = sysMicros, t0 = performance.now();
    await round(N);
    wall.push(((performance.now() - t0) * 1000) / N);
    cpu.push((cpuMicros() - c0) / N);
    sys.push((sysMicros - s0) / N);
  }
  let heap = "";
  if (argv.includes("--heap") && runtime === "bun") {
    // while this variant's app (and its idempotency store) is still alive
    gc();
    const { heapStats } = await import("bun:jsc");
    const h = heapStats();
    const top = Object.entries(h.objectTypeCounts as Record<string, number>).sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, n]) => `${k} ${n}`).join(", ");
    heap = `\n        heap ${(h.heapSize / 1048576).toFixed(1)} MB, extra ${(h.extraMemorySize / 1048576).toFixed(1)} MB, RSS ${rssMB().toFixed(0)} MB, ${h.objectCount} objects: ${top}`;
    if (app === undefined) throw new Error("unreachable"); // keeps the app alive up to here
  }
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  return { cpu: med(cpu), min: Math.min(...cpu), sys: med(sys), wall: med(wall), all: cpu.map((v) => v.toFixed(1)).join(" "), heap };
}

console.log(`${runtime}, ${STREAM ? "streaming" : "non-streaming"}, ${UPSTREAM ? `upstream ${UPSTREAM}` : "mock provider"}, ${N} requests x ${ROUNDS} rounds, ${CONC} in flight`);
let base: number | undefined;
for (const v of VARIANTS) {
  const r = await runVariant(v);
  if (v === "off") base = r.min;
  const delta = base !== undefined && v !== "off" ? ` (+${(r.min - base).toFixed(1)})` : "";
  gc();
  console.log(`${v.padEnd(7)} CPU min ${r.min.toFixed(1).padStart(6)} µs/req${delta.padEnd(9)} median ${r.cpu.toFixed(1).padStart(6)} (system ${r.sys.toFixed(1)})  wall ${r.wall.toFixed(1).padStart(6)} µs/req  rounds: ${r.all}  RSS after gc ${rssMB().toFixed(0)} MB${r.heap}`);
}
