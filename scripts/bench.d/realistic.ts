// The realistic section of the benchmark (docs/benchmarks.md, "Realistic workload"), run by run.ts:
//   ratio  gateway CPU per non-streaming request at 64 connections against the plain fast upstream, for the minimal
//          proxy on the same runtime (ceiling/fetch-proxy.ts), the router with every feature off and with every
//          feature on, measured one after the other
//   paced  N concurrent streams paced like a model (first token after 300 ms, then 40 tokens/s) from an HTTPS
//          upstream whose CA the router trusts through tls.ca_file: direct first, then each router leg. Router CPU
//          per chunk (/proc/PID/stat), per-chunk transit and TTFB overhead (leg - direct), TLS connections opened
//   json   non-streaming requests at a fixed rate from the same HTTPS upstream, each answered after 300 ms
//          (jittered): direct first, then each router leg. Router CPU per request, latency overhead (leg - direct),
//          TLS connections opened
//   open   N slow streams (one chunk every 2 s) held open at once through the bare compiled binary (no environment
//          variable set): errors, peak RSS above idle per open stream
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { makeTestCa } from "../../tests/helpers/tls.ts";

type Proc = ReturnType<typeof Bun.spawn>;
interface Wrk { rps: number; requests: number; errors: number; cpu_us?: number }

/** What run.ts lends this section: its process helpers, load generators and settings. */
export interface RealisticCtx {
  smoke: boolean;
  runtimes: ("bun" | "deno")[];
  here: string;
  bun: string;
  deno: string;
  routerBin: string;
  body: string;
  /** the plain fast upstream (ratio rows), its pid */
  upstream: string;
  upPid: number;
  paced: { streams: number; secs: number; tokens: number };
  open: { streams: number; secs: number };
  /** non-streaming requests per second over TLS (0: none), for `secs` seconds per leg */
  json: { rate: number; secs: number };
  ratioSecs: number;
  /** rounds of the CPU-per-request rows, measured in turn */
  ratioRounds: number;
  log(msg: string): void;
  spawn(name: string, cmd: string[], env?: Record<string, string>): Proc;
  stopProc(p: Proc): Promise<unknown>;
  freePort(): Promise<number>;
  waitReady(url: string, p: Proc, name: string): Promise<void>;
  cpuMicros(pid: number | undefined): number;
  procStatus(pid: number): { rss: number; hwm: number } | undefined;
  wrkCpu(pid: number | undefined, upPid: number, url: string, conns: number, secs: number, body: string, headers: string, idem: boolean): Promise<Wrk>;
  wrk(url: string, conns: number, secs: number, body: string, headers: string, idem: boolean): Promise<Wrk>;
  client(mode: string, args: (string | number)[], headers: string, env?: Record<string, string>): Promise<{ code: number; json: any; out: string; err: string }>;
  featureHeaders(yamlPath: string): string;
}

export interface RatioRow {
  runtime: string; proxy_us: number; off_us: number; on_us: number; problems: string[];
  /** each round's figures: minimal proxy, features off, features on */
  rounds?: number[][];
}
export interface PacedRow {
  leg: string; label: string; streams: number; errors: number; firstError: string; chunks: number; cpu_us_per_chunk?: number;
  ttfb_ms: any; ttfb_net_ms?: any; first_chunk_transit_ms?: any; chunk_transit_ms: any; tls_connections?: number;
  /** the whole machine's CPU busy over the run, in cores (/proc/stat): how close the run came to saturating it */
  machine_busy_cores?: number;
}
export interface JsonRow {
  leg: string; label: string; requests: number; errors: number; firstError: string; achieved_rps: number; cpu_us_per_request?: number;
  latency_ms: any; tls_connections?: number;
  machine_busy_cores?: number;
}
/** A paced or json leg: direct (no start), a router, or a reference proxy. */
type Leg = { leg: string; label: string; start?: () => Promise<{ proc: Proc; url: string }> };
export interface OpenRow { requested: number; max_open: number; completed: number; errors: number; firstError: string; idle_rss: number; peak_rss: number; kb_per_stream: number; open_files_limit?: number }
export interface RealisticResult {
  ratio: RatioRow[]; paced: PacedRow[]; json?: JsonRow[]; open?: OpenRow;
  options: RealisticCtx["paced"] & { open: RealisticCtx["open"]; json?: RealisticCtx["json"] }; problems: string[];
}

