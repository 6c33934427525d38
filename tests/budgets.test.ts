// Spend control through HTTP against fake providers with known usage: per-request cost ceilings (config and the
// client's x-router-max-cost-usd), budgets reserved before and settled after each attempt (402 for a key's budget,
// a skipped provider for a provider's), their periods on an injected clock, /admin/budgets and the metrics.
//
// Prices are 1,000,000 USD per 1M tokens (1 USD a token) so that costs are token counts: the prompt "hi" is
// estimated at 1 input token, and the OpenAI fake reports 11 prompt + 7 completion tokens (18 USD) unless told.
import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startOpenAIFake } from "./fakes/openai.ts";
import type { FakeServer } from "./fakes/common.ts";
import { join } from "node:path";
import { ConfigError, parseConfig } from "../src/config/load.ts";
import { rmTemp, startProcess, tempDir, writeFile } from "./helpers/process.ts";
import { FakeClock, postJson, readSse, startRouter, type RunningRouter } from "./helpers/router.ts";

const USD_PER_TOKEN = { input: 1_000_000, output: 1_000_000 };
const KEY = "sk-team-a-0123456789";
const ADMIN = "admin-0123456789";

let fakes: FakeServer[] = [];
let r: RunningRouter | undefined;
afterEach(async () => {
  await r?.stop();
  r = undefined;
  await Promise.all(fakes.map((f) => f.stop()));
  fakes = [];
});

async function fake(opts: Parameters<typeof startOpenAIFake>[0] = {}): Promise<FakeServer> {
  const f = await startOpenAIFake(opts);
  fakes.push(f);
  return f;
}

/** Providers a and b (a first in the chain), each with `price` per token and any extra provider keys. */
function yaml(a: FakeServer, b: FakeServer, extra = "", opts: { aPrice?: number; bPrice?: number; aExtra?: string } = {}): string {
  const p = (n: number) => `{ "*": { input: ${n * 1_000_000}, output: ${n * 1_000_000} } }`;
  return `
providers:
  - name: a
    type: openai
    endpoint: ${a.url}
    default_model: ma
    pricing: ${p(opts.aPrice ?? 1)}
${opts.aExtra ?? ""}
  - name: b
    type: openai
    endpoint: ${b.url}
    default_model: mb
    pricing: ${p(opts.bPrice ?? 1)}
routing:
  fallback_chain: [a, b]
logging: { level: warn }
${extra}`;
}

const chat = (max_tokens: number, extra: Record<string, unknown> = {}) => ({ model: "x", messages: [{ role: "user", content: "hi" }], max_tokens, ...extra });
const auth = { authorization: `Bearer ${KEY}` };
const admin = { authorization: `Bearer ${ADMIN}` };
const AUTH_YAML = `
auth:
  enabled: true
  api_keys: [{ key: ${KEY}, name: team-a }]
  admin_api_key: ${ADMIN}
`;

async function budgetsOf(): Promise<Record<string, any>> {
  const res = await fetch(`${r!.url}/admin/budgets`, { headers: admin });
  assert.equal(res.status, 200);
  return Object.fromEntries((await res.json()).budgets.map((b: any) => [b.name, b]));
}

