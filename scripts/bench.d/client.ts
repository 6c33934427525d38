// Benchmark clients (Bun; run as a separate process from the servers). Each mode prints one JSON line.
//   bun client.ts check  URL            one JSON and one streamed request; verifies content, chunk count, [DONE]
//   bun client.ts rate   URL RATE SECS  open-loop fixed-rate non-streaming load; latency percentiles
//   bun client.ts stream URL CONC SECS  closed-loop paced streams (model bench-paced): TTFB, per-chunk
//                                       transit delay (client clock - upstream "ts"), inter-chunk gaps, batching
//   bun client.ts hold   URL N SECS     opens N streams at once (model bench-hold), prints `open <n>` when all
//                                       have their first chunk, then reads them to the end
// Environment: BENCH_HEADERS (extra request headers, "Name: value" per line), BENCH_WARMUP_S (rate/stream,
// default 1: results from the first seconds are dropped), BENCH_IDEMPOTENCY=1 (rate: a unique Idempotency-Key
// per request).
// BENCH_MODEL (rate, stream, hold) / BENCH_CHUNKS (stream, hold): another model of the upstream and its number of content chunks (the
// realistic section: upstream-tls.ts); BENCH_STAGGER_MS (stream, hold): the workers (streams) start spread over this
// many ms.
// (Set BUN_CONFIG_MAX_HTTP_REQUESTS above N for `hold`: Bun's fetch caps concurrent requests at 256.)

const [mode, url, a1, a2] = Bun.argv.slice(2);
const headers: Record<string, string> = { "content-type": "application/json" };
for (const line of (process.env.BENCH_HEADERS ?? "").split("\n")) {
  const i = line.indexOf(":");
  if (i > 0) headers[line.slice(0, i).trim()] = line.slice(i + 1).trim();
}
const WARMUP_MS = Number(process.env.BENCH_WARMUP_S ?? 1) * 1000;
const CHUNKS = Number(process.env.BENCH_CHUNKS ?? 20);
const wall = () => performance.timeOrigin + performance.now();
const body = (model: string, stream: boolean) =>
  JSON.stringify({ model, messages: [{ role: "user", content: "Say hello" }], max_tokens: 32, ...(stream ? { stream: true } : {}) });

function pct(values: number[] | Float64Array, ps: number[]): Record<string, number> {
  const a = Float64Array.from(values).sort();
  const out: Record<string, number> = { n: a.length };
  for (const p of ps) out[`p${String(p).replace(".", "")}`] = a.length ? round(a[Math.min(a.length - 1, Math.ceil((p / 100) * a.length) - 1)]) : NaN;
  if (a.length) {
    let s = 0;
    for (const v of a) s += v;
    out.mean = round(s / a.length);
    out.max = round(a[a.length - 1]);
  }
  return out;
}
const round = (v: number) => Math.round(v * 1000) / 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Reads an SSE body; per event calls onEvent(data, arrivalWallMs, eventsInThisRead). */
async function readSse(res: Response, onRead: (events: string[], at: number) => void): Promise<void> {
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = "";
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    const at = wall();
    buf += dec.decode(value, { stream: true });
    const events: string[] = [];
    let i: number;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (ev.startsWith("data: ")) events.push(ev.slice(6));
    }
    if (events.length) onRead(events, at);
  }
}

/** When the upstream received the request (upstream-tls.ts puts it in the first chunk), or NaN. */
function rxOf(data: string): number {
  const i = data.lastIndexOf('"rx":');
  return i < 0 ? NaN : parseFloat(data.slice(i + 5));
}

function tsOf(data: string): number {
  const i = data.lastIndexOf('"ts":');
  return i < 0 ? NaN : parseFloat(data.slice(i + 5));
}

/** Verifies one streamed response: 20 content chunks in order, a finish chunk, then [DONE]. */
function checkStream(events: string[]): string | null {
  if (events[events.length - 1] !== "[DONE]") return `stream did not end with [DONE] (last: ${events[events.length - 1]?.slice(0, 80)})`;
  let content = "";
  let finish = null;
  for (const e of events.slice(0, -1)) {
    const j = JSON.parse(e);
    const c = j.choices?.[0];
    if (c?.delta?.content) content += c.delta.content;
    if (c?.finish_reason) finish = c.finish_reason;
  }
  const want = Array.from({ length: CHUNKS }, (_, i) => (i === 0 ? "Hello" : ` w${i}`)).join("");
  if (content !== want) return `stream content mismatch: ${JSON.stringify(content.slice(0, 80))}`;
  if (finish !== "stop") return `stream finish_reason ${finish}`;
  return null;
}

