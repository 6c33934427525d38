// Unit tests of the observability building blocks: rolling-window percentiles against a sorted reference,
// the window bounds (count and age), the Prometheus renderer, pricing and secret redaction.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { percentile, RollingWindow, Stats, WINDOW_MS, WINDOW_SIZE } from "../src/observability/stats.ts";
import { Counter, escapeLabel, Histogram, LATENCY_BUCKETS } from "../src/observability/metrics.ts";
import { PriceTable } from "../src/pricing.ts";
import { safeUrl } from "../src/observability/requestlog.ts";
import { configSecrets, redact } from "../src/providers/redact.ts";
import { configModels } from "../src/observability/observability.ts";
import { parseConfig } from "../src/config/load.ts";
import { parseMetrics, value } from "./helpers/metrics.ts";

/** Deterministic pseudo-random numbers in [0, 1). */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Reference nearest-rank percentile, written independently: sort a copy, take the ceil(p*n)-th value. */
function reference(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const k = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.max(k, 1) - 1];
}

describe("percentiles over the rolling window", () => {
  it("match a sorted reference for many random sample sets", () => {
    const rand = rng(42);
    for (const n of [1, 2, 3, 7, 10, 99, 100, 101, 500, 999, 1000]) {
      const w = new RollingWindow();
      const values: number[] = [];
      for (let i = 0; i < n; i++) {
        const v = Math.round(rand() * 100000) / 10; // heavy duplicates and decimals
        values.push(v);
        w.add(v, 0);
      }
      const p = w.percentiles(0);
      assert.equal(p.p50, reference(values, 50), `p50 of ${n}`);
      assert.equal(p.p95, reference(values, 95), `p95 of ${n}`);
      assert.equal(p.p99, reference(values, 99), `p99 of ${n}`);
    }
  });

  it("give known values on 1..100 and nulls on an empty window", () => {
    const w = new RollingWindow();
    assert.deepEqual(w.percentiles(0), { p50: null, p95: null, p99: null });
    for (let i = 100; i >= 1; i--) w.add(i, 0); // inserted in reverse: the window must sort
    assert.deepEqual(w.percentiles(0), { p50: 50, p95: 95, p99: 99 });
    assert.equal(percentile([7], 99), 7);
  });

  it("keep only the last WINDOW_SIZE samples", () => {
    const rand = rng(7);
    const w = new RollingWindow();
    const all: number[] = [];
    for (let i = 0; i < 3 * WINDOW_SIZE + 17; i++) {
      const v = rand() * 1000 + (i < 2 * WINDOW_SIZE ? 1e6 : 0); // old samples are huge: they must not count
      all.push(v);
      w.add(v, 0);
    }
    const last = all.slice(-WINDOW_SIZE);
    assert.equal(w.values(0).length, WINDOW_SIZE);
    assert.deepEqual([...w.values(0)], last, "insertion order of the last samples");
    const p = w.percentiles(0);
    assert.equal(p.p50, reference(last, 50));
    assert.equal(p.p99, reference(last, 99));
    assert.ok(p.p99! < 1e6);
  });

  it("drop samples older than WINDOW_MS", () => {
    const w = new RollingWindow();
    for (let i = 0; i < 10; i++) w.add(1000 + i, 0); // at t=0
    for (let i = 0; i < 10; i++) w.add(i, 60_000); // at t=1min
    assert.equal(w.values(60_000).length, 20);
    assert.equal(w.values(WINDOW_MS).length, 20, "exactly WINDOW_MS old is still in");
    const later = w.values(WINDOW_MS + 1);
    assert.deepEqual([...later], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(w.percentiles(WINDOW_MS + 30_000).p99, 9);
    assert.deepEqual(w.percentiles(WINDOW_MS + 60_001), { p50: null, p95: null, p99: null });
  });
});

describe("Stats", () => {
  it("counts attempts, failovers, tokens and cost, and reports windows per provider", () => {
    let now = 1_000_000;
    const s = new Stats(() => now);
    const rand = rng(3);
    const lat: number[] = [];
    for (let i = 0; i < 1500; i++) {
      const v = rand() * 2000;
      lat.push(v);
      s.recordAttempt({ provider: "a", outcome: i % 10 === 0 ? "error" : "success", latency_ms: v, ttfb_ms: v / 2, input_tokens: 2, output_tokens: 3, cost_usd: 0.001 });
    }
    s.recordAttempt({ provider: "b", outcome: "skipped", latency_ms: 0, input_tokens: 0, output_tokens: 0, cost_usd: 0 });
    s.recordAttempt({ provider: "b", outcome: "timeout", latency_ms: 30000, input_tokens: 0, output_tokens: 0, cost_usd: 0 });
    s.recordFailover("b");
    s.recordRequest(200);
    s.recordRequest(502);
    s.recordRequest(400);
    now += 2500;
    const j = s.toJSON(["a", "b"], (n) => (n === "b" ? "open" : "closed"));
    assert.equal(j.uptime_seconds, 2.5);
    assert.deepEqual(j.requests, { total: 3, success: 1, failed: 2 });
    assert.equal(j.providers.a.requests, 1500);
    assert.equal(j.providers.a.successes, 1350);
    assert.equal(j.providers.a.failures, 150);
    assert.deepEqual(j.providers.a.tokens, { input: 3000, output: 4500 });
    assert.ok(Math.abs(j.providers.a.cost_usd - 1.5) < 1e-9);
    const last = lat.slice(-WINDOW_SIZE);
    const r2 = (x: number | null) => Math.round(x! * 100) / 100;
    assert.deepEqual(j.providers.a.latency_ms, { p50: r2(reference(last, 50)), p95: r2(reference(last, 95)), p99: r2(reference(last, 99)) });
    assert.deepEqual(j.providers.a.ttfb_ms, { p50: r2(reference(last, 50)! / 2), p95: r2(reference(last, 95)! / 2), p99: r2(reference(last, 99)! / 2) });
    assert.deepEqual(j.providers.b, {
      requests: 1, successes: 0, failures: 1, failovers: 1,
      latency_ms: { p50: 30000, p95: 30000, p99: 30000 }, ttfb_ms: { p50: null, p95: null, p99: null },
      tokens: { input: 0, output: 0 }, cost_usd: 0, state: "open",
    });
    assert.deepEqual(j.totals, { tokens: { input: 3000, output: 4500 }, cost_usd: j.providers.a.cost_usd });
    now += WINDOW_MS + 1;
    assert.deepEqual(s.toJSON(["a"], () => "closed").providers.a.latency_ms, { p50: null, p95: null, p99: null }, "all samples aged out");
  });
});

describe("Prometheus rendering", () => {
  it("escapes label values and renders cumulative histogram buckets with sum and count", () => {
    const c = new Counter("x_total", "help with \\ and\nnewline", ["a"]);
    c.inc(['we"ird\\va\nlue'], 2);
    const text = c.render();
    assert.ok(text.includes('x_total{a="we\\"ird\\\\va\\nlue"} 2\n'), text);
    assert.ok(text.includes("# HELP x_total help with \\\\ and\\nnewline\n"), text);
    assert.equal(escapeLabel("plain"), "plain");
    const e = parseMetrics(text);
    assert.equal(value(e, "x_total", { a: 'we"ird\\va\nlue' }), 2);

    const h = new Histogram("lat_seconds", "latency", ["p"]);
    for (const v of [0.005, 0.01, 0.3, 7, 7, 1000]) h.observe(["a"], v);
    const hx = parseMetrics(h.render());
    assert.equal(hx.types.get("lat_seconds"), "histogram");
    const bucket = (le: string) => value(hx, "lat_seconds_bucket", { p: "a", le });
    assert.equal(bucket("0.01"), 2, "le is inclusive");
    assert.equal(bucket("0.25"), 2);
    assert.equal(bucket("0.5"), 3);
    assert.equal(bucket("5"), 3);
    assert.equal(bucket("10"), 5);
    assert.equal(bucket("600"), 5);
    assert.equal(bucket("+Inf"), 6);
    assert.equal(value(hx, "lat_seconds_count", { p: "a" }), 6);
    assert.ok(Math.abs(value(hx, "lat_seconds_sum", { p: "a" })! - 1014.315) < 1e-9);
    const les = hx.samples.filter((s) => s.name === "lat_seconds_bucket").map((s) => s.labels.le);
    assert.deepEqual(les, [...LATENCY_BUCKETS.map(String), "+Inf"]);
    assert.ok(LATENCY_BUCKETS[0] <= 0.01 && LATENCY_BUCKETS.at(-1)! >= 300, "tens of ms to minutes");
  });
});

describe("pricing, model labels and redaction", () => {
  const cfg = parseConfig(`
providers:
  - name: a
    type: openai
    api_key: sk-live-abcdef
    headers: { x-secret-header: hdr-value-123456 }
    default_model: gpt-4o
    models: [gpt-4o-mini]
    model_map: { fast: gpt-4o-mini, smart: o3 }
    pricing: { gpt-4o: { input: 2.5, output: 10 }, "*": { input: 1, output: 2 } }
  - { name: b, type: mock, pricing: { only-this: { input: 5, output: 5 } } }
  - { name: c, type: mock }
  - { name: d, type: openai_compatible, endpoint: "https://url-user-77:url-pass-88@x.example/v1?api-version=2024-02-01&sig=url-sig-999", default_model: gpt-4o }
auth: { enabled: true, api_keys: [client-key-1234567, { key: client-key-object-1 }, short7k], admin_api_key: admin-key-9876543 }
`);

  it("prices by model, falls back to '*', and is 0 without a table or a match", () => {
    const p = new PriceTable(cfg);
    const u = { prompt_tokens: 1_000_000, completion_tokens: 500_000, total_tokens: 1_500_000 };
    assert.equal(p.cost("a", "gpt-4o", u), 2.5 + 5);
    assert.equal(p.cost("a", "o3", u), 1 + 1);
    assert.equal(p.cost("b", "only-this", { prompt_tokens: 200, completion_tokens: 100, total_tokens: 300 }), (200 * 5 + 100 * 5) / 1e6);
    assert.equal(p.cost("b", "other-model", u), 0);
    assert.equal(p.cost("c", "mock", u), 0);
    assert.equal(p.cost("a", "gpt-4o", undefined), 0);
  });

  it("labels only models the config names", () => {
    assert.deepEqual([...configModels(cfg)].sort(), ["fast", "gpt-4o", "gpt-4o-mini", "mock", "o3", "smart"]);
  });

  it("redacts every configured secret and strips credentials from URLs", () => {
    const secrets = configSecrets(cfg);
    const text = "key sk-live-abcdef hdr hdr-value-123456 c client-key-1234567 o client-key-object-1 adm admin-key-9876543 end";
    assert.equal(redact(text, secrets), "key [REDACTED] hdr [REDACTED] c [REDACTED] o [REDACTED] adm [REDACTED] end");
    // URL credentials are secrets, other query values are not; nor is a value under 8 characters
    assert.equal(redact("url-user-77 url-pass-88 url-sig-999 2024-02-01 short7k", secrets), "[REDACTED] [REDACTED] [REDACTED] 2024-02-01 short7k");
    assert.equal(safeUrl("https://user:pw@api.example.com/v1?key=abc"), "https://api.example.com/v1");
    assert.equal(safeUrl("http://localhost:11434"), "http://localhost:11434");
  });
});