describe("cost ceilings", () => {
  it("skip a provider whose worst-case estimate is over its ceiling, and answer 400 when none fits", async () => {
    const a = await fake(), b = await fake();
    // a: 1 + 10 = 11 USD worst case, over the global 5; b at a tenth of the price: 1.1
    r = await startRouter(yaml(a, b, "", { bPrice: 0.1 }).replace("routing:\n", "routing:\n  max_cost_per_request_usd: 5\n"));
    const ok = await postJson(`${r.url}/v1/chat/completions`, chat(10));
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get("x-router-provider"), "b");
    assert.equal(a.requests.length, 0);

    // 101 and 10.1 USD: neither fits
    const no = await postJson(`${r.url}/v1/chat/completions`, chat(100));
    assert.equal(no.status, 400);
    const e = (await no.json()).error;
    assert.equal(e.code, "cost_ceiling_exceeded");
    assert.match(e.message, /10\.1 USD/);
    assert.match(e.message, /ceiling of 5 USD/);
    assert.equal(b.requests.length, 1);
  });

  it("a provider's own ceiling by model applies before the global one", async () => {
    const a = await fake(), b = await fake();
    r = await startRouter(yaml(a, b, "", { aExtra: `    max_cost_per_request_usd: { ma: 3, "*": 100 }` }));
    const res = await postJson(`${r.url}/v1/chat/completions`, chat(10));
    assert.equal(res.headers.get("x-router-provider"), "b");
    assert.equal(a.requests.length, 0);
  });

  it("the client's header lowers the ceiling, never raises it, and a malformed one is refused", async () => {
    const a = await fake(), b = await fake();
    r = await startRouter(yaml(a, b, "", { bPrice: 0.1 }).replace("routing:\n", "routing:\n  max_cost_per_request_usd: 5\n"));
    const lowered = await postJson(`${r.url}/v1/chat/completions`, chat(10), { "x-router-max-cost-usd": "1" });
    assert.equal(lowered.status, 400);
    assert.equal((await lowered.json()).error.code, "cost_ceiling_exceeded");
    const raised = await postJson(`${r.url}/v1/chat/completions`, chat(10), { "x-router-max-cost-usd": "1000" });
    assert.equal(raised.status, 200);
    assert.equal(raised.headers.get("x-router-provider"), "b");
    assert.equal(a.requests.length, 0);
    const bad = await postJson(`${r.url}/v1/chat/completions`, chat(10), { "x-router-max-cost-usd": "lots" });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).error.param, "x-router-max-cost-usd");
  });
});

