// Benchmark orchestrator (run by scripts/bench, which installs wrk and Portkey and builds the Bun binary).
// Starts the fake upstream, then for each leg starts the server under test, checks it answers correctly,
// and measures it with the same payloads: wrk at fixed concurrency, a fixed-rate run, paced streams, and
// memory (idle, under load, 1,000 open streams). Prints the tables; --write-docs puts them in
// docs/benchmarks.md; results JSON goes to .bench/results.json.
//
// Options (all optional):
//   --smoke                 ~5-10 s end-to-end check (short runs, legs direct,bun,deno); exit 1 on any failure
//   --legs a,b,...          direct,bun,deno,portkey,bun-features,deno-features,bun-features-redis,
//                           deno-features-redis (default: all)
//   --duration S            seconds per wrk run, fixed-rate run and stream run (default 10)
//   --conns 1,16,64         wrk concurrency levels (default 1,16,64)
//   --rate R                fixed-rate requests/s (default 1000; the targets use it)
//   --low-rate R            a second fixed-rate run (default 200, 0: none), below Portkey's saturation point
//   --streams N             concurrently open streams for the memory test (default 1000)
//   --stream-conc C         concurrent paced streams for the TTFB / chunk-delay run (default 16)
//   --only a,b,...          measure only these sections: wrk (non-streaming, --conns), wrk-stream (streaming
//                           throughput and CPU per stream), rate (fixed-rate runs), stream (paced streams: TTFB,
//                           transit, batching), hold (memory with --streams open streams); default: all. E.g.
//                           `--legs direct,deno --only stream,hold,wrk-stream` for the streaming targets alone;
//                           ceiling (reference proxies at the highest --conns: nginx, HAProxy, minimal JavaScript
//                           proxies; docs/benchmarks.md "Throughput ceilings"; not in --smoke); realistic (HTTPS
//                           upstream paced like a model, open slow streams, CPU per request against the minimal
//                           proxy: scripts/bench.d/realistic.ts; small in --smoke)
//   --real-streams N        realistic: concurrent paced streams over TLS (default 500; smoke 8)
//   --real-secs S           realistic: seconds of paced streams per leg (default 60; smoke 1)
//   --real-tokens N         realistic: tokens per paced stream, at 40/s (default 200; smoke 12)
//   --open-streams N        realistic: slow streams held open at once through the compiled binary (default 9000;
//                           smoke 20; 0: none)
//   --open-secs S           realistic: how long they stay open (default 20; smoke 2)
//   --real-json R           realistic: non-streaming requests per second over TLS, each answered after 300 ms
//                           (default 1000; smoke 20; 0: none)
//   --real-json-secs S      realistic: seconds of them per leg (default 20; smoke 1)
//   --ratio-secs S          realistic: seconds per wrk run of the CPU-per-request rows (default 5; smoke 1, Bun only;
//                           0: none). --real-streams 0: no paced streams
//   --ratio-rounds R        realistic: rounds of those rows, the three servers measured in turn each round; each
//                           figure is the median of its rounds (default 5; smoke 1)
//   --write-docs            replace the results section of docs/benchmarks.md
//   --from FILE             no measuring: print (and with --write-docs, write) the tables of a saved results JSON
//   --profile bun|deno      instead of the legs: run the router under the runtime's CPU profiler (--cpu-prof)
//                           during a wrk run (non-streaming + streaming) and print the top self-time functions
// Environment from scripts/bench: BENCH_ROUTER_BIN (compiled router), BENCH_PORTKEY_DIR (Portkey install).
// BENCH_DENO_FLAGS: extra `deno run` flags for the Deno legs, space-separated (e.g. --v8-flags=--trace-gc-nvp;
// the router's output, GC traces included, goes to .bench/deno.log).
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cpus, totalmem, loadavg } from "node:os";
import { measureRealistic, realisticReport, type RealisticResult } from "./realistic.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const HERE = join(ROOT, "scripts/bench.d");
const BENCH_DIR = join(ROOT, ".bench");
const BIN = join(ROOT, "node_modules/.bin");
const BUN = process.execPath;
const DENO = join(BIN, "deno");

// ---------- options ----------
const argv = Bun.argv.slice(2);
const flag = (name: string) => argv.includes(name);
const opt = (name: string, def: string) => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : def;
};
const SMOKE = flag("--smoke");
const ALL_LEGS = ["direct", "bun", "deno", "portkey", "bun-features", "deno-features", "bun-features-redis", "deno-features-redis"] as const;
type LegName = (typeof ALL_LEGS)[number];
const LEGS = opt("--legs", SMOKE ? "direct,bun,deno" : ALL_LEGS.join(",")).split(",").filter(Boolean) as LegName[];
for (const l of LEGS) if (!ALL_LEGS.includes(l)) fail(`unknown leg ${l} (legs: ${ALL_LEGS.join(", ")})`);
if (!LEGS.includes("direct")) LEGS.unshift("direct"); // overheads need the baseline
let DURATION = Math.max(1, Math.round(Number(opt("--duration", SMOKE ? "1" : "10"))));
const CLIENT_SECS = SMOKE ? 0.3 : DURATION; // fixed-rate and stream runs
let CONNS = opt("--conns", SMOKE ? "16" : "1,16,64").split(",").map(Number);
let RATE = Number(opt("--rate", SMOKE ? "200" : "1000"));
let LOW_RATE = Number(opt("--low-rate", SMOKE ? "0" : "200")); // a second fixed rate (0: none), below Portkey's saturation
let OPEN_STREAMS = Number(opt("--streams", SMOKE ? "20" : "1000"));
let STREAM_CONC = Number(opt("--stream-conc", SMOKE ? "4" : "16"));
const ALL_SECTIONS = ["wrk", "wrk-stream", "rate", "stream", "hold", "ceiling", "realistic"] as const;
const SECTIONS = new Set(opt("--only", ALL_SECTIONS.join(",")).split(",").filter(Boolean));
if (SMOKE) SECTIONS.delete("ceiling");
for (const s of SECTIONS) if (!(ALL_SECTIONS as readonly string[]).includes(s)) fail(`unknown section ${s} (sections: ${ALL_SECTIONS.join(", ")})`);
const REAL_PACED = {
  streams: Number(opt("--real-streams", SMOKE ? "8" : "500")),
  secs: Number(opt("--real-secs", SMOKE ? "1" : "60")),
  tokens: Number(opt("--real-tokens", SMOKE ? "12" : "200")),
};
const REAL_OPEN = { streams: Number(opt("--open-streams", SMOKE ? "20" : "9000")), secs: Number(opt("--open-secs", SMOKE ? "2" : "20")) };
const REAL_JSON = { rate: Number(opt("--real-json", SMOKE ? "20" : "1000")), secs: Number(opt("--real-json-secs", SMOKE ? "1" : "20")) };
const RATIO_SECS = Number(opt("--ratio-secs", SMOKE ? "1" : "5"));
const RATIO_ROUNDS = Number(opt("--ratio-rounds", "5"));
const WARMUP_S = SMOKE ? 0 : Math.max(1, Math.min(2, Math.floor(DURATION / 4))); // whole seconds (wrk)
const WRITE_DOCS = flag("--write-docs");
const PROFILE = opt("--profile", "");
const ROUTER_BIN = process.env.BENCH_ROUTER_BIN ?? join(BENCH_DIR, "router-bun");
const PORTKEY_DIR = process.env.BENCH_PORTKEY_DIR ?? join(BENCH_DIR, "portkey");
const PORTKEY_JS = join(PORTKEY_DIR, "node_modules/@portkey-ai/gateway/build/start-server.js");
const BODY = JSON.stringify({ model: "bench", messages: [{ role: "user", content: "Say hello" }], max_tokens: 32 });
const STREAM_BODY = JSON.stringify({ model: "bench", messages: [{ role: "user", content: "Say hello" }], max_tokens: 32, stream: true });