/** The open streams start spread over this long: clients arrive over time (9,000 handshakes in one instant test the listen backlog). */
const openRampMs = (ctx: RealisticCtx) => (ctx.smoke ? 200 : Number(process.env.BENCH_OPEN_RAMP_MS ?? 3000));
/** Chunks of a slow stream (one every 2 s, the first at once): open for about open.secs once all have started. */
const slowChunks = (ctx: RealisticCtx) => Math.ceil((ctx.open.secs + openRampMs(ctx) / 1000) / 2) + 1;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function measureRealistic(ctx: RealisticCtx): Promise<RealisticResult> {
  const res: RealisticResult = { ratio: [], paced: [], json: [], options: { ...ctx.paced, open: ctx.open, json: ctx.json }, problems: [] };
  const problem = (p: string) => {
    res.problems.push(p);
    ctx.log(`  realistic: ${p}`);
  };
  for (const rt of ctx.ratioSecs <= 0 ? [] : ctx.smoke ? ctx.runtimes.slice(0, 1) : ctx.runtimes) {
    try {
      res.ratio.push(await ratio(ctx, rt));
    } catch (e) {
      problem(`ratio ${rt}: ${(e as Error).message}`);
    }
  }
  const ca = makeTestCa("failover-router bench CA");
  const caEnv = { NODE_EXTRA_CA_CERTS: ca.caFile }; // the clients and the direct leg trust it the runtime's way
  const upPort = await ctx.freePort();
  const upEnv = { TOKENS: String(ctx.paced.tokens), SLOW_CHUNKS: String(slowChunks(ctx)) };
  const up = ctx.spawn("upstream-tls", [ctx.bun, join(ctx.here, "upstream-tls.ts"), "--port", String(upPort), "--key", join(ca.dir, "leaf.key"), "--cert", join(ca.dir, "leaf.pem")], upEnv);
  const upUrl = `https://127.0.0.1:${upPort}`;
  const caPem = await Bun.file(ca.caFile).text();
  const tlsStats = async () => (await (await fetch(`${upUrl}/stats`, { tls: { ca: caPem } })).json()) as { tls_connections: number; open_streams: number };
  try {
    await waitTls(tlsStats, up, ctx);
    const legs: Leg[] = [{ leg: "direct", label: "direct to upstream (TLS)" }];
    for (const rt of ctx.runtimes) legs.push({ leg: rt, label: `router on ${rt === "bun" ? "Bun (compiled)" : "Deno"}`, start: () => startRouter(ctx, rt, upUrl, ca.caFile) });
    // the paced streams also through the least a Bun gateway can do (Bun.serve + fetch, the answer piped natively),
    // and the least one that passes each chunk through JavaScript can: what the machine and the runtime cost at
    // this load before anything the router does
    const proxies = [
      { leg: "proxy-bun", label: "minimal Bun proxy (Bun.serve + fetch)", start: () => startProxy(ctx, "real-proxy-bun", "bun", upUrl, caEnv) },
      { leg: "jspipe-bun", label: "minimal Bun proxy, chunks through JavaScript", start: () => startProxy(ctx, "real-jspipe-bun", "bun", upUrl, caEnv, ["--through-js"]) },
    ];
    for (const l of ctx.paced.streams > 0 ? (ctx.runtimes.includes("bun") ? [...legs, ...proxies] : legs) : []) {
      try {
        res.paced.push(await paced(ctx, l, upUrl, tlsStats, caEnv));
        const row = res.paced[res.paced.length - 1];
        if (row.errors) problem(`paced ${l.leg}: ${row.errors} errors (${row.firstError})`);
      } catch (e) {
        problem(`paced ${l.leg}: ${(e as Error).message}`);
      }
    }
    for (const l of ctx.json.rate > 0 ? legs : []) {
      try {
        const row = await json(ctx, l, upUrl, tlsStats, caEnv);
        res.json!.push(row);
        if (row.errors) problem(`json ${l.leg}: ${row.errors} errors (${row.firstError})`);
      } catch (e) {
        problem(`json ${l.leg}: ${(e as Error).message}`);
      }
    }
    if (ctx.runtimes.includes("bun") && ctx.open.streams > 0) {
      try {
        res.open = await openStreams(ctx, upUrl, ca.caFile);
        if (res.open.errors) problem(`open streams: ${res.open.errors} of ${res.open.requested} failed (${res.open.firstError})`);
        if (res.open.max_open < res.open.requested) problem(`open streams: only ${res.open.max_open} of ${res.open.requested} open at once`);
      } catch (e) {
        problem(`open streams: ${(e as Error).message}`);
      }
    }
  } finally {
    await ctx.stopProc(up);
  }
  return res;
}