describe("budgets", () => {
  it("a key's spent budget answers 402 insufficient_quota through the openai SDK, which sends one request", async () => {
    const a = await fake(), b = await fake();
    r = await startRouter(yaml(a, b, `${AUTH_YAML}
budgets:
  list:
    - { name: team-a-daily, scope: { key: team-a }, limit_usd: 20, period: day }
`));
    let sent = 0;
    const client = new OpenAI({
      baseURL: `${r.url}/v1`, apiKey: KEY, maxRetries: 2,
      fetch: (url: any, init?: any) => (sent++, fetch(url, init)),
    });
    // reserves 11, spends 18
    await client.chat.completions.create({ model: "x", messages: [{ role: "user", content: "hi" }], max_tokens: 10 });
    sent = 0;
    await assert.rejects(client.chat.completions.create({ model: "x", messages: [{ role: "user", content: "hi" }], max_tokens: 10 }), (e: any) => {
      assert.equal(e.status, 402);
      assert.equal(e.code, "budget_exceeded");
      assert.equal(e.type, "insufficient_quota");
      assert.match(e.message, /team-a-daily/);
      assert.match(e.message, /resets at \d{4}-\d\d-\d\dT00:00:00\.000Z/);
      return true;
    });
    assert.equal(sent, 1);
    assert.equal(a.requests.length, 1);
  });

  it("50 concurrent requests against a budget that fits 10 overshoot it by at most one reservation", async () => {
    // each request reserves 1 + 9 = 10 and costs 1 + 9 = 10; the upstream is slow so all 50 are in flight together
    const a = await fake({ usage: { prompt_tokens: 1, completion_tokens: 9 } }), b = await fake();
    a.fault = { delayMs: 300 };
    r = await startRouter(yaml(a, b, `${AUTH_YAML}
budgets:
  list:
    - { name: team-a-daily, scope: { key: team-a }, limit_usd: 100, period: day }
`));
    const res = await Promise.all(Array.from({ length: 50 }, () => postJson(`${r!.url}/v1/chat/completions`, chat(9), auth)));
    const statuses = res.map((x) => x.status);
    await Promise.all(res.map((x) => x.body?.cancel()));
    assert.equal(statuses.filter((s) => s === 200).length, 10);
    assert.equal(statuses.filter((s) => s === 402).length, 40);
    const got = (await budgetsOf())["team-a-daily"];
    assert.ok(got.spent_usd <= 100 + 10, `spent ${got.spent_usd}`);
    assert.equal(got.spent_usd, 100);
    assert.equal(got.reserved_usd, 0);
    assert.equal(got.remaining_usd, 0);
  });

  it("concurrent requests billed more than they reserved pass the limit by the sum of their shortfalls, then refuse", async () => {
    // each reserves 1 + 10 = 11 (the prompt "hi" estimated at 1 token) and is billed 11 + 7 = 18, as a provider
    // counting its chat template bills more input than the estimate
    const a = await fake(), b = await fake();
    a.fault = { delayMs: 300 };
    r = await startRouter(yaml(a, b, `${AUTH_YAML}
budgets:
  list:
    - { name: team-a-daily, scope: { key: team-a }, limit_usd: 100, period: day }
`));
    const res = await Promise.all(Array.from({ length: 20 }, () => postJson(`${r!.url}/v1/chat/completions`, chat(10), auth)));
    const statuses = res.map((x) => x.status);
    await Promise.all(res.map((x) => x.body?.cancel()));
    assert.equal(statuses.filter((s) => s === 200).length, 9);
    const got = (await budgetsOf())["team-a-daily"];
    assert.equal(got.spent_usd, 9 * 18);
    assert.equal(got.spent_usd, 100 - 1 + 9 * (18 - 11));
    assert.equal((await postJson(`${r.url}/v1/chat/completions`, chat(10), auth)).status, 402);
  });

  it("settles to the usage of JSON and streamed answers", async () => {
    const a = await fake({ chunks: 50 }), b = await fake();
    r = await startRouter(yaml(a, b, `${AUTH_YAML}
budgets:
  list:
    - { name: all, limit_usd: 1000, period: total }
`));
    await (await postJson(`${r.url}/v1/chat/completions`, chat(10), auth)).text();
    assert.equal((await budgetsOf()).all.spent_usd, 18);
    await readSse(await postJson(`${r.url}/v1/chat/completions`, chat(10, { stream: true, stream_options: { include_usage: true } }), auth));
    assert.equal((await budgetsOf()).all.spent_usd, 36);
    assert.equal((await budgetsOf()).all.reserved_usd, 0);
  });

  it("a period ends on the calendar (injected clock): a spent budget serves again in the next minute", async () => {
    const a = await fake(), b = await fake();
    const clock = new FakeClock();
    clock.t = Date.UTC(2026, 11, 6, 10, 30, 5);
    r = await startRouter(yaml(a, b, `${AUTH_YAML}
budgets:
  list:
    - { name: per-minute, scope: { key: team-a }, limit_usd: 20, period: minute }
`), {}, { spendClock: clock.now });
    assert.equal((await postJson(`${r.url}/v1/chat/completions`, chat(10), auth)).status, 200);
    const spent = await postJson(`${r.url}/v1/chat/completions`, chat(10), auth);
    assert.equal(spent.status, 402);
    assert.match((await spent.json()).error.message, /resets at 2026-12-06T10:31:00\.000Z/);
    assert.equal((await budgetsOf())["per-minute"].resets_at, "2026-12-06T10:31:00.000Z");
    clock.advance(55_000);
    assert.equal((await postJson(`${r.url}/v1/chat/completions`, chat(10), auth)).status, 200);
    assert.equal((await budgetsOf())["per-minute"].spent_usd, 18);
  });

  it("an attempt that ends after its period did counts in the period it ends in, not in none", async () => {
    const a = await fake(), b = await fake();
    a.fault = { delayMs: 400 };
    const clock = new FakeClock();
    clock.t = Date.UTC(2026, 11, 6, 10, 30, 59, 500);
    r = await startRouter(yaml(a, b, `${AUTH_YAML}
budgets:
  list:
    - { name: per-minute, scope: { key: team-a }, limit_usd: 1000, period: minute }
`), {}, { spendClock: clock.now });
    const res = postJson(`${r.url}/v1/chat/completions`, chat(10), auth);
    while (a.requests.length === 0) await new Promise((ok) => setTimeout(ok, 10));
    // the minute ends while the upstream is answering
    clock.advance(1000);
    assert.equal((await (await res).json()).usage.total_tokens, 18);
    let got: any;
    for (let i = 0; i < 50; i++) {
      got = (await budgetsOf())["per-minute"];
      if (got.spent_usd) break;
      await new Promise((ok) => setTimeout(ok, 20));
    }
    assert.equal(got.resets_at, "2026-12-06T10:32:00.000Z");
    assert.equal(got.spent_usd, 18);
    assert.equal(got.reserved_usd, 0);
  });

  it("logs once when a soft limit is crossed and once when the budget runs out", async () => {
    const a = await fake(), b = await fake();
    r = await startRouter(yaml(a, b, `${AUTH_YAML}
budgets:
  list:
    - { name: soft, scope: { key: team-a }, limit_usd: 30, period: day, soft_limit_percent: 50 }
`));
    await (await postJson(`${r.url}/v1/chat/completions`, chat(10), auth)).text();
    // settling is not awaited by the answer
    for (let i = 0; i < 50 && !r.logs.some((l) => l.includes("soft limit")); i++) await new Promise((ok) => setTimeout(ok, 20));
    const soft = r.logs.filter((l) => l.includes("budget soft limit crossed"));
    assert.equal(soft.length, 1);
    assert.equal(JSON.parse(soft[0]).budget, "soft");
    assert.equal((await budgetsOf()).soft.soft_limit_crossed, true);
    await (await postJson(`${r.url}/v1/chat/completions`, chat(10), auth)).text();
    await (await postJson(`${r.url}/v1/chat/completions`, chat(10), auth)).text();
    assert.equal(r.logs.filter((l) => l.includes('"budget spent"')).length, 1);
    assert.equal(r.logs.filter((l) => l.includes("budget soft limit crossed")).length, 1);
  });

  it("a key's budget that no request could match is refused at load, naming its path (it would never stop a bill)", () => {
    const problems = (auth: string, scope: string): string[] => {
      try {
        parseConfig(`providers:\n  - { name: a, type: mock }\n${auth}\nbudgets:\n  list:\n    - { name: b, scope: ${scope}, limit_usd: 1, period: day }\n`);
        return [];
      } catch (e) {
        if (e instanceof ConfigError) return e.problems;
        throw e;
      }
    };
    const keys = `auth: { enabled: true, api_keys: ["sk-0123456789", { key: sk-abcdefghij, name: team-a }], admin_api_key: adm-0123456789 }`;
    assert.deepEqual(problems(keys, "{ key: team-b }"), ['budgets.list[0].scope.key: no API key is named "team-b" (names: api_keys[0], team-a, admin)']);
    assert.deepEqual(problems(keys.replace("enabled: true", "enabled: false"), "{ key: team-a }"), ['budgets.list[0].scope.key: auth is not enabled, so no request has a key name']);
    for (const scope of ["{ key: team-a }", '{ key: "api_keys[0]" }', "{ key: admin }"]) assert.deepEqual(problems(keys, scope), [], scope);
  });

  it("a provider's spent budget skips it (reason budget) and the next provider serves; none left: 402", async () => {
    const a = await fake(), b = await fake();
    r = await startRouter(yaml(a, b, `
budgets:
  list:
    - { name: a-budget, scope: { provider: a }, limit_usd: 0, period: month }
    - { name: b-model, scope: { model: mb }, limit_usd: 20, period: month }
`));
    const ok = await postJson(`${r.url}/v1/chat/completions`, chat(10));
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get("x-router-provider"), "b");
    assert.equal(a.requests.length, 0);
    assert.equal(r.observability.stats.toJSON(["a", "b"], () => "closed").providers.a.failures, 0);
    const none = await postJson(`${r.url}/v1/chat/completions`, chat(10));
    assert.equal(none.status, 402);
    assert.equal((await none.json()).error.code, "budget_exceeded");
  });

  it("a key's budget too low for the first provider's estimate is served by a cheaper one that fits", async () => {
    const a = await fake(), b = await fake({ usage: { prompt_tokens: 1, completion_tokens: 1 } });
    r = await startRouter(yaml(a, b, `${AUTH_YAML}
budgets:
  list:
    - { name: team-a-daily, scope: { key: team-a }, limit_usd: 5, period: day }
`, { bPrice: 0.1 }));
    // a: 11 USD worst case, over the 5 left; b: 1.1
    const res = await postJson(`${r.url}/v1/chat/completions`, chat(10), auth);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-router-provider"), "b");
    assert.equal(a.requests.length, 0);
    assert.ok(Math.abs((await budgetsOf())["team-a-daily"].spent_usd - 0.2) < 1e-9);
  });

  it("a breaker open on one provider and a budget refusing the other: the 503 names each provider's reason", async () => {
    const a = await fake(), b = await fake();
    r = await startRouter(yaml(a, b, `
circuit_breaker: { failure_threshold: 1, cooldown_seconds: 60 }
budgets:
  list:
    - { name: b-cap, scope: { provider: b }, limit_usd: 0, period: month }
`, { aExtra: "    max_retries: 0" }));
    a.fault = { status: 500 };
    assert.equal((await postJson(`${r.url}/v1/chat/completions`, chat(10))).status, 502);
    a.fault = null;
    const res = await postJson(`${r.url}/v1/chat/completions`, chat(10));
    assert.equal(res.status, 503);
    assert.ok(Number(res.headers.get("retry-after")) >= 1);
    const e = (await res.json()).error;
    assert.equal(e.code, "all_providers_unavailable");
    assert.equal(e.type, "upstream_error");
    assert.doesNotMatch(e.message, /every circuit breaker/);
    assert.match(e.message, /a: circuit open/);
    assert.match(e.message, /b: budget "b-cap" is spent/);
    assert.equal(a.requests.length, 1);
    assert.equal(b.requests.length, 0);
  });

  it("a request whose own estimate is over a budget's whole limit: 402 says so, and the budget is not reported spent", async () => {
    const a = await fake(), b = await fake();
    r = await startRouter(yaml(a, b, `${AUTH_YAML}
budgets:
  list:
    - { name: team-a-daily, scope: { key: team-a }, limit_usd: 20, period: day }
`));
    // 1 + 100 USD worst case on either provider, over the whole 20
    const res = await postJson(`${r.url}/v1/chat/completions`, chat(100), auth);
    assert.equal(res.status, 402);
    const e = (await res.json()).error;
    assert.equal(e.code, "budget_exceeded");
    assert.equal(e.type, "insufficient_quota");
    assert.equal(e.budget, "team-a-daily");
    assert.doesNotMatch(e.message, /is spent/);
    assert.match(e.message, /estimate of 101 USD/);
    assert.match(e.message, /limit of 20 USD per day/);
    assert.equal(a.requests.length + b.requests.length, 0);
    assert.equal((await budgetsOf())["team-a-daily"].spent_usd, 0);
    assert.equal(r.logs.filter((l) => l.includes('"budget spent"')).length, 0);
    // the budget running out for real later in the period is still told, once: reserves 2, spends 18, twice
    for (let i = 0; i < 2; i++) {
      const ok = await postJson(`${r.url}/v1/chat/completions`, chat(1), auth);
      assert.equal(ok.status, 200);
      await ok.text();
    }
    assert.equal((await budgetsOf())["team-a-daily"].spent_usd, 36);
    for (let i = 0; i < 50 && !r.logs.some((l) => l.includes('"budget spent"')); i++) await new Promise((ok) => setTimeout(ok, 20));
    assert.equal(r.logs.filter((l) => l.includes('"budget spent"')).length, 1);
  });

  it("budgets.on_backend_failure: closed answers 503 while the state backend is disconnected; open serves", async () => {
    const a = await fake(), b = await fake();
    const budgets = (mode: string) => `
budgets:
  on_backend_failure: ${mode}
  list: [{ name: all, limit_usd: 100, period: day }]
`;
    r = await startRouter(yaml(a, b, budgets("closed")), {}, { stateUp: () => false });
    const closed = await postJson(`${r.url}/v1/chat/completions`, chat(10));
    assert.equal(closed.status, 503);
    assert.equal((await closed.json()).error.code, "state_backend_unavailable");
    assert.equal(a.requests.length, 0);
    await r.stop();
    r = await startRouter(yaml(a, b, budgets("open")), {}, { stateUp: () => false });
    assert.equal((await postJson(`${r.url}/v1/chat/completions`, chat(10))).status, 200);
  });

  it("/admin/budgets, /stats and the metrics show the fakes' usage; a reset sets the spend back to 0", async () => {
    const a = await fake(), b = await fake();
    r = await startRouter(yaml(a, b, `${AUTH_YAML}
budgets:
  list:
    - { name: team-a-daily, scope: { key: team-a }, limit_usd: 50, period: day }
    - { name: openai-a, scope: { provider: a }, limit_usd: 100, period: week, max_reservation_usd: 1 }
`));
    for (let i = 0; i < 2; i++) await (await postJson(`${r.url}/v1/chat/completions`, chat(10), auth)).text();
    const got = await budgetsOf();
    assert.deepEqual(
      { spent: got["team-a-daily"].spent_usd, reserved: got["team-a-daily"].reserved_usd, remaining: got["team-a-daily"].remaining_usd, limit: got["team-a-daily"].limit_usd },
      { spent: 36, reserved: 0, remaining: 14, limit: 50 },
    );
    assert.equal(got["openai-a"].spent_usd, 36);
    assert.equal(got["openai-a"].soft_limit_crossed, false);
    const metrics = await (await fetch(`${r.url}/metrics`, { headers: admin })).text();
    assert.match(metrics, /failover_router_budget_spent_usd\{budget="team-a-daily"\} 36\n/);
    assert.match(metrics, /failover_router_budget_limit_usd\{budget="openai-a"\} 100\n/);
    const stats = await (await fetch(`${r.url}/stats`, { headers: admin })).json();
    assert.deepEqual(stats.budgets["team-a-daily"], { spent_usd: 36, limit_usd: 50 });

    assert.equal((await fetch(`${r.url}/admin/budgets/team-a-daily/reset`, { method: "POST", headers: auth })).status, 403);
    const reset = await fetch(`${r.url}/admin/budgets/team-a-daily/reset`, { method: "POST", headers: admin });
    assert.equal(reset.status, 200);
    assert.equal((await reset.json()).spent_usd, 0);
    assert.equal((await budgetsOf())["openai-a"].spent_usd, 36);
    assert.equal((await fetch(`${r.url}/admin/budgets/nope/reset`, { method: "POST", headers: admin })).status, 404);
  });
});