async function check() {
  const problems: string[] = [];
  const r1 = await fetch(url, { method: "POST", headers, body: body("bench", false) });
  const t1 = await r1.text();
  if (r1.status !== 200) problems.push(`json: HTTP ${r1.status}: ${t1.slice(0, 200)}`);
  else {
    const j = JSON.parse(t1);
    if (!String(j.choices?.[0]?.message?.content).startsWith("Hello w1")) problems.push(`json: unexpected body ${t1.slice(0, 200)}`);
  }
  for (const model of ["bench", "bench-paced"]) {
    const r2 = await fetch(url, { method: "POST", headers, body: body(model, true) });
    if (r2.status !== 200) {
      problems.push(`stream ${model}: HTTP ${r2.status}: ${(await r2.text()).slice(0, 200)}`);
      continue;
    }
    const events: string[] = [];
    await readSse(r2, (evs) => events.push(...evs));
    const p = checkStream(events);
    if (p) problems.push(`stream ${model}: ${p}`);
    if (model === "bench-paced" && !events.slice(0, -1).every((e) => Number.isFinite(tsOf(e)))) problems.push(`stream ${model}: chunk lost its "ts" field`);
  }
  console.log(JSON.stringify({ ok: problems.length === 0, problems }));
  process.exit(problems.length ? 1 : 0);
}

async function rate() {
  const rps = Number(a1), secs = Number(a2);
  const total = Math.round(rps * secs);
  const payload = body(process.env.BENCH_MODEL ?? "bench", false);
  const lat = new Float64Array(total).fill(NaN); // from actual send
  const co = new Float64Array(total).fill(NaN); // from the scheduled send time (coordinated-omission corrected)
  let sent = 0, done = 0, errors = 0, firstError = "";
  const t0 = Date.now();
  const start = performance.now() + 50;
  const interval = 1000 / rps;
  await new Promise<void>((resolve) => {
    const idem = process.env.BENCH_IDEMPOTENCY === "1";
    const fire = (i: number) => {
      const t = performance.now();
      const h = idem ? { ...headers, "idempotency-key": `bench-rate-${t0}-${i}` } : headers;
      fetch(url, { method: "POST", headers: h, body: payload, signal: AbortSignal.timeout(30000) })
        .then(async (r) => {
          await r.arrayBuffer();
          const end = performance.now();
          if (r.status !== 200) {
            errors++;
            firstError ||= `HTTP ${r.status}`;
          } else {
            lat[i] = end - t;
            co[i] = end - (start + i * interval);
          }
        })
        .catch((e) => {
          errors++;
          firstError ||= String(e?.message ?? e);
        })
        .finally(() => {
          if (++done === total) resolve();
        });
    };
    const tick = () => {
      const now = performance.now();
      const due = Math.min(total, Math.floor((now - start) / interval) + 1);
      while (sent < due) fire(sent++);
      if (sent < total) setTimeout(tick, 1);
    };
    setTimeout(tick, 50);
  });
  const elapsed = (performance.now() - start) / 1000;
  const skip = Math.min(total, Math.round((WARMUP_MS / 1000) * rps));
  const keep = (a: Float64Array) => Array.from(a.subarray(skip)).filter((v) => !Number.isNaN(v));
  console.log(JSON.stringify({
    requests: total, errors, firstError, achieved_rps: round(total / elapsed),
    latency_ms: pct(keep(lat), [50, 90, 99, 99.9]), scheduled_latency_ms: pct(keep(co), [50, 99]),
  }));
}