async function waitTls(stats: () => Promise<unknown>, p: Proc, ctx: RealisticCtx) {
  for (let i = 0; i < 200; i++) {
    if (p.exitCode !== null) throw new Error("upstream-tls exited; see .bench/upstream-tls.log.err");
    try {
      return void (await stats());
    } catch { /* not yet */ }
    await sleep(50);
  }
  ctx.log("  realistic: the TLS upstream did not answer");
  throw new Error("the TLS upstream did not start");
}

async function startRouter(ctx: RealisticCtx, rt: "bun" | "deno", upUrl: string, caFile: string, env: Record<string, string> = {}, cfg = "router-tls.yaml") {
  const port = await ctx.freePort();
  const config = join(ctx.here, cfg);
  const args = ["--config", config, "--host", "127.0.0.1", "--port", String(port)];
  const cmd = rt === "bun" ? [ctx.routerBin, ...args] : [ctx.deno, "run", "-A", "src/main.deno.ts", ...args];
  const proc = ctx.spawn(`real-${rt}`, cmd, { BENCH_UPSTREAM: `${upUrl}/v1`, BENCH_CA_FILE: caFile, ...env });
  await ctx.waitReady(`http://127.0.0.1:${port}/health`, proc, `real-${rt}`);
  return { proc, url: `http://127.0.0.1:${port}/v1/chat/completions` };
}

/** The reference legs of the paced streams: measured beside the routers, not held to the router's targets. */
const REFERENCE_LEGS = new Set(["proxy-bun", "jspipe-bun"]);

/** The minimal proxy (ceiling/fetch-proxy.ts) on `rt` in front of `upstream` (a port or a URL). */
async function startProxy(ctx: RealisticCtx, name: string, rt: "bun" | "deno", upstream: string, env: Record<string, string> = {}, flags: string[] = []) {
  const port = await ctx.freePort();
  const script = join(ctx.here, "ceiling/fetch-proxy.ts");
  const args = [script, String(port), upstream, ...flags];
  // Bun's fetch runs at most 256 requests at once unless told otherwise
  const proc = ctx.spawn(name, rt === "bun" ? [ctx.bun, ...args] : [ctx.deno, "run", "-A", ...args], { ...env, BUN_CONFIG_MAX_HTTP_REQUESTS: "65535" });
  await ctx.waitReady(`http://127.0.0.1:${port}/health`, proc, name);
  return { proc, url: `http://127.0.0.1:${port}/v1/chat/completions` };
}

/**
 * CPU per non-streaming request at 64 connections: the minimal proxy, the router with every feature off, then on,
 * all three up at once and measured in turn for `ratioRounds` rounds; each figure is the median of its rounds, so
 * a drift of the machine during one run moves all three alike.
 */