// An attempt cut short settles at what the provider bills: the input (1 token) plus the output it sent so far, by
// the router's estimate (4 characters a token). The fake streams PIECES pieces of PIECE_TOKENS tokens each and
// reports its usage only at the end, which these streams never reach.
describe("settlement of an attempt cut short", () => {
  const PIECES = 10, PIECE_TOKENS = 10;
  const REPLY = "abcd".repeat(PIECE_TOKENS * PIECES);
  const INPUT = 1;

  /** One provider `a` priced at 1 USD a token, a `total` budget, the request log at info. */
  function config(a: FakeServer, extra = ""): string {
    return `
providers:
  - { name: a, type: openai, endpoint: ${a.url}, default_model: ma, pricing: { "*": { input: 1000000, output: 1000000 } } }
routing:
  fallback_chain: [a]
${extra}
budgets:
  list:
    - { name: all, limit_usd: 100000, period: total }
logging: { level: info }
`;
  }

  /** The budget once the attempt has settled (its reservation gone). */
  async function settled(): Promise<{ spent_usd: number; reserved_usd: number }> {
    for (let i = 0; i < 250; i++) {
      const b = (await budgetsOf()).all;
      if (b.reserved_usd === 0) return b;
      await new Promise((ok) => setTimeout(ok, 20));
    }
    return (await budgetsOf()).all;
  }

  /** The request log line of the last request, once written. */
  async function lastLog(): Promise<any> {
    for (let i = 0; i < 250; i++) {
      const line = r!.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === "request" && l.path === "/v1/chat/completions").at(-1);
      if (line) return line;
      await new Promise((ok) => setTimeout(ok, 20));
    }
    assert.fail("no request log line");
  }

  /** /stats, the request log and the budget tell the same tokens and cost. */
  async function agree(spent: number): Promise<void> {
    const stats = await (await fetch(`${r!.url}/stats`)).json();
    assert.equal(stats.providers.a.tokens.input, INPUT);
    assert.equal(stats.providers.a.tokens.input + stats.providers.a.tokens.output, spent);
    assert.equal(stats.providers.a.cost_usd, spent);
    const log = await lastLog();
    assert.deepEqual(log.tokens, { input: INPUT, output: spent - INPUT, estimated: true });
    assert.equal(log.cost_usd, spent);
  }

  it("a stream the client cancels after K chunks: the input and the output it was sent", async () => {
    const a = await fake({ reply: REPLY, chunks: PIECES });
    r = await startRouter(config(a));
    a.fault = { chunkDelayMs: 150 };
    const K = 3;
    const res = await postJson(`${r.url}/v1/chat/completions`, chat(1000, { stream: true }));
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let text = "";
    while ((text.match(/"content":"abcd/g) ?? []).length < K) {
      const { done, value } = await reader.read();
      assert.ok(!done, "the stream ended early");
      text += dec.decode(value, { stream: true });
    }
    await reader.cancel();
    const got = await settled();
    // the router had read the K chunks the client got, and at most the next one or two
    assert.ok(got.spent_usd > INPUT, `spent ${got.spent_usd}: more than the input alone`);
    assert.ok(got.spent_usd >= INPUT + K * PIECE_TOKENS && got.spent_usd <= INPUT + (K + 2) * PIECE_TOKENS, `spent ${got.spent_usd}`);
    await agree(got.spent_usd);
    assert.equal((await lastLog()).status, 499);
  });

  it("a stream that breaks mid-way: the input and the chunks read before the break", async () => {
    const a = await fake({ reply: REPLY, chunks: PIECES });
    r = await startRouter(config(a));
    // the role chunk and 4 pieces, then the connection drops
    a.fault = { chunkDelayMs: 30, cutAfter: 5 };
    const events = await readSse(await postJson(`${r.url}/v1/chat/completions`, chat(1000, { stream: true })));
    assert.ok(events.at(-1).error, "the stream ends with an error event");
    const got = await settled();
    // the last piece written before the drop may be lost with the connection
    assert.ok(got.spent_usd >= INPUT + 3 * PIECE_TOKENS && got.spent_usd <= INPUT + 4 * PIECE_TOKENS, `spent ${got.spent_usd}`);
    await agree(got.spent_usd);
  });

  it("a stream that stalls past stream_idle_timeout_seconds: the input and the chunks read before the stall", async () => {
    const a = await fake({ reply: REPLY, chunks: PIECES });
    r = await startRouter(config(a, "  stream_idle_timeout_seconds: 0.5"));
    a.fault = { stallAfter: 3 };
    const events = await readSse(await postJson(`${r.url}/v1/chat/completions`, chat(1000, { stream: true })));
    assert.equal(events.at(-1).error.code, "stream_timeout");
    const got = await settled();
    assert.equal(got.spent_usd, INPUT + 2 * PIECE_TOKENS);
    await agree(got.spent_usd);
  });

  it("a non-streamed request the client cancels: the input only (nothing was sent)", async () => {
    const a = await fake({ reply: REPLY });
    r = await startRouter(config(a));
    a.fault = { delayMs: 1500 };
    const ac = new AbortController();
    const res = fetch(`${r.url}/v1/chat/completions`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(chat(1000)), signal: ac.signal,
    }).catch(() => null);
    await new Promise((ok) => setTimeout(ok, 300));
    ac.abort();
    await res;
    const got = await settled();
    assert.equal(got.spent_usd, INPUT);
    const stats = await (await fetch(`${r.url}/stats`)).json();
    assert.deepEqual(stats.providers.a.tokens, { input: INPUT, output: 0 });
    assert.equal(stats.providers.a.cost_usd, INPUT);
  });

  it("a hedge that lost the race: the input it was sent", async () => {
    const a = await fake({ reply: REPLY }), b = await fake();
    r = await startRouter(`
providers:
  - { name: a, type: openai, endpoint: ${a.url}, default_model: ma, pricing: { "*": { input: 1000000, output: 1000000 } } }
  - { name: b, type: openai, endpoint: ${b.url}, default_model: mb, pricing: { "*": { input: 1000000, output: 1000000 } } }
routing:
  fallback_chain: [a, b]
  hedge: { enabled: true, after_ms: 200, max_extra_percent: 100 }
budgets:
  list:
    - { name: all, limit_usd: 100000, period: total }
logging: { level: warn }
`);
    a.fault = { delayMs: 3000 };
    const res = await postJson(`${r.url}/v1/chat/completions`, chat(1000, { stream: true, stream_options: { include_usage: true } }));
    assert.equal(res.headers.get("x-router-provider"), "b");
    await readSse(res);
    const got = await settled();
    // b's reported usage (11 + 7), and a's input: it had sent nothing when it was aborted
    assert.equal(got.spent_usd, 18 + INPUT);
  });
});