function fail(msg: string): never {
  console.error(`bench: ${msg}`);
  process.exit(2);
}
const log = (msg: string) => console.error(`[bench] ${msg}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** `part` as a whole-number percentage of `whole`. */
const pct = (part: number, whole: number) => `${((part / whole) * 100).toFixed(0)}%`;
const r1 = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? "-" : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));

// ---------- processes ----------
type Proc = ReturnType<typeof Bun.spawn>;
const children = new Set<Proc>();
async function stopProc(p: Proc, signal: NodeJS.Signals = "SIGTERM") {
  if (p.exitCode !== null || p.signalCode !== null) return children.delete(p);
  p.kill(signal);
  const done = await Promise.race([p.exited.then(() => true), sleep(5000).then(() => false)]);
  if (!done) p.kill("SIGKILL");
  await p.exited;
  children.delete(p);
}
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    for (const p of children) p.kill("SIGKILL");
    process.exit(130);
  });
}
process.on("exit", () => {
  for (const p of children) p.kill("SIGKILL");
});

async function freePort(): Promise<number> {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

function spawn(name: string, cmd: string[], env: Record<string, string> = {}, cwd = ROOT): Proc {
  mkdirSync(BENCH_DIR, { recursive: true });
  const logFile = join(BENCH_DIR, `${name}.log`);
  // Bun.file as stdout writes from the start without truncating: empty the files so no old run's tail stays
  writeFileSync(logFile, "");
  writeFileSync(logFile + ".err", "");
  const p = Bun.spawn(cmd, { cwd, env: { ...process.env, NO_COLOR: "1", ...env }, stdout: Bun.file(logFile), stderr: Bun.file(logFile + ".err") });
  children.add(p);
  return p;
}

async function waitReady(url: string, p: Proc, name: string, timeoutMs = 30000) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (p.exitCode !== null) throw new Error(`${name} exited with ${p.exitCode}; see .bench/${name}.log(.err)`);
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await r.arrayBuffer();
      return;
    } catch { /* not yet */ }
    await sleep(50);
  }
  throw new Error(`${name} did not answer ${url} within ${timeoutMs / 1000}s`);
}

const CLK_TCK = Number(Bun.spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim()) || 100;
/** CPU time (user + system, all threads) of a process in microseconds. */
function cpuMicros(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" "); // fields from 3 (state) on
    return ((Number(f[11]) + Number(f[12])) / CLK_TCK) * 1e6; // utime, stime
  } catch {
    return NaN;
  }
}

function procStatus(pid: number): { rss: number; hwm: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? NaN);
    return { rss: kb("VmRSS") / 1024, hwm: kb("VmHWM") / 1024 };
  } catch {
    return undefined;
  }
}

async function run(cmd: string[], env: Record<string, string> = {}, timeoutMs = 600000): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn(cmd, { cwd: ROOT, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  children.add(p);
  const timer = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  const code = await p.exited;
  clearTimeout(timer);
  children.delete(p);
  return { code, out, err };
}

const lastJson = (text: string, prefix = "") => {
  const line = text.trim().split("\n").reverse().find((l) => l.startsWith(prefix + "{"));
  if (!line) throw new Error(`no JSON result in output:\n${text.slice(-2000)}`);
  return JSON.parse(line.slice(prefix.length));
};

// ---------- load generators ----------
interface WrkResult { rps: number; p50: number; p99: number; p999: number; requests: number; errors: number; cpu_us?: number; upstream_cpu_us?: number }
async function wrk(url: string, conns: number, secs: number, body: string, headers: string, idem: boolean): Promise<WrkResult> {
  const threads = Math.min(conns, 2);
  const r = await run(["wrk", `-t${threads}`, `-c${conns}`, `-d${secs}s`, "--timeout", "10s", "-s", join(HERE, "post.lua"), url], {
    BENCH_BODY: body, BENCH_HEADERS: headers, BENCH_IDEMPOTENCY: idem ? "1" : "0",
  });
  if (r.code !== 0) throw new Error(`wrk failed: ${r.err || r.out}`);
  const j = lastJson(r.out, "BENCHJSON ");
  const errors = j.err_connect + j.err_read + j.err_write + j.err_status + j.err_timeout;
  return { rps: j.requests / (j.duration_us / 1e6), p50: j.lat_p50_us / 1000, p99: j.lat_p99_us / 1000, p999: j.lat_p999_us / 1000, requests: j.requests, errors };
}

async function client(mode: string, args: (string | number)[], headers: string, extraEnv: Record<string, string> = {}) {
  const r = await run([BUN, join(HERE, "client.ts"), mode, ...args.map(String)], {
    BENCH_HEADERS: headers, BENCH_WARMUP_S: String(WARMUP_S ? 1 : 0), BUN_CONFIG_MAX_HTTP_REQUESTS: "16384", ...extraEnv,
  });
  return { code: r.code, json: lastJson(r.out), out: r.out, err: r.err };
}

// ---------- legs ----------
interface Leg {
  name: LegName;
  label: string;
  url: string;
  headers: string;
  idempotency: boolean;
  start(upstream: string, env?: Record<string, string>): Promise<{ proc?: Proc; url: string }>;
}

function featureHeaders(yamlPath: string): string {
  const text = readFileSync(yamlPath, "utf8");
  return text.split("\n").filter((l) => l.startsWith("# BENCH_FEATURE_HEADERS:")).map((l) => l.slice("# BENCH_FEATURE_HEADERS:".length).trim()).join("\n");
}

/** One redis-server (persistence off) for the Redis legs, started on first use; stopped with the other children. */
let redisUrl: Promise<string> | undefined;
function benchRedis(): Promise<string> {
  return (redisUrl ??= (async () => {
    const port = await freePort();
    const proc = spawn("redis", ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
    for (let i = 0; i < 100; i++) {
      try {
        (await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } })).end();
        return `redis://127.0.0.1:${port}/0`;
      } catch {
        if (proc.exitCode !== null) break;
        await sleep(50);
      }
    }
    throw new Error("redis-server did not start (see .bench/redis.log.err)");
  })());
}

