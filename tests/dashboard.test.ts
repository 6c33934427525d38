// The dashboard over plain HTTP: the page (GET /dashboard), its data (GET /admin/state) and its live feed
// (GET /admin/events, server-sent events): auth, the snapshot tick, deltas for breaker transitions, failovers
// and reloads, a subscriber that does not read being dropped, and shutdown ending the open streams. The page
// itself is driven in a real browser by tests/dashboard.browser.test.ts.
import { after, afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { join } from "node:path";
import { postJson, startRouter, type RunningRouter } from "./helpers/router.ts";
import { rmTemp, startProcess, tempDir, waitFor, writeFile, type RouterProcess } from "./helpers/process.ts";

const ADMIN = "admin-secret-key-1234";
const CLIENT = "client-key-abcdefgh";
const chat = () => ({ model: "m", messages: [{ role: "user", content: "hi" }] });

function config(extra = ""): string {
  return `${extra}
providers:
  - { name: alpha, type: mock, default_model: m }
  - { name: beta, type: mock, default_model: m }
  - { name: gamma, type: mock, default_model: m, fail_rate: 1, max_retries: 0, circuit_breaker: { failure_threshold: 3, cooldown_seconds: 30 } }
routing: { fallback_chain: [gamma, alpha, beta] }
`;
}

const AUTH = `auth: { enabled: true, api_keys: ["${CLIENT}"], admin_api_key: "${ADMIN}" }`;
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

interface Event {
  event: string;
  data: any;
}

/** An open GET /admin/events: its events as they arrive. */
async function openEvents(url: string, headers: Record<string, string> = {}) {
  const ac = new AbortController();
  const res = await fetch(`${url}/admin/events`, { headers, signal: ac.signal });
  assert.equal(res.status, 200, await (res.status === 200 ? "" : res.clone().text()));
  assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  const events: Event[] = [];
  let buf = "";
  let ended = false;
  const pump = (async () => {
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1] ?? "message";
          const data = /^data: (.*)$/m.exec(block)?.[1];
          events.push({ event, data: data === undefined ? undefined : JSON.parse(data) });
        }
      }
    } catch { /* aborted */ }
    ended = true;
  })();
  return {
    events,
    get ended() {
      return ended;
    },
    /** the first event (from index `from`) of this type matching `pred` */
    next(event: string, pred: (data: any) => boolean = () => true, from = 0, timeoutMs = 10000): Promise<Event> {
      return waitFor(() => events.slice(from).find((e) => e.event === event && pred(e.data)), `a "${event}" event`, timeoutMs, 20) as Promise<Event>;
    },
    async close() {
      // abort alone can leave Deno's pending read() hanging; cancel ends it
      ac.abort();
      await reader.cancel().catch(() => {});
      await pump;
    },
  };
}