describe("budgets across a config reload", () => {
  it("a new limit applies to the spend so far; a new period starts at 0; /admin/budgets and /metrics follow", async () => {
    const a = await fake();
    const dir = tempDir();
    const path = join(dir, "config.yaml");
    const cfg = (limit: number, period = "day") => `server: { host: 127.0.0.1, port: 0 }
providers:
  - { name: a, type: openai, endpoint: ${a.url}, default_model: ma, pricing: { "*": { input: 1000000, output: 1000000 } } }
budgets:
  list: [{ name: all, limit_usd: ${limit}, period: ${period} }]
`;
    writeFile(path, cfg(20));
    const p = await startProcess(["--config", path], { cwd: dir });
    try {
      const status = async () => {
        const res = await postJson(`${p.url}/v1/chat/completions`, chat(10));
        await res.arrayBuffer();
        return res.status;
      };
      const all = async () => (await (await fetch(`${p.url}/admin/budgets`)).json()).budgets[0];
      const reload = async (text: string) => {
        writeFile(path, text);
        assert.equal((await fetch(`${p.url}/admin/reload`, { method: "POST" })).status, 200);
      };
      // 18 spent of 20: the next reservation of 11 does not fit
      assert.deepEqual([await status(), await status()], [200, 402]);
      await reload(cfg(30));
      assert.equal(await status(), 200);
      assert.deepEqual([(await all()).spent_usd, (await all()).limit_usd], [36, 30]);
      assert.equal(await status(), 402);
      const metrics = await (await fetch(`${p.url}/metrics`)).text();
      assert.match(metrics, /failover_router_budget_limit_usd\{budget="all"\} 30\n/);
      assert.match(metrics, /failover_router_budget_spent_usd\{budget="all"\} 36\n/);
      await reload(cfg(30, "month"));
      assert.deepEqual([(await all()).spent_usd, (await all()).period], [0, "month"]);
    } finally {
      await p.stop();
      rmTemp(dir);
    }
  });
});