function routerLeg(name: LegName, runtime: "bun" | "deno", features: boolean, redis = false): Leg {
  const cfg = join(HERE, features ? "router-features.yaml" : "router.yaml");
  return {
    name,
    label: `router on ${runtime === "bun" ? "Bun (compiled)" : "Deno"}${features ? ", all features on" : ""}${redis ? ", Redis backend" : ""}`,
    url: "",
    headers: features ? featureHeaders(cfg) : "",
    idempotency: features,
    async start(upstream, env = {}) {
      const port = await freePort();
      const cmd = runtime === "bun"
        ? [ROUTER_BIN, "--config", cfg, "--host", "127.0.0.1", "--port", String(port)]
        : [DENO, "run", "-A", ...(process.env.BENCH_DENO_FLAGS ? process.env.BENCH_DENO_FLAGS.split(" ") : []), "src/main.deno.ts", "--config", cfg, "--host", "127.0.0.1", "--port", String(port)];
      // the features config names its state backend through these (memory unless set)
      const state = redis ? { BENCH_STATE_BACKEND: "redis", BENCH_REDIS_URL: await benchRedis() } : {};
      const proc = spawn(name, cmd, { BENCH_UPSTREAM: `${upstream}/v1`, ...state, ...env });
      await waitReady(`http://127.0.0.1:${port}/health`, proc, name);
      return { proc, url: `http://127.0.0.1:${port}/v1/chat/completions` };
    },
  };
}

function portkeyLeg(): Leg {
  const leg: Leg = {
    name: "portkey",
    label: "Portkey gateway 1.15.2 (node)",
    url: "",
    headers: "",
    idempotency: false,
    async start(upstream) {
      if (!existsSync(PORTKEY_JS)) throw new Error(`Portkey not installed at ${PORTKEY_DIR} (scripts/bench installs it)`);
      const port = await freePort();
      leg.headers = `x-portkey-config: ${JSON.stringify({ provider: "openai", api_key: "sk-bench-upstream", custom_host: `${upstream}/v1` })}`;
      const proc = spawn("portkey", ["node", PORTKEY_JS, `--port=${port}`, "--headless"], { NODE_ENV: "production" }, PORTKEY_DIR);
      await waitReady(`http://127.0.0.1:${port}/`, proc, "portkey");
      return { proc, url: `http://127.0.0.1:${port}/v1/chat/completions` };
    },
  };
  return leg;
}

function makeLeg(name: LegName): Leg {
  switch (name) {
    case "direct":
      return { name, label: "direct to upstream", url: "", headers: "", idempotency: false, async start(upstream) { return { url: `${upstream}/v1/chat/completions` }; } };
    case "bun": return routerLeg(name, "bun", false);
    case "deno": return routerLeg(name, "deno", false);
    case "bun-features": return routerLeg(name, "bun", true);
    case "deno-features": return routerLeg(name, "deno", true);
    case "bun-features-redis": return routerLeg(name, "bun", true, true);
    case "deno-features-redis": return routerLeg(name, "deno", true, true);
    case "portkey": return portkeyLeg();
  }
}

interface LegResult {
  name: LegName;
  label: string;
  ok: boolean;
  problems: string[];
  wrk: Record<string, WrkResult>;
  wrkStream?: WrkResult;
  rate?: any;
  rateLow?: any;
  stream?: any;
  mem?: { idle_hwm: number; idle_rss: number; load_hwm: number };
  hold?: { requested: number; max_open: number; completed: number; errors: number; firstError: string; peak_rss: number; hwm: number; idle_hwm: number; open_ms?: number; note?: string };
}

/** wrk plus the CPU time per request of the gateway process and of the upstream (robust on a shared machine). */
async function wrkCpu(pid: number | undefined, upPid: number, ...args: Parameters<typeof wrk>): Promise<WrkResult> {
  const c0 = cpuMicros(pid), u0 = cpuMicros(upPid);
  const w = await wrk(...args);
  w.cpu_us = (cpuMicros(pid) - c0) / w.requests;
  w.upstream_cpu_us = (cpuMicros(upPid) - u0) / w.requests;
  return w;
}

async function measureLeg(leg: Leg, upstream: string, upPid: number): Promise<LegResult> {
  const res: LegResult = { name: leg.name, label: leg.label, ok: true, problems: [], wrk: {} };
  const problem = (p: string) => {
    res.ok = false;
    res.problems.push(p);
    log(`  ${leg.name}: ${p}`);
  };
  let started: { proc?: Proc; url: string };
  try {
    started = await leg.start(upstream);
  } catch (e) {
    problem(`did not start: ${(e as Error).message}`);
    return res;
  }
  const { proc, url } = started;
  try {
    const chk = await client("check", [url], leg.headers);
    if (!chk.json.ok) {
      for (const p of chk.json.problems) problem(`check: ${p}`);
      return res;
    }
    if (proc) {
      await sleep(SMOKE ? 50 : 1000);
      const s = procStatus(proc.pid)!;
      res.mem = { idle_hwm: s.hwm, idle_rss: s.rss, load_hwm: NaN };
    }
    if (WARMUP_S) await wrk(url, 16, WARMUP_S, BODY, leg.headers, leg.idempotency);
    for (const c of SECTIONS.has("wrk") ? CONNS : []) {
      log(`  ${leg.name}: wrk ${c} connections, ${DURATION}s`);
      const w = await wrkCpu(proc?.pid, upPid, url, c, DURATION, BODY, leg.headers, leg.idempotency);
      res.wrk[c] = w;
      if (w.errors) problem(`wrk c=${c}: ${w.errors} errors of ${w.requests}`);
      if (w.requests === 0) problem(`wrk c=${c}: no request completed`);
    }
    if (!SMOKE && SECTIONS.has("wrk-stream")) {
      log(`  ${leg.name}: wrk streaming, 16 connections, ${DURATION}s`);
      const w = await wrkCpu(proc?.pid, upPid, url, 16, DURATION, STREAM_BODY, leg.headers, leg.idempotency);
      res.wrkStream = w;
      if (w.errors) problem(`wrk stream: ${w.errors} errors of ${w.requests}`);
    }
    if (SECTIONS.has("rate")) {
      log(`  ${leg.name}: fixed rate ${RATE} req/s, ${CLIENT_SECS + (WARMUP_S ? 1 : 0)}s`);
      const rate = await client("rate", [url, RATE, CLIENT_SECS + (WARMUP_S ? 1 : 0)], leg.headers, { BENCH_IDEMPOTENCY: leg.idempotency ? "1" : "0" });
      res.rate = rate.json;
      if (rate.json.errors) problem(`fixed rate: ${rate.json.errors} errors (${rate.json.firstError})`);
    }
    if (LOW_RATE && SECTIONS.has("rate")) {
      log(`  ${leg.name}: fixed rate ${LOW_RATE} req/s, ${CLIENT_SECS + (WARMUP_S ? 1 : 0)}s`);
      const low = await client("rate", [url, LOW_RATE, CLIENT_SECS + (WARMUP_S ? 1 : 0)], leg.headers, { BENCH_IDEMPOTENCY: leg.idempotency ? "1" : "0" });
      res.rateLow = low.json;
      if (low.json.errors) problem(`fixed rate ${LOW_RATE}: ${low.json.errors} errors (${low.json.firstError})`);
    }
    if (SECTIONS.has("stream")) {
      log(`  ${leg.name}: ${STREAM_CONC} concurrent paced streams, ${CLIENT_SECS + (WARMUP_S ? 1 : 0)}s`);
      const st = await client("stream", [url, STREAM_CONC, CLIENT_SECS + (WARMUP_S ? 1 : 0)], leg.headers);
      res.stream = st.json;
      if (st.json.errors) problem(`streams: ${st.json.errors} errors (${st.json.firstError})`);
    }
    if (proc && res.mem) res.mem.load_hwm = procStatus(proc.pid)!.hwm;
    // smoke: the open-streams check runs on this process (no second start)
    if (SMOKE && proc && SECTIONS.has("hold")) await measureHold(leg, upstream, res, problem, {}, started);
  } catch (e) {
    problem(`failed: ${(e as Error).message}`);
  } finally {
    if (proc) await stopProc(proc);
  }
  if (!SMOKE && SECTIONS.has("hold") && leg.name !== "direct" && !leg.name.endsWith("-features")) await measureHold(leg, upstream, res, problem);
  return res;
}