async function ratio(ctx: RealisticCtx, rt: "bun" | "deno"): Promise<RatioRow> {
  const row: RatioRow = { runtime: rt, proxy_us: NaN, off_us: NaN, on_us: NaN, problems: [] };
  const secs = ctx.ratioSecs;
  const rounds = ctx.smoke ? 1 : ctx.ratioRounds;
  const procs: Proc[] = [];
  try {
    const proxy = await startProxy(ctx, `ratio-${rt}-proxy`, rt, new URL(ctx.upstream).port);
    procs.push(proxy.proc);
    const targets: { name: string; proc: Proc; url: string; headers: string; idem: boolean; us: number[] }[] = [
      { name: "minimal proxy", proc: proxy.proc, url: proxy.url, headers: "", idem: false, us: [] },
    ];
    for (const features of [false, true]) {
      const cfg = features ? "router-features.yaml" : "router.yaml";
      const r = await startRouter(ctx, rt, ctx.upstream, "", {}, cfg);
      procs.push(r.proc);
      targets.push({
        name: features ? "router, every feature on" : "router, features off", proc: r.proc, url: r.url,
        headers: features ? ctx.featureHeaders(join(ctx.here, cfg)) : "", idem: features, us: [],
      });
    }
    for (let round = 0; round < rounds; round++) {
      for (const t of targets) {
        ctx.log(`  ratio ${rt} ${t.name}: wrk 64 connections, ${secs}s (round ${round + 1} of ${rounds})`);
        if (!ctx.smoke) await ctx.wrk(t.url, 64, 1, ctx.body, t.headers, t.idem);
        const w = await ctx.wrkCpu(t.proc.pid, ctx.upPid, t.url, 64, secs, ctx.body, t.headers, t.idem);
        if (w.errors || !w.requests) row.problems.push(`${t.name}: ${w.errors} errors of ${w.requests}`);
        t.us.push(w.cpu_us!);
      }
    }
    [row.proxy_us, row.off_us, row.on_us] = targets.map((t) => median(t.us));
    row.rounds = targets.map((t) => t.us);
  } finally {
    for (const p of procs) await ctx.stopProc(p);
  }
  return row;
}