describe("dashboard over HTTP", () => {
  let r: RunningRouter | undefined;
  afterEach(async () => {
    await r?.stop();
    r = undefined;
  });

  it("GET /dashboard is one self-contained page, served without a key when auth is on", async () => {
    r = await startRouter(config(AUTH));
    const res = await fetch(`${r.url}/dashboard`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/html; charset=utf-8/);
    const csp = res.headers.get("content-security-policy")!;
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /connect-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    const page = await res.text();
    assert.ok(page.length < 150 * 1024, `page is ${page.length} bytes`);
    assert.match(page, /<title>[^<]*failover-router[^<]*<\/title>/i);
    assert.match(page, /<meta name="admin-key" content="required">/, "the page knows to ask for the key");
    // nothing from elsewhere: no absolute URL in any src or href, no @import or url() to another host
    assert.doesNotMatch(page, /(src|href)\s*=\s*["']?(https?:)?\/\//i);
    assert.doesNotMatch(page, /@import|url\(\s*["']?(https?:)?\/\//i);
    const post = await fetch(`${r.url}/dashboard`, { method: "POST", headers: bearer(CLIENT) });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET");
  });

  it("GET /admin/state: 401 without a key or with a wrong one, 403 with a client key, the snapshot with the admin key", async () => {
    r = await startRouter(config(AUTH));
    const none = await fetch(`${r.url}/admin/state`);
    assert.equal(none.status, 401);
    assert.equal((await none.json()).error.code, "missing_api_key");
    const wrong = await fetch(`${r.url}/admin/state`, { headers: bearer("not-the-key") });
    assert.equal(wrong.status, 401);
    assert.equal((await wrong.json()).error.code, "invalid_api_key");
    const client = await fetch(`${r.url}/admin/state`, { headers: bearer(CLIENT) });
    assert.equal(client.status, 403);
    assert.equal((await client.json()).error.code, "admin_key_required");

    const res = await fetch(`${r.url}/admin/state`, { headers: bearer(ADMIN) });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("cache-control"), "no-store");
    const s = await res.json();
    assert.deepEqual(s.providers.map((p: any) => p.name), ["gamma", "alpha", "beta"], "in the strategy's order");
    for (const p of s.providers) {
      assert.equal(p.breaker.state, "closed");
      assert.equal(p.breaker.retry_in_ms, null);
      assert.deepEqual(p.budgets, [], "no budget configured, none shown");
      assert.equal(p.latency_history.length, 30);
    }
    assert.equal(s.config.strategy, "priority");
    assert.deepEqual(s.config.chain, ["gamma", "alpha", "beta"]);
    assert.equal(s.config.last_reload_error, null);
    assert.equal(s.shared_state, null, "no shared-state backend");
    assert.equal(s.replica_id, `127.0.0.1:${new URL(r.url).port}`);
    assert.deepEqual(s.failovers, []);
    assert.deepEqual(s.budgets, []);
  });

  it("budgets: a provider's card shows its budget's spend, the snapshot every budget, and a crossed soft limit is an event", async () => {
    const priced = config(`${AUTH}
budgets:
  list:
    - { name: alpha-daily, scope: { provider: alpha }, limit_usd: 600, period: day, soft_limit_percent: 0.1 }
    - { name: everything, limit_usd: 1000000, period: month }`).replace(
      "{ name: alpha, type: mock, default_model: m }",
      `{ name: alpha, type: mock, default_model: m, pricing: { "*": { input: 1000000, output: 1000000 } } }`,
    );
    r = await startRouter(priced);
    const ev = await openEvents(r.url, bearer(ADMIN));
    await ev.next("snapshot");
    const res = await postJson(`${r.url}/v1/chat/completions`, chat(), bearer(CLIENT));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-router-provider"), "alpha");
    await res.arrayBuffer();
    const soft = await ev.next("budget_soft_limit", (d) => d.budget === "alpha-daily");
    assert.equal(soft.data.limit, 600);
    assert.ok(soft.data.spent > 0.6, `spent ${soft.data.spent} is past 0.1% of 600`);

    const s = await (await fetch(`${r.url}/admin/state`, { headers: bearer(ADMIN) })).json();
    const report = await (await fetch(`${r.url}/admin/budgets`, { headers: bearer(ADMIN) })).json();
    const spent = (name: string) => (report.budgets ?? report).find((b: any) => b.name === name).spent_usd;
    const card = (name: string) => s.providers.find((p: any) => p.name === name);
    assert.deepEqual(card("alpha").budgets, [{ name: "alpha-daily", spent_usd: spent("alpha-daily"), limit_usd: 600 }]);
    assert.ok(spent("alpha-daily") > 0);
    assert.deepEqual(card("beta").budgets, []);
    assert.deepEqual(s.budgets.map((b: any) => b.name), ["alpha-daily", "everything"]);
    assert.equal(s.budgets[1].spent_usd, spent("everything"));
    await ev.close();
  });

  it("traffic shows in the snapshot: requests/s, error rate, latency, tokens, failovers with the request id and reason", async () => {
    r = await startRouter(config());
    for (let i = 0; i < 3; i++) {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat(), { "x-request-id": `dash-${i}` });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-router-provider"), "alpha");
      await res.arrayBuffer();
    }
    const s = await (await fetch(`${r.url}/admin/state`)).json();
    const [gamma, alpha] = s.providers;
    assert.equal(gamma.error_rate, 1);
    assert.equal(alpha.error_rate, 0);
    assert.ok(alpha.tokens_per_min.input > 0 && alpha.tokens_per_min.output > 0);
    assert.notEqual(alpha.latency_ms.p50, null);
    assert.ok(alpha.latency_history.at(-1) !== null, "the newest sparkline point has data");
    assert.equal(alpha.in_flight, 0);
    assert.equal(s.failovers.length, 3);
    assert.deepEqual(s.failovers.map((f: any) => f.request_id), ["dash-2", "dash-1", "dash-0"], "newest first");
    assert.equal(s.failovers[0].from, "gamma");
    assert.equal(s.failovers[0].to, "alpha");
    assert.match(s.failovers[0].reason, /fail_rate/);
  });

  it("GET /admin/events: 401 without the admin key; a snapshot at once and one every tick", async () => {
    r = await startRouter(config(AUTH));
    const none = await fetch(`${r.url}/admin/events`);
    assert.equal(none.status, 401);
    const client = await fetch(`${r.url}/admin/events`, { headers: bearer(CLIENT) });
    assert.equal(client.status, 403);
    await client.arrayBuffer();

    const t0 = Date.now();
    const ev = await openEvents(r.url, bearer(ADMIN));
    const first = await ev.next("snapshot");
    assert.deepEqual(first.data.providers.map((p: any) => p.name), ["gamma", "alpha", "beta"]);
    await waitFor(() => ev.events.filter((e) => e.event === "snapshot").length >= 3, "two more ticks", 10000);
    const elapsed = Date.now() - t0;
    // the default tick is one second: two ticks take about two (generous margins for a busy machine)
    assert.ok(elapsed >= 1500, `two ticks came after ${elapsed} ms`);
    assert.equal(r.events.subscribers, 1);
    await ev.close();
    await waitFor(() => r!.events.subscribers === 0, "the subscriber to go when the client does");
  });

  it("streams breaker transitions and failovers as they happen, and the reset", async () => {
    r = await startRouter(config(), {}, { events: { tickMs: 60_000 } }); // no tick: only deltas arrive
    const ev = await openEvents(r.url);
    await ev.next("snapshot");
    // gamma fails every time (its breaker opens at the third failure) and the requests fail over to alpha
    for (let i = 0; i < 3; i++) {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat(), { "x-request-id": `fo-${i}` });
      await res.arrayBuffer();
    }
    const fo = await ev.next("failover", (d) => d.request_id === "fo-0");
    assert.equal(fo.data.from, "gamma");
    assert.equal(fo.data.to, "alpha");
    assert.match(fo.data.reason, /503|fail_rate/);
    const opened = await ev.next("breaker", (d) => d.provider === "gamma" && d.to === "open");
    assert.equal(opened.data.from, "closed");
    assert.ok(opened.data.retry_in_ms > 0 && opened.data.retry_in_ms <= 30_000, `retry in ${opened.data.retry_in_ms} ms`);
    assert.match(opened.data.last_error, /fail_rate/);

    const reset = await fetch(`${r.url}/admin/circuit/gamma/reset`, { method: "POST" });
    assert.equal(reset.status, 200);
    const closed = await ev.next("breaker", (d) => d.provider === "gamma" && d.to === "closed");
    assert.equal(closed.data.from, "open");
    assert.equal(closed.data.consecutive_failures, 0);
    assert.equal(ev.events.filter((e) => e.event === "snapshot").length, 1, "no tick meanwhile: these were deltas");
    await ev.close();
  });

  it("drops a subscriber that does not read, while one that reads keeps getting events", async () => {
    // a large config and a fast tick, so that the unread bytes pile up in seconds
    const many = Array.from({ length: 40 }, (_, i) => `  - { name: provider-with-a-rather-long-name-${i}, type: mock, default_model: m }`).join("\n");
    r = await startRouter(`providers:\n${many}\n`, {}, { events: { tickMs: 10, maxQueuedBytes: 64 * 1024 } });
    const reader = await openEvents(r.url);
    await reader.next("snapshot");
    const port = Number(new URL(r.url).port);
    const sock = net.connect({ port, host: "127.0.0.1" }, () => sock.write("GET /admin/events HTTP/1.1\r\nhost: x\r\n\r\n"));
    sock.on("error", () => {});
    sock.once("data", () => sock.pause()); // reads the head, then nothing more
    try {
      await waitFor(() => r!.events.subscribers === 2, "the slow subscriber to connect"); await waitFor(() => r!.events.subscribers === 1, "the slow subscriber to be dropped", 30000);
      const seen = reader.events.length;
      await waitFor(() => reader.events.length > seen + 5, "more events for the reader");
      assert.equal(reader.ended, false);
    } finally {
      sock.destroy();
      await reader.close();
    }
  });

  it("refuses event streams past the subscriber cap with 503", async () => {
    r = await startRouter(config(), {}, { events: { maxSubscribers: 1 } });
    const ev = await openEvents(r.url);
    const second = await fetch(`${r.url}/admin/events`);
    assert.equal(second.status, 503);
    assert.equal((await second.json()).error.code, "too_many_subscribers");
    await ev.close();
  });
});

describe("dashboard of a router process", () => {
  let dir: string;
  const running: RouterProcess[] = [];
  after(async () => {
    for (const p of running) await p.stop();
    if (dir) rmTemp(dir);
  });

  it("a reload that changes auth ends the streams opened under the old one: a rotated admin key stops getting events", async () => {
    const tmp = tempDir();
    try {
      const path = join(tmp, "config.yaml");
      const good = config(`server: { host: 127.0.0.1, port: 0 }\n${AUTH}`);
      writeFile(path, good);
      const p = await startProcess(["--config", path], { cwd: tmp });
      running.push(p);
      const ev = await openEvents(p.url, bearer(ADMIN));
      await ev.next("snapshot");

      // a reload that leaves auth alone keeps the stream
      writeFile(path, good.replace("fallback_chain: [gamma, alpha, beta]", "fallback_chain: [beta, alpha]"));
      assert.equal((await fetch(`${p.url}/admin/reload`, { method: "POST", headers: bearer(ADMIN) })).status, 200);
      const reloaded = ev.events.indexOf(await ev.next("config"));
      await ev.next("snapshot", () => true, reloaded + 1);
      assert.equal(ev.ended, false);

      // the admin key rotated: the old key is refused, and the stream it opened ends
      const NEW = "a-brand-new-admin-key-5678";
      writeFile(path, good.replace(ADMIN, NEW));
      assert.equal((await fetch(`${p.url}/admin/reload`, { method: "POST", headers: bearer(ADMIN) })).status, 200);
      assert.equal((await fetch(`${p.url}/admin/state`, { headers: bearer(ADMIN) })).status, 401);
      await waitFor(() => ev.ended, "the stream opened with the old admin key to end", 5000);
      await ev.close();
      const again = await fetch(`${p.url}/admin/events`, { headers: bearer(ADMIN) });
      assert.equal(again.status, 401);
      await again.body?.cancel();
    } finally {
      rmTemp(tmp);
    }
  });

  it("streams a reload error and a reload, and SIGTERM ends the open streams at once", async () => {
    dir = tempDir();
    const path = join(dir, "config.yaml");
    const good = config(`server: { host: 127.0.0.1, port: 0, shutdown_timeout_seconds: 60 }\n${AUTH}`);
    writeFile(path, good);
    const p = await startProcess(["--config", path], { cwd: dir, env: { HOSTNAME: "" } });
    running.push(p);
    const ev = await openEvents(p.url, bearer(ADMIN));
    const first = await ev.next("snapshot");
    const stats = await (await fetch(`${p.url}/stats`, { headers: { authorization: `Bearer ${ADMIN}` } })).json();
    assert.equal(first.data.replica_id, stats.replica, "the replica id of /stats");
    assert.match(first.data.replica_id, new RegExp(`:${p.port}$`));
    assert.equal(first.data.config.reload_available, true);

    writeFile(path, good.replace("fallback_chain: [gamma, alpha, beta]", "fallback_chain: [gamma, nope]"));
    const bad = await fetch(`${p.url}/admin/reload`, { method: "POST", headers: bearer(ADMIN) });
    assert.equal(bad.status, 400);
    const err = await ev.next("reload_error");
    assert.match(err.data.message, /nope/);
    const tick = await ev.next("snapshot", (d) => d.config.last_reload_error !== null);
    assert.match(tick.data.config.last_reload_error, /nope/);

    writeFile(path, good.replace("fallback_chain: [gamma, alpha, beta]", "fallback_chain: [beta, alpha]"));
    const ok = await fetch(`${p.url}/admin/reload`, { method: "POST", headers: bearer(ADMIN) });
    assert.equal(ok.status, 200);
    const reloaded = await ev.next("config");
    assert.deepEqual(reloaded.data.chain, ["beta", "alpha"]);

    // shutdown_timeout_seconds is 60: the open stream must not hold the drain that long
    const t0 = Date.now();
    p.kill("SIGTERM");
    await ev.next("shutdown");
    const { code, at } = await p.exited;
    assert.equal(code, 0);
    assert.ok(at - t0 < 10000, `exited ${at - t0} ms after SIGTERM`);
    await waitFor(() => ev.ended, "the event stream to end");
  });
});