/** A fresh process: idle RSS, then N streams held open at once; peak RSS while they are open. */
async function measureHold(leg: Leg, upstream: string, res: LegResult, problem: (p: string) => void, env: Record<string, string> = {}, running?: { proc?: Proc; url: string }) {
  log(`  ${leg.name}: ${OPEN_STREAMS} open streams${env.BUN_CONFIG_MAX_HTTP_REQUESTS ? ` (BUN_CONFIG_MAX_HTTP_REQUESTS=${env.BUN_CONFIG_MAX_HTTP_REQUESTS})` : ""}`);
  let started: { proc?: Proc; url: string };
  try {
    started = running ?? await leg.start(upstream, env);
  } catch (e) {
    problem(`hold: did not start: ${(e as Error).message}`);
    return;
  }
  const { proc, url } = started;
  try {
    if (!running) {
      const chk = await client("check", [url], leg.headers);
      if (!chk.json.ok) return problem(`hold: check failed: ${chk.json.problems.join("; ")}`);
      await sleep(1000);
    }
    const idle = procStatus(proc!.pid)!;
    let peak = idle.rss;
    const holdSecs = SMOKE ? 10 : 30;
    const c = Bun.spawn([BUN, join(HERE, "client.ts"), "hold", url, String(OPEN_STREAMS), String(holdSecs)], {
      cwd: ROOT, env: { ...process.env, BENCH_HEADERS: leg.headers, BUN_CONFIG_MAX_HTTP_REQUESTS: "16384" }, stdout: "pipe", stderr: "pipe",
    });
    children.add(c);
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const s = procStatus(proc!.pid);
        if (s) peak = Math.max(peak, s.rss);
        await sleep(50);
      }
    })();
    const out = await new Response(c.stdout).text();
    await c.exited;
    children.delete(c);
    sampling = false;
    await sampler;
    const j = lastJson(out);
    const openLine = out.split("\n").find((l) => l.startsWith("open "));
    const hwm = procStatus(proc!.pid)!.hwm;
    const hold = { requested: OPEN_STREAMS, max_open: j.max_open_at_once, completed: j.completed, errors: j.errors, firstError: j.firstError, peak_rss: peak, hwm, idle_hwm: idle.hwm, open_ms: openLine && !openLine.includes("not all") ? Number(openLine.split(" ")[2]) : undefined, note: env.BUN_CONFIG_MAX_HTTP_REQUESTS ? `with BUN_CONFIG_MAX_HTTP_REQUESTS=${env.BUN_CONFIG_MAX_HTTP_REQUESTS}` : undefined };
    if (j.max_open_at_once < OPEN_STREAMS && leg.name.startsWith("bun") && !env.BUN_CONFIG_MAX_HTTP_REQUESTS) {
      // Bun's fetch allows 256 concurrent requests by default: record that, then measure memory with the cap raised
      res.hold = { ...hold, note: `only ${j.max_open_at_once} of ${OPEN_STREAMS} streams open at once: Bun's fetch caps concurrent upstream requests (BUN_CONFIG_MAX_HTTP_REQUESTS, default 256)` };
      log(`  ${leg.name}: ${res.hold.note}`);
      await stopProc(proc!);
      const first = res.hold;
      await measureHold(leg, upstream, res, problem, { BUN_CONFIG_MAX_HTTP_REQUESTS: "16384" });
      (res as any).hold_default = first;
      return;
    }
    res.hold = hold;
    if (j.errors) problem(`hold: ${j.errors} of ${OPEN_STREAMS} streams failed (${j.firstError})`);
    if (j.max_open_at_once < OPEN_STREAMS) problem(`hold: only ${j.max_open_at_once} of ${OPEN_STREAMS} streams were open at once`);
  } catch (e) {
    problem(`hold failed: ${(e as Error).message}`);
  } finally {
    if (proc && !running) await stopProc(proc);
  }
}

// ---------- throughput ceilings ----------
// What a proxy with no work of its own reaches on this machine against the same upstream and load: a C proxy
// (nginx, HAProxy; scripts/bench installs them when missing) and the least a JavaScript proxy can do (a TCP
// pass-through, an HTTP gateway on raw sockets, a Bun.serve / Deno.serve + fetch proxy). See docs/benchmarks.md.
interface CeilingResult { name: string; label: string; wrk?: WrkResult; problem?: string }
interface Ceiling { name: string; label: string; cmd(port: number, upPort: number): string[] | null }

function nginxConf(port: number, upPort: number): string {
  const dir = join(BENCH_DIR, "nginx");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "nginx.conf");
  // one process (no master), keep-alive upstream connections, responses passed on as they come
  writeFileSync(file, `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  upstream up { server 127.0.0.1:${upPort}; keepalive 256; }
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
`);
  return file;
}

function haproxyConf(port: number, upPort: number): string {
  const file = join(BENCH_DIR, "haproxy.cfg");
  writeFileSync(file, `global
  nbthread 1
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend bench
  bind 127.0.0.1:${port}
  default_backend upstream
backend upstream
  server up 127.0.0.1:${upPort}
`);
  return file;
}