async function streams() {
  const conc = Number(a1), secs = Number(a2);
  const payload = body(process.env.BENCH_MODEL ?? "bench-paced", true);
  const stagger = Number(process.env.BENCH_STAGGER_MS ?? 0);
  const ttfb: number[] = [], transit: number[] = [], gaps: number[] = [], firstTransit: number[] = [], ttfbNet: number[] = [];
  let streamsDone = 0, errors = 0, reads = 0, events = 0, batched = 0, firstError = "", allEvents = 0;
  const t0 = performance.now();
  const until = t0 + secs * 1000;
  const worker = async (w: number) => {
    if (stagger) await sleep((w * stagger) / conc);
    while (performance.now() < until) {
      const start = performance.now();
      const measure = start > t0 + WARMUP_MS;
      try {
        const res = await fetch(url, { method: "POST", headers, body: payload });
        if (res.status !== 200) {
          errors++;
          firstError ||= `HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`;
          continue;
        }
        const all: string[] = [];
        let prev = NaN;
        await readSse(res, (evs, at) => {
          all.push(...evs);
          allEvents += evs[evs.length - 1] === "[DONE]" ? evs.length - 1 : evs.length;
          if (!measure) return;
          reads++;
          const data = evs[evs.length - 1] === "[DONE]" ? evs.length - 1 : evs.length;
          if (data > 1) batched += data - 1;
          for (const e of evs) {
            if (e === "[DONE]") continue;
            events++;
            const ts = tsOf(e);
            if (Number.isNaN(prev)) {
              const t = performance.now() - start;
              ttfb.push(t);
              firstTransit.push(at - ts);
              // the TTFB without the upstream's own wait before its first token: what the path to it and back costs
              const rx = rxOf(e);
              if (!Number.isNaN(rx)) ttfbNet.push(t - (ts - rx));
            } else {
              transit.push(at - ts);
              gaps.push(at - prev);
            }
            prev = at;
          }
        });
        const p = checkStream(all);
        if (p) {
          errors++;
          firstError ||= p;
        } else if (measure) streamsDone++;
      } catch (e) {
        errors++;
        firstError ||= String((e as Error)?.message ?? e);
      }
    }
  };
  await Promise.all(Array.from({ length: conc }, (_, w) => worker(w)));
  console.log(JSON.stringify({
    streams: streamsDone, errors, firstError, events, reads, batched_events: batched, all_events: allEvents,
    ttfb_ms: pct(ttfb, [50, 99]), ttfb_net_ms: ttfbNet.length ? pct(ttfbNet, [50, 99]) : undefined, first_chunk_transit_ms: pct(firstTransit, [50, 99]),
    chunk_transit_ms: pct(transit, [50, 99, 99.9]), chunk_gap_ms: pct(gaps, [50, 99]),
  }));
}

async function hold() {
  const n = Number(a1), secs = Number(a2);
  const payload = body(process.env.BENCH_MODEL ?? "bench-hold", true);
  let open = 0, cur = 0, maxCur = 0, completed = 0, errors = 0, firstError = "";
  let signalled = false;
  const t0 = performance.now();
  const stagger = Number(process.env.BENCH_STAGGER_MS ?? 0);
  const one = async (k: number) => {
    try {
      if (stagger) await sleep((k * stagger) / n);
      const res = await fetch(url, { method: "POST", headers, body: payload });
      if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
      const all: string[] = [];
      let first = true;
      await readSse(res, (evs) => {
        all.push(...evs);
        if (first) {
          first = false;
          maxCur = Math.max(maxCur, ++cur);
          if (++open === n && !signalled) {
            signalled = true;
            console.log(`open ${open} ${round(performance.now() - t0)}`);
          }
        }
      });
      if (!first) cur--;
      const p = checkStream(all);
      if (p) throw new Error(p);
      completed++;
    } catch (e) {
      errors++;
      firstError ||= String((e as Error)?.message ?? e);
    }
  };
  const all = Promise.all(Array.from({ length: n }, (_, k) => one(k)));
  const timeout = sleep(secs * 1000).then(() => "timeout");
  const r = await Promise.race([all.then(() => "done"), timeout]);
  if (!signalled) console.log(`open ${open} ${round(performance.now() - t0)} (not all opened)`);
  console.log(JSON.stringify({ requested: n, opened: open, max_open_at_once: maxCur, completed, errors, firstError, timed_out: r === "timeout" }));
  process.exit(0);
}

switch (mode) {
  case "check": await check(); break;
  case "rate": await rate(); break;
  case "stream": await streams(); break;
  case "hold": await hold(); break;
  default:
    console.error("usage: bun client.ts check|rate|stream|hold URL ...");
    process.exit(2);
}