function median(v: number[]): number {
  const a = [...v].sort((x, y) => x - y);
  return a.length % 2 ? a[(a.length - 1) / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
}

/** The machine's CPU time from /proc/stat, in ticks: busy (everything but idle and iowait) and total, and its core count. */
function machineTicks(): { busy: number; total: number; cores: number } | undefined {
  try {
    const lines = readFileSync("/proc/stat", "utf8").split("\n");
    const f = lines[0].trim().split(/\s+/).slice(1).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    return { busy: total - f[3] - (f[4] ?? 0), total, cores: lines.filter((l) => /^cpu\d/.test(l)).length };
  } catch {
    return undefined;
  }
}

/** What one leg's client run measured: its output, the leg's CPU time, the machine's busy cores and the TLS connections it opened. */
async function measureLeg(
  ctx: RealisticCtx, l: Leg, upUrl: string, tlsStats: () => Promise<{ tls_connections: number }>,
  run: (url: string) => Promise<{ json: any }>,
): Promise<{ j: any; cpu: number | undefined; busy: number | undefined; tls: number | undefined }> {
  const started = l.start ? await l.start() : undefined;
  try {
    const tls0 = (await tlsStats()).tls_connections;
    const c0 = ctx.cpuMicros(started?.proc.pid);
    const m0 = machineTicks();
    const r = await run(started?.url ?? `${upUrl}/v1/chat/completions`);
    const cpu = ctx.cpuMicros(started?.proc.pid) - c0;
    const m1 = machineTicks();
    const tls = (await tlsStats()).tls_connections - tls0;
    return {
      j: r.json, cpu: started ? cpu : undefined, tls: started ? tls : undefined,
      busy: m0 && m1 ? (m1.busy - m0.busy) / ((m1.total - m0.total) / m1.cores) : undefined,
    };
  } finally {
    if (started) await ctx.stopProc(started.proc);
  }
}

async function paced(ctx: RealisticCtx, l: Leg, upUrl: string, tlsStats: () => Promise<{ tls_connections: number }>, caEnv: Record<string, string>): Promise<PacedRow> {
  const { streams, secs, tokens } = ctx.paced;
  const env = { ...caEnv, BENCH_MODEL: "real", BENCH_CHUNKS: String(tokens), BENCH_STAGGER_MS: "1000" };
  ctx.log(`  paced ${l.leg}: ${streams} streams of ${tokens} tokens over TLS, ${secs}s`);
  const { j, cpu, busy, tls } = await measureLeg(ctx, l, upUrl, tlsStats, (url) => ctx.client("stream", [url, streams, secs], "", env));
  return {
    leg: l.leg, label: l.label, streams: j.streams, errors: j.errors, firstError: j.firstError, chunks: j.all_events,
    cpu_us_per_chunk: cpu === undefined ? undefined : cpu / j.all_events, ttfb_ms: j.ttfb_ms, ttfb_net_ms: j.ttfb_net_ms,
    first_chunk_transit_ms: j.first_chunk_transit_ms, chunk_transit_ms: j.chunk_transit_ms, tls_connections: tls, machine_busy_cores: busy,
  };
}

/** Non-streaming requests at json.rate per second (open loop) through the leg to the HTTPS upstream. */
async function json(ctx: RealisticCtx, l: Leg, upUrl: string, tlsStats: () => Promise<{ tls_connections: number }>, caEnv: Record<string, string>): Promise<JsonRow> {
  const { rate, secs } = ctx.json;
  ctx.log(`  json ${l.leg}: ${rate} non-streaming requests/s over TLS, ${secs}s`);
  const { j, cpu, busy, tls } = await measureLeg(ctx, l, upUrl, tlsStats, (url) => ctx.client("rate", [url, rate, secs], "", { ...caEnv, BENCH_MODEL: "real" }));
  return {
    leg: l.leg, label: l.label, requests: j.requests, errors: j.errors, firstError: j.firstError, achieved_rps: j.achieved_rps,
    cpu_us_per_request: cpu === undefined ? undefined : cpu / j.requests, latency_ms: j.latency_ms, tls_connections: tls, machine_busy_cores: busy,
  };
}

/** N slow streams at once through the compiled binary as shipped (none of the bench's environment variables). */
async function openStreams(ctx: RealisticCtx, upUrl: string, caFile: string): Promise<OpenRow> {
  const { streams, secs } = ctx.open;
  ctx.log(`  open: ${streams} slow streams over TLS through the bare compiled binary, ${secs}s`);
  // the bare binary: none of Bun's variables (BUN_CONFIG_MAX_HTTP_REQUESTS, ...) reach it from the bench's environment
  for (const k of Object.keys(process.env)) if (k.startsWith("BUN_CONFIG_") || k === "NODE_EXTRA_CA_CERTS") delete process.env[k];
  const r = await startRouter(ctx, "bun", upUrl, caFile);
  try {
    await sleep(500);
    const idle = ctx.procStatus(r.proc.pid)!;
    let peak = idle.rss;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const s = ctx.procStatus(r.proc.pid);
        if (s) peak = Math.max(peak, s.rss);
        await sleep(100);
      }
    })();
    const c = await ctx.client("hold", [r.url, streams, secs + 30], "", { BENCH_MODEL: "slow", BENCH_CHUNKS: String(slowChunks(ctx)), BENCH_STAGGER_MS: String(openRampMs(ctx)) });
    sampling = false;
    await sampler;
    const limits = await Bun.file(`/proc/${r.proc.pid}/limits`).text().catch(() => "");
    const fds = /^Max open files\s+(\d+)/m.exec(limits)?.[1];
    return {
      requested: streams, max_open: c.json.max_open_at_once, completed: c.json.completed, errors: c.json.errors, firstError: c.json.firstError,
      idle_rss: idle.rss, peak_rss: peak, kb_per_stream: ((peak - idle.rss) * 1024) / streams, open_files_limit: fds ? Number(fds) : undefined,
    };
  } finally {
    await ctx.stopProc(r.proc);
  }
}