/** The command line of an installed program (sbin included), or null when it is not installed. */
function installed(program: string, args: () => string[]): string[] | null {
  const path = Bun.which(program, { PATH: `${process.env.PATH}:/usr/sbin:/sbin` });
  return path ? [path, ...args()] : null;
}
const CEILINGS: Ceiling[] = [
  { name: "nginx", label: "nginx, 1 worker (C)", cmd: (p, u) => installed("nginx", () => ["-e", "stderr", "-c", nginxConf(p, u)]) },
  { name: "haproxy", label: "HAProxy, 1 thread (C)", cmd: (p, u) => installed("haproxy", () => ["-f", haproxyConf(p, u)]) },
  { name: "js-tcp", label: "TCP pass-through on Bun sockets (no HTTP)", cmd: (p, u) => [BUN, join(HERE, "ceiling/tcp-proxy.ts"), String(p), String(u)] },
  { name: "js-http", label: "minimal HTTP gateway on raw Bun sockets", cmd: (p, u) => [BUN, join(HERE, "ceiling/http-proxy.ts"), String(p), String(u)] },
  { name: "bun-fetch", label: "minimal Bun.serve + fetch proxy", cmd: (p, u) => [BUN, join(HERE, "ceiling/fetch-proxy.ts"), String(p), String(u)] },
  { name: "deno-fetch", label: "minimal Deno.serve + fetch proxy", cmd: (p, u) => [DENO, "run", "-A", join(HERE, "ceiling/fetch-proxy.ts"), String(p), String(u)] },
];

async function measureCeilings(upPort: number, upPid: number): Promise<CeilingResult[]> {
  const conns = CONNS[CONNS.length - 1];
  // direct again, right before the proxies: the machine drifts over a long run, and the ratios are to this one
  log(`  ceiling direct: wrk ${conns} connections, ${DURATION}s`);
  const directUrl = `http://127.0.0.1:${upPort}/v1/chat/completions`;
  if (WARMUP_S) await wrk(directUrl, conns, WARMUP_S, BODY, "", false);
  const out: CeilingResult[] = [{ name: "direct", label: "direct to upstream (measured again before the proxies)", wrk: await wrkCpu(undefined, upPid, directUrl, conns, DURATION, BODY, "", false) }];
  for (const c of CEILINGS) {
    const res: CeilingResult = { name: c.name, label: c.label };
    out.push(res);
    const port = await freePort();
    const cmd = c.cmd(port, upPort);
    if (!cmd) {
      res.problem = "not installed";
      log(`  ceiling ${c.name}: not installed, skipped`);
      continue;
    }
    log(`  ceiling ${c.name}: wrk ${conns} connections, ${DURATION}s`);
    const proc = spawn(`ceiling-${c.name}`, cmd);
    try {
      const url = `http://127.0.0.1:${port}/v1/chat/completions`;
      await waitReady(`http://127.0.0.1:${port}/health`, proc, `ceiling-${c.name}`);
      // it must pass the upstream's answer on intact
      const answer = await (await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: BODY })).json() as any;
      if (answer?.object !== "chat.completion" || !answer.choices?.[0]?.message?.content) throw new Error(`wrong answer: ${JSON.stringify(answer).slice(0, 200)}`);
      if (WARMUP_S) await wrk(url, conns, WARMUP_S, BODY, "", false);
      res.wrk = await wrkCpu(proc.pid, upPid, url, conns, DURATION, BODY, "", false);
      if (res.wrk.errors) res.problem = `${res.wrk.errors} errors of ${res.wrk.requests}`;
    } catch (e) {
      res.problem = (e as Error).message;
      log(`  ceiling ${c.name}: ${res.problem}`);
    } finally {
      await stopProc(proc);
    }
  }
  return out;
}

// ---------- machine ----------
async function machine() {
  const ver = async (cmd: string[]) => {
    const r = await run(cmd).catch(() => ({ out: "", err: "", code: 1 }));
    return (r.out.trim() || r.err.trim()).split("\n")[0];
  };
  const os = (() => {
    try {
      return /PRETTY_NAME="([^"]+)"/.exec(readFileSync("/etc/os-release", "utf8"))?.[1] ?? "";
    } catch {
      return "";
    }
  })();
  return {
    cpu: `${cpus()[0]?.model ?? "?"} x ${cpus().length}`,
    memory_gb: Math.round(totalmem() / 2 ** 30),
    os: `${os}, kernel ${(await run(["uname", "-r"])).out.trim()}`,
    bun: Bun.version,
    deno: (await ver([DENO, "--version"])).replace(/^deno /, ""),
    node: (await ver(["node", "--version"])),
    wrk: (await ver(["wrk", "--version"])).replace(/ \[.*$/, ""),
    loadavg_start: loadavg().map((v) => v.toFixed(2)).join(" "),
    date: new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC",
  };
}

// ---------- report ----------
function report(results: LegResult[], m: Record<string, unknown>, ceilings: CeilingResult[] = [], realistic?: RealisticResult): { text: string; failed: boolean; targets: string[] } {
  const by = (n: LegName) => results.find((r) => r.name === n);
  const direct = by("direct");
  const out: string[] = [];
  const table = (head: string[], rows: (string | number)[][]) => {
    out.push(`| ${head.join(" | ")} |`, `| ${head.map((h, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`);
    for (const r of rows) out.push(`| ${r.join(" | ")} |`);
    out.push("");
  };
  const ok = results.filter((r) => r.wrk && Object.keys(r.wrk).length);
  if (SMOKE) {
    // a short table: the smoke run only proves every leg answers correctly end to end
    table(["leg", "checks", `req/s c=${CONNS.join(",")}`, `${RATE} req/s p50 ms`, "stream TTFB p50 ms", "chunks batched", "RSS idle / streams MB"], results.map((r) => [
      r.label, r.ok ? "ok" : `**FAILED**`, CONNS.map((c) => (r.wrk[c] ? Math.round(r.wrk[c].rps) : "-")).join(" / "), r1(r.rate?.latency_ms?.p50),
      r1(r.stream?.ttfb_ms?.p50), r.stream?.events ? `${r.stream.batched_events}/${r.stream.events}` : "-",
      r.mem ? `${r1(r.mem.idle_hwm)} / ${r1(r.hold?.peak_rss)}` : "-",
    ]));
    if (realistic) out.push(...realisticReport(realistic, r1).lines);
    const failedSmoke = !results.every((r) => r.ok) || !!realistic?.problems.length;
    if (failedSmoke) {
      out.push("Problems:");
      for (const r of results) for (const p of r.problems) out.push(`- ${r.label}: ${p}`);
      for (const p of realistic?.problems ?? []) out.push(`- realistic: ${p}`);
    }
    return { text: out.join("\n"), failed: failedSmoke, targets: [] };
  }

  if (ok.length) out.push(`### Throughput, fixed concurrency (wrk, ${DURATION}s per run, non-streaming)`, "");
  if (ok.length) table(
    ["leg", ...CONNS.flatMap((c) => [`req/s c=${c}`, `p50 / p99 ms c=${c}`]), `vs direct c=${CONNS[CONNS.length - 1]}`, ...(by("portkey") ? ["vs Portkey"] : []), `gateway CPU µs/req c=${CONNS[CONNS.length - 1]}`],
    ok.map((r) => {
      const last = CONNS[CONNS.length - 1];
      const vs = direct?.wrk[last] ? r.wrk[last].rps / direct.wrk[last].rps : NaN;
      const vp = by("portkey")?.wrk[last] ? r.wrk[last].rps / by("portkey")!.wrk[last].rps : NaN;
      return [r.label, ...CONNS.flatMap((c) => [r.wrk[c] ? Math.round(r.wrk[c].rps) : "-", r.wrk[c] ? `${r1(r.wrk[c].p50)} / ${r1(r.wrk[c].p99)}` : "-"]), `${(vs * 100).toFixed(0)}%`, ...(by("portkey") ? [`${vp.toFixed(2)}x`] : []), r.name === "direct" ? `(upstream ${r1(r.wrk[last]?.upstream_cpu_us)})` : r1(r.wrk[last]?.cpu_us)];
    }),
  );
  const lastC = CONNS[CONNS.length - 1];
  // the ceilings' own direct run (same minutes as the proxies) when there is one, else the legs' direct
  const ceilingDirect = ceilings.find((c) => c.name === "direct")?.wrk ?? direct?.wrk[lastC];
  if (ceilings.length && direct?.wrk[lastC] && ceilingDirect) {
    out.push(`### Throughput ceilings: proxies with no work of their own (wrk, ${lastC} connections, same upstream)`, "");
    const routers = results.filter((r) => (r.name === "bun" || r.name === "deno") && r.wrk[lastC]);
    table(["proxy", "req/s", "vs direct", "proxy CPU µs/req", "upstream CPU µs/req"], [
      ...ceilings.map((c) => c.wrk
        ? [c.label, Math.round(c.wrk.rps), pct(c.wrk.rps, ceilingDirect.rps), c.name === "direct" ? "-" : r1(c.wrk.cpu_us), r1(c.wrk.upstream_cpu_us)]
        : [c.label, "-", "-", "-", c.problem ?? "-"]),
      ...routers.map((r) => [`${r.label} (from the table above, against its direct)`, Math.round(r.wrk[lastC].rps), pct(r.wrk[lastC].rps, direct.wrk[lastC].rps), r1(r.wrk[lastC].cpu_us), r1(r.wrk[lastC].upstream_cpu_us)]),
    ]);
  }
  if (results.some((r) => r.wrkStream)) {
    out.push("### Streaming throughput (wrk, 16 connections, 20-chunk streams written back to back)", "");
    table(["leg", "streams/s", "p50 / p99 ms", "vs direct", "gateway CPU µs/stream"], results.filter((r) => r.wrkStream).map((r) => [
      r.label, Math.round(r.wrkStream!.rps), `${r1(r.wrkStream!.p50)} / ${r1(r.wrkStream!.p99)}`, direct?.wrkStream ? pct(r.wrkStream!.rps, direct.wrkStream.rps) : "-",
      r.name === "direct" ? `(upstream ${r1(r.wrkStream!.upstream_cpu_us)})` : r1(r.wrkStream!.cpu_us),
    ]));
  }
  for (const [key, rate] of [["rate", RATE], ["rateLow", LOW_RATE]] as const) {
    const withRate = results.filter((r) => r[key]);
    if (!withRate.length) continue;
    out.push(`### Latency at a fixed ${rate} req/s (open loop, non-streaming; overhead = leg - direct)`, "");
    const d = direct?.[key]?.latency_ms;
    table(["leg", "achieved req/s", "p50 ms", "p99 ms", "p99.9 ms", "overhead p50 ms", "overhead p99 ms"], withRate.map((r) => {
      const l = r[key].latency_ms;
      const sat = r[key].achieved_rps < 0.95 * rate ? " (saturated)" : "";
      return [r.label, r1(r[key].achieved_rps) + sat, r1(l.p50), r1(l.p99), r1(l.p999), r.name === "direct" ? "-" : r1(l.p50 - d.p50), r.name === "direct" ? "-" : r1(l.p99 - d.p99)];
    }));
  }
  const withStream = results.filter((r) => r.stream?.ttfb_ms?.n);
  if (withStream.length) {
    out.push(`### Streams (${STREAM_CONC} concurrent, 20 chunks 2 ms apart; transit = client receive time - upstream send time)`, "");
    const d = direct?.stream;
    table(["leg", "streams", "TTFB p50 / p99 ms", "TTFB overhead p50 ms", "chunk transit p50 / p99 ms", "transit overhead p50 / p99 ms", "inter-chunk gap p50 / p99 ms", "batched chunks"], withStream.map((r) => {
      const s = r.stream;
      const batched = s.events ? `${((s.batched_events / s.events) * 100).toFixed(1)}%` : "-";
      return [
        r.label, s.streams, `${r1(s.ttfb_ms.p50)} / ${r1(s.ttfb_ms.p99)}`, r.name === "direct" ? "-" : r1(s.ttfb_ms.p50 - d.ttfb_ms.p50),
        `${r1(s.chunk_transit_ms.p50)} / ${r1(s.chunk_transit_ms.p99)}`,
        r.name === "direct" ? "-" : `${r1(s.chunk_transit_ms.p50 - d.chunk_transit_ms.p50)} / ${r1(s.chunk_transit_ms.p99 - d.chunk_transit_ms.p99)}`,
        `${r1(s.chunk_gap_ms.p50)} / ${r1(s.chunk_gap_ms.p99)}`, batched,
      ];
    }));
  }
  const withMem = results.filter((r) => r.mem || r.hold);
  if (withMem.length) {
    out.push(`### Memory of the gateway process (MB; /proc/PID/status)`, "");
    table(["leg", "idle (VmHWM after start + 1 request)", "peak under the load above (VmHWM)", `${OPEN_STREAMS} open streams: open at once`, "peak RSS with them open", "note"], withMem.map((r) => {
      const hd = (r as any).hold_default;
      return [
        r.label, r1(r.hold?.idle_hwm ?? r.mem?.idle_hwm), r1(r.mem?.load_hwm),
        r.hold ? `${hd ? `${hd.max_open} (default), ` : ""}${r.hold.max_open}${r.hold.open_ms !== undefined ? ` in ${r1(r.hold.open_ms)} ms` : ""}` : "-",
        r.hold ? r1(r.hold.peak_rss) : "-", r.hold?.note ?? hd?.note ?? "",
      ];
    }));
  }
  const fOn = results.filter((r) => r.name.endsWith("-features") && r.rate);
  if (fOn.length) {
    out.push("### Every feature on vs all off (scripts/bench.d/router-features.yaml vs router.yaml)", "");
    const last = CONNS[CONNS.length - 1];
    table(["runtime", `req/s c=${last} off / on`, `${RATE} req/s p50 ms off / on`, `p99 ms off / on`, "added p50 / p99 ms"], fOn.map((on) => {
      const off = by(on.name.replace("-features", "") as LegName);
      const a = off?.rate?.latency_ms, b = on.rate.latency_ms;
      return [on.name.replace("-features", ""), `${off?.wrk[last] ? Math.round(off.wrk[last].rps) : "-"} / ${on.wrk[last] ? Math.round(on.wrk[last].rps) : "-"}`,
        `${r1(a?.p50)} / ${r1(b.p50)}`, `${r1(a?.p99)} / ${r1(b.p99)}`, a ? `${r1(b.p50 - a.p50)} / ${r1(b.p99 - a.p99)}` : "-"];
    }));
  }

  // targets (issue 7), for each router leg
  const targets: string[] = [];
  const pk = by("portkey");
  for (const r of results.filter((x) => x.name === "bun" || x.name === "deno")) {
    if (!direct) continue;
    const last = CONNS[CONNS.length - 1];
    const check = (name: string, pass: boolean, detail: string) => targets.push(`| ${r.label} | ${name} | ${detail} | ${pass ? "yes" : "**no**"} |`);
    if (direct.rate && r.rate) {
      const oh50 = r.rate.latency_ms.p50 - direct.rate.latency_ms.p50, oh99 = r.rate.latency_ms.p99 - direct.rate.latency_ms.p99;
      check(`overhead at ${RATE} req/s p50 <= 0.5 ms`, oh50 <= 0.5, `${r1(oh50)} ms`);
      check(`overhead at ${RATE} req/s p99 <= 3 ms`, oh99 <= 3, `${r1(oh99)} ms`);
    }
    if (pk?.rate && pk.wrk[last] && r.wrk[last] && r.rate) {
      for (const [key, rate] of [["rate", RATE], ["rateLow", LOW_RATE]] as const) {
        if (!pk[key] || !r[key] || !direct[key]) continue;
        const d = direct[key].latency_ms, me = r[key].latency_ms, p = pk[key].latency_ms;
        const p50 = p.p50 - d.p50, p99 = p.p99 - d.p99, m50 = me.p50 - d.p50, m99 = me.p99 - d.p99;
        check(`overhead at ${rate} req/s >= 2x lower than Portkey (p50, p99)`, p50 >= 2 * m50 && p99 >= 2 * m99, `Portkey ${r1(p50)} / ${r1(p99)} ms vs ${r1(m50)} / ${r1(m99)} ms`);
      }
      check(`throughput c=${last} higher than Portkey`, r.wrk[last].rps > pk.wrk[last].rps, `${(r.wrk[last].rps / pk.wrk[last].rps).toFixed(2)}x`);
    }
    if (r.stream?.ttfb_ms?.n && direct.stream?.ttfb_ms?.n) {
      const t = r.stream.ttfb_ms.p50 - direct.stream.ttfb_ms.p50;
      check("stream TTFB p50 within 1 ms of direct", t <= 1, `+${r1(t)} ms`);
      const c99 = r.stream.chunk_transit_ms.p99 - direct.stream.chunk_transit_ms.p99;
      check("each chunk within 1 ms (transit overhead p99)", c99 <= 1, `+${r1(c99)} ms (p50 +${r1(r.stream.chunk_transit_ms.p50 - direct.stream.chunk_transit_ms.p50)} ms)`);
    }
    if (r.hold) {
      check("RSS idle <= 80 MB", r.hold.idle_hwm <= 80, `${r1(r.hold.idle_hwm)} MB`);
      const hd = (r as any).hold_default;
      if (hd) check(`${OPEN_STREAMS} streams open at once, as shipped`, hd.max_open >= OPEN_STREAMS, `${hd.max_open} (${hd.note})`);
      check(`RSS with ${OPEN_STREAMS} open streams <= 250 MB`, r.hold.peak_rss <= 250 && r.hold.max_open >= OPEN_STREAMS, `${r1(r.hold.peak_rss)} MB${r.hold.note ? ` (${r.hold.note})` : ""}`);
    }
  }
  if (realistic) {
    const rr = realisticReport(realistic, r1);
    out.push(...rr.lines);
    targets.push(...rr.targets);
  }
  if (targets.length) {
    out.push("### Targets", "", "| leg | target | measured | met |", "| --- | --- | ---: | --- |", ...targets, "");
  }
  const failed = results.some((r) => !r.ok) || !!realistic?.problems.length;
  if (failed) {
    out.push("### Problems", "");
    for (const r of results) for (const p of r.problems) out.push(`- ${r.label}: ${p}`);
    for (const p of realistic?.problems ?? []) out.push(`- realistic: ${p}`);
    out.push("");
  }
  out.push(`Machine: ${m.cpu}, ${m.memory_gb} GB, ${m.os}; Bun ${m.bun}, Deno ${m.deno}, Node ${m.node}, ${m.wrk}; load average at start ${m.loadavg_start}; ${m.date}.`);
  return { text: out.join("\n"), failed, targets };
}