/** The section's tables and its target rows ("| leg | target | measured | met |"). */
export function realisticReport(r: RealisticResult, r1: (v: number | undefined) => string): { lines: string[]; targets: string[] } {
  const out: string[] = [];
  const targets: string[] = [];
  const table = (head: string[], rows: (string | number)[][]) => {
    out.push(`| ${head.join(" | ")} |`, `| ${head.map((_h, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`);
    for (const row of rows) out.push(`| ${row.join(" | ")} |`);
    out.push("");
  };
  const check = (leg: string, name: string, pass: boolean, detail: string) => targets.push(`| ${leg} | ${name} | ${detail} | ${pass ? "yes" : "**no**"} |`);
  const label = (rt: string) => `router on ${rt === "bun" ? "Bun (compiled)" : "Deno"}`;
  if (r.ratio.length) {
    out.push("### Gateway CPU per non-streaming request (wrk, 64 connections, fast plain-http upstream; the three measured in turn, medians of the rounds)", "");
    table(["runtime", "minimal proxy µs/req", "router, features off µs/req", "ratio", "router, every feature on µs/req", "ratio"], r.ratio.map((x) => [
      x.runtime, r1(x.proxy_us), r1(x.off_us), `${(x.off_us / x.proxy_us).toFixed(2)}x`, r1(x.on_us), `${(x.on_us / x.proxy_us).toFixed(2)}x`,
    ]));
    const rounds = r.ratio.filter((x) => x.rounds && x.rounds[0].length > 1);
    if (rounds.length) {
      out.push("Each round's ratios, features off / on: " + rounds.map((x) =>
        `${x.runtime} ${x.rounds![0].map((p, i) => `${(x.rounds![1][i] / p).toFixed(2)} / ${(x.rounds![2][i] / p).toFixed(2)}`).join(", ")}`).join("; ") + ".", "");
    }
    for (const x of r.ratio) {
      check(label(x.runtime), "CPU/request, features off <= 1.5x the minimal proxy", x.off_us <= 1.5 * x.proxy_us, `${(x.off_us / x.proxy_us).toFixed(2)}x (${r1(x.off_us)} vs ${r1(x.proxy_us)} µs)`);
      check(label(x.runtime), "CPU/request, every feature on <= 2x the minimal proxy", x.on_us <= 2 * x.proxy_us, `${(x.on_us / x.proxy_us).toFixed(2)}x (${r1(x.on_us)} µs)`);
    }
  }
  const direct = r.paced.find((p) => p.leg === "direct");
  const busy = (v: number | undefined) => (v === undefined ? "-" : v.toFixed(2));
  /**
   * TTFB overhead at p50: of the TTFB net of the upstream's own (jittered) wait when the upstream reports it (older
   * results: of the raw TTFB, which the ±20% jitter moves by a few ms between runs)
   */
  const ttfbOver = (p: PacedRow) =>
    p.ttfb_net_ms?.n && direct!.ttfb_net_ms?.n ? p.ttfb_net_ms.p50 - direct!.ttfb_net_ms.p50 : p.ttfb_ms.p50 - direct!.ttfb_ms.p50;
  if (r.paced.length) {
    const o = r.options;
    out.push(`### Paced streams over TLS (${o.streams} concurrent, first token after 300 ms, then ${o.tokens} tokens at 40/s; ${o.secs}s; overhead = leg - direct)`, "");
    table(["leg", "streams", "errors", "chunks", "router CPU µs/chunk", "TTFB p50 / p99 ms", "TTFB overhead p50 ms", "transit p50 / p99 ms", "transit overhead p50 / p99 ms", "TLS connections opened", "machine CPU busy, cores"], r.paced.map((p) => [
      p.label, p.streams, p.errors, p.chunks, p.cpu_us_per_chunk === undefined ? "-" : r1(p.cpu_us_per_chunk),
      `${r1(p.ttfb_ms?.p50)} / ${r1(p.ttfb_ms?.p99)}`, p === direct || !direct ? "-" : r1(ttfbOver(p)),
      `${r1(p.chunk_transit_ms?.p50)} / ${r1(p.chunk_transit_ms?.p99)}`,
      p === direct || !direct ? "-" : `${r1(p.chunk_transit_ms.p50 - direct.chunk_transit_ms.p50)} / ${r1(p.chunk_transit_ms.p99 - direct.chunk_transit_ms.p99)}`,
      p.tls_connections ?? "-", busy(p.machine_busy_cores),
    ]));
    for (const p of r.paced.filter((x) => x !== direct && direct && !REFERENCE_LEGS.has(x.leg))) {
      const ttfb = ttfbOver(p), t99 = p.chunk_transit_ms.p99 - direct!.chunk_transit_ms.p99;
      check(p.label, `${o.streams} paced streams over TLS: zero errors`, p.errors === 0, `${p.errors} errors, ${p.streams} streams`);
      check(p.label, "router CPU <= 12 µs per chunk", p.cpu_us_per_chunk! <= 12, `${r1(p.cpu_us_per_chunk)} µs`);
      check(p.label, "per-chunk transit overhead p99 <= 2 ms", t99 <= 2, `+${r1(t99)} ms`);
      check(p.label, "stream TTFB overhead over TLS p50 <= 1 ms", ttfb <= 1, `+${r1(ttfb)} ms`);
    }
  }
  const jsonDirect = r.json?.find((p) => p.leg === "direct");
  if (r.json?.length) {
    const o = r.options.json!;
    out.push(`### Non-streaming requests over TLS (${o.rate}/s, each answered after 300 ms; ${o.secs}s; overhead = leg - direct)`, "");
    table(["leg", "requests", "errors", "router CPU µs/request", "latency p50 / p99 ms", "overhead p50 / p99 ms", "TLS connections opened", "machine CPU busy, cores"], r.json.map((p) => [
      p.label, p.requests, p.errors, p.cpu_us_per_request === undefined ? "-" : r1(p.cpu_us_per_request),
      `${r1(p.latency_ms?.p50)} / ${r1(p.latency_ms?.p99)}`,
      p === jsonDirect || !jsonDirect ? "-" : `${r1(p.latency_ms.p50 - jsonDirect.latency_ms.p50)} / ${r1(p.latency_ms.p99 - jsonDirect.latency_ms.p99)}`,
      p.tls_connections ?? "-", busy(p.machine_busy_cores),
    ]));
  }
  if (r.open) {
    const x = r.open;
    out.push(`### Open slow streams over TLS (one chunk every 2 s; the bare compiled binary, no environment variable set)`, "");
    table(["streams", "open at once", "completed", "errors", "RSS idle / peak MB", "KB per open stream above idle", "open-files limit"], [[
      x.requested, x.max_open, x.completed, x.errors, `${r1(x.idle_rss)} / ${r1(x.peak_rss)}`, r1(x.kb_per_stream), x.open_files_limit ?? "-",
    ]]);
    check(label("bun"), `${x.requested} open streams over TLS: all served, zero errors`, x.errors === 0 && x.max_open >= x.requested, `${x.max_open} open, ${x.errors} errors`);
    check(label("bun"), "peak RSS <= 100 KB per open stream above idle", x.kb_per_stream <= 100, `${r1(x.kb_per_stream)} KB`);
  }
  return { lines: out, targets };
}