function writeDocs(text: string, cmd: string) {
  const path = join(ROOT, "docs/benchmarks.md");
  const begin = "<!-- bench:results:begin -->", end = "<!-- bench:results:end -->";
  const doc = existsSync(path) ? readFileSync(path, "utf8") : `# Benchmarks\n\n${begin}\n${end}\n`;
  // the markers on lines of their own (the options table above names them too)
  const i = doc.indexOf(`\n${begin}\n`) + 1, j = doc.indexOf(`\n${end}`) + 1;
  if (i <= 0 || j < i) fail(`docs/benchmarks.md has no ${begin} ... ${end} section`);
  const block = `${begin}\n<!-- generated by \`${cmd}\`; do not edit by hand -->\n\n${text}\n${end}`;
  writeFileSync(path, doc.slice(0, i) + block + doc.slice(j + end.length));
  log(`wrote docs/benchmarks.md`);
}

// ---------- profile mode ----------
interface ProfNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
interface CpuProfile { nodes: ProfNode[]; samples: number[]; timeDeltas: number[] }
/** Top functions by self time, and the project's own functions (src/) by inclusive time. */
function summarizeProfile(p: CpuProfile, top = 22): string {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const keyOf = (n: ProfNode) => {
    const f = n.callFrame;
    const url = f.url.replace(/^file:\/\//, "").replace(ROOT + "/", "").replace(/^.*node_modules\//, "");
    return `${f.functionName || "(anonymous)"}${url ? `  ${url}:${f.lineNumber + 1}` : ""}`;
  };
  const self = new Map<string, number>(), incl = new Map<string, number>();
  let total = 0, idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i]);
    const dt = p.timeDeltas[i] ?? 0;
    if (!n) continue;
    const name = n.callFrame.functionName;
    if (name === "(idle)" || name === "(program)" || name === "(garbage collector)") {
      if (name === "(idle)") { idle += dt; continue; }
    }
    total += dt;
    self.set(keyOf(n), (self.get(keyOf(n)) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const m = byId.get(id)!;
      if (!m.callFrame.url.includes("/src/") || m.callFrame.url.includes("node_modules")) continue;
      const k = keyOf(m);
      if (seen.has(k)) continue;
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + dt);
    }
  }
  const fmt = (m: Map<string, number>) =>
    [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => `${((v / total) * 100).toFixed(1).padStart(5)}%  ${k}`).join("\n");
  return `busy samples ${(total / 1000).toFixed(0)} ms (idle ${(idle / 1000).toFixed(0)} ms)\n-- self time --\n${fmt(self)}\n-- inclusive time, src/ --\n${fmt(incl)}`;
}

/** CPU profile over the V8 inspector protocol (Deno has no --cpu-prof): Profiler.start ... Profiler.stop. */
async function inspectorProfile(inspectPort: number, during: () => Promise<void>): Promise<CpuProfile> {
  const list = await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json() as { webSocketDebuggerUrl: string }[];
  const ws = new WebSocket(list[0].webSocketDebuggerUrl);
  await new Promise((res, rej) => { ws.onopen = res; ws.onerror = rej; });
  let id = 0;
  const pending = new Map<number, (v: any) => void>();
  ws.onmessage = (ev) => {
    const msg = JSON.parse(String(ev.data));
    if (msg.id !== undefined) pending.get(msg.id)?.(msg.result);
  };
  const send = (method: string, params: object = {}) => new Promise<any>((res) => {
    pending.set(++id, res);
    ws.send(JSON.stringify({ id, method, params }));
  });
  await send("Profiler.enable");
  await send("Profiler.setSamplingInterval", { interval: 1000 });
  await send("Profiler.start");
  await during();
  const { profile } = await send("Profiler.stop");
  ws.close();
  return profile;
}

async function profile(runtime: string, upstream: string) {
  const dir = join(BENCH_DIR, `prof-${runtime}`);
  mkdirSync(dir, { recursive: true });
  const cfg = join(HERE, "router.yaml");
  for (const [label, body] of [["non-streaming", BODY], ["streaming", STREAM_BODY]] as const) {
    for (const f of readdirSync(dir)) if (f.endsWith(".cpuprofile")) rmSync(join(dir, f));
    const port = await freePort();
    const inspectPort = await freePort();
    const cmd = runtime === "bun"
      ? [BUN, "--cpu-prof", `--cpu-prof-dir=${dir}`, "src/main.bun.ts", "--config", cfg, "--host", "127.0.0.1", "--port", String(port)]
      : [DENO, "run", "-A", `--inspect=127.0.0.1:${inspectPort}`, "src/main.deno.ts", "--config", cfg, "--host", "127.0.0.1", "--port", String(port)];
    const proc = spawn(`prof-${runtime}`, cmd, { BENCH_UPSTREAM: `${upstream}/v1` });
    await waitReady(`http://127.0.0.1:${port}/health`, proc, `prof-${runtime}`);
    const url = `http://127.0.0.1:${port}/v1/chat/completions`;
    await wrk(url, 16, 1, body, "", false); // warm up the JIT
    log(`profiling ${runtime}, ${label}: wrk c=16 ${DURATION}s`);
    let w: WrkResult | undefined;
    let prof: CpuProfile;
    if (runtime === "bun") {
      w = await wrk(url, 16, DURATION, body, "", false);
      await stopProc(proc, "SIGINT");
      const files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"));
      if (!files.length) fail(`no .cpuprofile written in ${dir}`);
      prof = JSON.parse(readFileSync(join(dir, files.sort().pop()!), "utf8"));
    } else {
      prof = await inspectorProfile(inspectPort, async () => {
        w = await wrk(url, 16, DURATION, body, "", false);
      });
      await stopProc(proc);
    }
    const file = join(dir, `${label}.cpuprofile`);
    writeFileSync(file, JSON.stringify(prof));
    console.log(`\n=== ${runtime}, ${label}: ${Math.round(w!.rps)} req/s under the profiler; ${file.replace(ROOT + "/", "")} ===`);
    console.log(summarizeProfile(prof));
  }
}

// ---------- main ----------
function benchCommand(): string {
  const rest = argv.filter((a) => a !== "--write-docs");
  return rest.length ? `npm run bench -- ${rest.join(" ")}` : "npm run bench";
}

/** --from FILE: render the tables (and --write-docs) again from a saved results JSON, without measuring. */
function fromSaved(file: string) {
  const saved = JSON.parse(readFileSync(file, "utf8"));
  ({ DURATION, CONNS, RATE, OPEN_STREAMS, STREAM_CONC } = saved.options);
  LOW_RATE = saved.options.LOW_RATE ?? 0;
  const { text, failed } = report(saved.results, saved.machine, saved.ceilings ?? [], saved.realistic);
  console.log(text);
  if (WRITE_DOCS) writeDocs(text, saved.command ?? "npm run bench");
  process.exit(failed ? 1 : 0);
}

async function main() {
  if (opt("--from", "")) return fromSaved(opt("--from", ""));
  const upPort = await freePort();
  const up = spawn("upstream", [BUN, join(HERE, "upstream.ts"), "--port", String(upPort)], { HOLD_MS: SMOKE ? "300" : "8000" });
  const upstream = `http://127.0.0.1:${upPort}`;
  await waitReady(`${upstream}/health`, up, "upstream");
  if (PROFILE) {
    if (PROFILE !== "bun" && PROFILE !== "deno") fail("--profile takes bun or deno");
    await profile(PROFILE, upstream);
    await stopProc(up);
    return;
  }
  const m = await machine();
  const t0 = performance.now();
  const results: LegResult[] = [];
  for (const name of LEGS) {
    log(`leg ${name}`);
    results.push(await measureLeg(makeLeg(name), upstream, up.pid));
  }
  const ceilings = SECTIONS.has("ceiling") ? (log("throughput ceilings"), await measureCeilings(upPort, up.pid)) : [];
  const runtimes = (["bun", "deno"] as const).filter((rt) => LEGS.includes(rt));
  const realistic = SECTIONS.has("realistic") && runtimes.length
    ? (log("realistic workload"), await measureRealistic({
      smoke: SMOKE, runtimes: [...runtimes], here: HERE, bun: BUN, deno: DENO, routerBin: ROUTER_BIN, body: BODY, upstream, upPid: up.pid!,
      paced: REAL_PACED, open: REAL_OPEN, json: REAL_JSON, ratioSecs: RATIO_SECS, ratioRounds: RATIO_ROUNDS,
      log, spawn, stopProc, freePort, waitReady, cpuMicros, procStatus, wrkCpu, wrk, client, featureHeaders,
    }))
    : undefined;
  await stopProc(up);
  const { text, failed } = report(results, m, ceilings, realistic);
  mkdirSync(BENCH_DIR, { recursive: true });
  writeFileSync(join(BENCH_DIR, SMOKE ? "results-smoke.json" : "results.json"), JSON.stringify({ machine: m, command: benchCommand(), options: { DURATION, CONNS, RATE, LOW_RATE, OPEN_STREAMS, STREAM_CONC }, results, ceilings, realistic }, null, 2));
  console.log(text);
  log(`done in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  if (WRITE_DOCS) writeDocs(text, benchCommand());
  if (SMOKE) console.log(failed ? "bench smoke: FAILED" : "bench smoke: OK");
  process.exit(failed ? 1 : 0);
}

await main();
