// Three router processes on one real redis-server (state.backend: redis) behave, for clients and providers, like
// one router: idempotent replays and waits across replicas, one rate limit, shared breaker openings, one probe,
// resets everywhere; and killing, freezing or emptying Redis costs no request. Skipped (with a message) when
// redis-server is not installed, except under CI=true.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startOpenAIFake } from "./fakes/openai.ts";
import type { FakeServer } from "./fakes/common.ts";
import { readSse } from "./helpers/router.ts";
import { freePort, rmTemp, signalProcess, startProcess, tempDir, waitFor, writeFile, type RouterProcess } from "./helpers/process.ts";
import { redisServerBin, startRedis, type RedisServer } from "./helpers/redis.ts";

const COMMAND_TIMEOUT_MS = 100;
const RPM = 6000;
const BURST = 100;
const KEYS = ["sk-1", "sk-2", "sk-3", "sk-4", "sk-rl", "sk-kill"];

function fleetConfig(redisUrl: string, a: FakeServer, b: FakeServer, prefix = "fleet:"): string {
  return `
server: { host: 127.0.0.1, port: 0 }
providers:
  - { name: a, type: openai, endpoint: ${a.url}/v1, default_model: m, timeout_seconds: 10 }
  - { name: b, type: openai, endpoint: ${b.url}/v1, default_model: m, timeout_seconds: 10 }
circuit_breaker: { failure_threshold: 2, cooldown_seconds: 2 }
routing: { request_timeout_seconds: 2 }
auth:
  enabled: true
  api_keys: [${KEYS.join(", ")}]
  admin_api_key: sk-admin
rate_limit: { enabled: true, requests_per_minute: ${RPM}, burst: ${BURST} }
state:
  backend: redis
  redis: { url: "${redisUrl}", key_prefix: "${prefix}", command_timeout_ms: ${COMMAND_TIMEOUT_MS} }
`;
}

const chat = (extra: Record<string, unknown> = {}) => ({ model: "m", messages: [{ role: "user", content: "hi" }], ...extra });

async function post(r: RouterProcess, body: unknown, headers: Record<string, string> = {}, key = "sk-1"): Promise<Response> {
  return fetch(`${r.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}`, ...headers },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
}

async function health(r: RouterProcess): Promise<any> {
  return (await fetch(`${r.url}/health`)).json();
}

/** Waits up to `ms` for every replica's /health to satisfy `check`; the time it took. */
async function everywhere(rs: RouterProcess[], check: (h: any) => boolean, what: string, ms: number): Promise<number> {
  const t0 = Date.now();
  await waitFor(async () => (await Promise.all(rs.map(health))).every(check), what, ms, 20);
  return Date.now() - t0;
}

if (redisServerBin()) {
  describe("three replicas on one Redis", () => {
    let redis: RedisServer;
    let a: FakeServer, b: FakeServer;
    let dir: string;
    let fleet: RouterProcess[] = [];
    const extra: RouterProcess[] = [];
    let n = 0;
    const uniq = (s: string) => `${s}-${++n}-${Date.now()}`;

    before(async () => {
      redis = (await startRedis())!;
      a = await startOpenAIFake({ reply: "from A" });
      b = await startOpenAIFake({ reply: "from B" });
      dir = tempDir();
      writeFile(join(dir, "config.yaml"), fleetConfig(redis.url, a, b));
      fleet = await Promise.all([0, 1, 2].map(() => startProcess(["--config", "config.yaml"], { cwd: dir, timeoutMs: 30_000 })));
      for (const r of fleet) assert.ok(r.logs().some((l) => l.msg?.startsWith("state backend: redis") && l.backend === "redis"), r.output());
      await everywhere(fleet, (h) => h.state.connected === true, "every replica connected", 10_000);
    });
    after(async () => {
      for (const r of [...fleet, ...extra]) await r.stop();
      await redis?.stop();
      await a?.stop();
      await b?.stop();
      if (dir) rmTemp(dir);
    });

    it("a retry on another replica is replayed, plain and streamed, with no provider call", async () => {
      const [r1, r2, r3] = fleet;
      const before = a.requests.length;
      const key = { "idempotency-key": uniq("plain") };
      const first = await post(r1, chat(), key);
      const body = await first.text();
      assert.equal(first.status, 200);
      for (const r of [r2, r3]) {
        const again = await post(r, chat(), key);
        assert.equal(again.headers.get("idempotent-replayed"), "true");
        assert.equal(await again.text(), body);
      }
      const skey = { "idempotency-key": uniq("stream") };
      const streamed = await post(r2, chat({ stream: true }), skey);
      const events = await readSse(streamed);
      assert.equal(events.at(-1), "[DONE]");
      const replayed = await post(r3, chat({ stream: true }), skey);
      assert.equal(replayed.headers.get("idempotent-replayed"), "true");
      assert.match(replayed.headers.get("content-type") ?? "", /^text\/event-stream/);
      assert.deepEqual(await readSse(replayed), events);
      assert.equal(a.requests.length, before + 2, "one provider call per key");
      const other = await post(r1, chat({ messages: [{ role: "user", content: "something else" }] }), key);
      assert.equal(other.status, 422, "the key reused with another body, on another replica");
      await other.arrayBuffer();
    });

    it("a duplicate on replica B while A serves the first waits for A's answer and replays it: one provider call", async () => {
      const [r1, r2] = fleet;
      const before = a.requests.length;
      a.fault = { delayMs: 700, times: 1 };
      const key = { "idempotency-key": uniq("dup") };
      const first = post(r1, chat(), key);
      await new Promise((r) => setTimeout(r, 200));
      const second = await post(r2, chat(), key);
      assert.equal(second.status, 200);
      assert.equal(second.headers.get("idempotent-replayed"), "true");
      const res1 = await first;
      assert.equal(await second.text(), await res1.text());
      assert.equal(a.requests.length, before + 1);
      a.fault = null;
    });

    it("a key stays scoped to its API key across replicas", async () => {
      const [r1, r2] = fleet;
      const key = { "idempotency-key": uniq("scoped") };
      await (await post(r1, chat(), key, "sk-1")).arrayBuffer();
      const other = await post(r2, chat(), key, "sk-2");
      assert.equal(other.headers.get("idempotent-replayed"), null);
      await other.arrayBuffer();
    });

    it("one rate limit: requests per minute across three replicas within 5% of the limit", async () => {
      let allowed = 0, refused = 0, i = 0;
      const calls = a.requests.length;
      const t0 = Date.now();
      const until = t0 + 2000;
      const worker = async () => {
        while (Date.now() < until) {
          const n = i++;
          // every other request with an Idempotency-Key: the limit holds whether or not the idempotency step runs
          const res = await post(fleet[n % 3], chat(), n % 2 ? { "idempotency-key": uniq("rl") } : {}, "sk-rl");
          await res.arrayBuffer();
          if (res.status === 200) allowed++;
          else if (res.status === 429) refused++;
          else assert.fail(`status ${res.status}`);
        }
      };
      await Promise.all(Array.from({ length: 9 }, worker));
      const elapsed = Date.now() - t0;
      assert.ok(refused > 0, "the load passed the limit");
      const limit = BURST + (RPM * elapsed) / 60_000;
      assert.ok(Math.abs(allowed - limit) <= 0.05 * limit, `allowed ${allowed}, limit ${limit.toFixed(0)} over ${elapsed} ms`);
      assert.equal(a.requests.length - calls, allowed, "a refused request reaches no provider");
    });

    it("a breaker opened through A is skipped by B and C within 1 s; after the cool-off one probe goes out across the fleet", async () => {
      const [r1, r2, r3] = fleet;
      a.fault = { status: 500 };
      for (let i = 0; i < 2; i++) assert.equal((await post(r1, chat(), {}, "sk-2")).headers.get("x-router-provider"), "b");
      const took = await everywhere(fleet, (h) => h.providers.a.state === "open", "a open everywhere", 1000);
      assert.ok(took <= 1000, `${took} ms`);
      const sent = a.requests.length;
      for (const r of [r2, r3]) assert.equal((await post(r, chat(), {}, "sk-2")).headers.get("x-router-provider"), "b");
      assert.equal(a.requests.length, sent, "B and C sent nothing to the open provider");

      // after the cool-off: the replicas ask for the probe permit as they look (here: /health), one gets it
      a.fault = { delayMs: 400, times: 1 };
      await new Promise((r) => setTimeout(r, 2100));
      await Promise.all(fleet.map(health));
      await new Promise((r) => setTimeout(r, 100));
      const states = await Promise.all(fleet.map(async (r) => (await health(r)).providers.a.state));
      assert.equal(states.filter((s) => s === "half_open").length, 1, `one replica holds the probe permit: ${states}`);
      const before = a.requests.length;
      const wave = await Promise.all(Array.from({ length: 20 }, (_, i) => post(fleet[i % 3], chat(), {}, "sk-3")));
      for (const res of wave) assert.equal(res.status, 200);
      await Promise.all(wave.map((res) => res.arrayBuffer()));
      assert.equal(a.requests.length - before, 1, "exactly one probe across the fleet");
      await everywhere(fleet, (h) => h.providers.a.state === "closed", "the probe's success closes a everywhere", 1000);
      a.fault = null;
    });

    it("a manual reset on one replica closes the breaker on every replica", async () => {
      const [r1, r2] = fleet;
      a.fault = { status: 500 };
      for (let i = 0; i < 2; i++) await (await post(r1, chat(), {}, "sk-2")).arrayBuffer();
      a.fault = null;
      await everywhere(fleet, (h) => h.providers.a.state === "open", "a open everywhere", 1000);
      const res = await fetch(`${r2.url}/admin/circuit/a/reset`, { method: "POST", headers: { authorization: "Bearer sk-admin" } });
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      await everywhere(fleet, (h) => h.providers.a.state === "closed", "a closed everywhere", 1000);
    });

    it("the dashboard's /admin/state names each replica and shows the shared state connected", async () => {
      const ids = new Set<string>();
      for (const r of fleet) {
        const res = await fetch(`${r.url}/admin/state`, { headers: { authorization: "Bearer sk-admin" } });
        assert.equal(res.status, 200);
        const s = await res.json();
        assert.equal(s.shared_state?.backend, "redis");
        assert.equal(s.shared_state?.connected, true);
        const stats = await (await fetch(`${r.url}/stats`, { headers: { authorization: "Bearer sk-admin" } })).json();
        assert.equal(s.replica_id, stats.replica, "the same id as /stats");
        ids.add(s.replica_id);
      }
      assert.equal(ids.size, fleet.length, "each replica has its own id");
    });

    it("a lock holder killed with SIGKILL frees its key after the lock's TTL (request timeout + a few seconds)", async () => {
      const victim = await startProcess(["--config", "config.yaml"], { cwd: dir, timeoutMs: 30_000 });
      extra.push(victim);
      a.fault = { delayMs: 20_000, times: 1 };
      const key = { "idempotency-key": uniq("killed") };
      const sent = a.requests.length;
      const lost = post(victim, chat(), key, "sk-kill").catch(() => null);
      await waitFor(() => a.requests.length > sent, "the victim's upstream call", 5000);
      const t0 = Date.now();
      signalProcess(victim.child, "SIGKILL");
      await lost;
      a.fault = null;
      const res = await post(fleet[0], chat(), key, "sk-kill");
      const waited = Date.now() - t0;
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("idempotent-replayed"), null, "served by a call of its own");
      await res.arrayBuffer();
      // the lock lives routing.request_timeout_seconds (2) + 5 s from when the victim took it
      assert.ok(waited >= 3000 && waited <= 9000, `waited ${waited} ms`);
    });

    it("Redis frozen (SIGSTOP) for 5 s under load: no failed request, p99 below command_timeout_ms + 50 ms; sharing resumes after SIGCONT", async () => {
      const latencies: number[] = [];
      const failures: string[] = [];
      let stop = false;
      let i = 0;
      const client = async (c: number) => {
        while (!stop) {
          const k = i++;
          const t0 = performance.now();
          const res = await post(fleet[c % 3], chat(), { "idempotency-key": uniq("load") }, KEYS[k % 4]);
          await res.arrayBuffer();
          latencies.push(performance.now() - t0);
          if (res.status !== 200) failures.push(String(res.status));
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      const load = Promise.all([0, 1, 2].map(client));
      await new Promise((r) => setTimeout(r, 500));
      redis.freeze();
      try {
        await everywhere(fleet, (h) => h.state.connected === false, "every replica on its local state", 3000);
        const m = await (await fetch(`${fleet[0].url}/metrics`)).text();
        assert.match(m, /^failover_router_state_backend_up\{backend="redis"\} 0$/m);
        await new Promise((r) => setTimeout(r, 4000));
      } finally {
        redis.thaw();
      }
      await new Promise((r) => setTimeout(r, 500));
      stop = true;
      await load;
      assert.deepEqual(failures, []);
      latencies.sort((x, y) => x - y);
      const p99 = latencies[Math.floor(latencies.length * 0.99)];
      assert.ok(p99 < COMMAND_TIMEOUT_MS + 50, `p99 ${p99.toFixed(1)} ms over ${latencies.length} requests`);
      await everywhere(fleet, (h) => h.state.connected === true, "sharing resumed", 5000);
      const key = { "idempotency-key": uniq("after-freeze") };
      await (await post(fleet[0], chat(), key)).arrayBuffer();
      assert.equal((await post(fleet[1], chat(), key)).headers.get("idempotent-replayed"), "true", "shared again");
    });

    it("Redis killed and restarted empty: requests keep being served, and the fleet shares again", async () => {
      await redis.kill();
      for (const r of fleet) {
        const res = await post(r, chat(), { "idempotency-key": uniq("redis-dead") });
        assert.equal(res.status, 200);
        await res.arrayBuffer();
      }
      await everywhere(fleet, (h) => h.state.connected === false && typeof h.state.last_error === "string", "Redis down", 3000);
      await redis.restart();
      await everywhere(fleet, (h) => h.state.connected === true, "Redis back", 5000);
      const key = { "idempotency-key": uniq("after-restart") };
      await (await post(fleet[2], chat(), key)).arrayBuffer();
      assert.equal((await post(fleet[0], chat(), key)).headers.get("idempotent-replayed"), "true", "shared again");
      // a breaker opened now still reaches every replica (the breakers' stream starts afresh)
      a.fault = { status: 500 };
      for (let i = 0; i < 2; i++) await (await post(fleet[2], chat(), {}, "sk-4")).arrayBuffer();
      a.fault = null;
      await everywhere(fleet, (h) => h.providers.a.state === "open", "a open everywhere", 1000);
      await (await fetch(`${fleet[0].url}/admin/circuit/a/reset`, { method: "POST", headers: { authorization: "Bearer sk-admin" } })).arrayBuffer();
    });
  });

  describe("a password-protected Redis", () => {
    let redis: RedisServer;
    let a: FakeServer;
    let dir: string;
    const PASSWORD = "pa55-w0rd-never-shown";
    before(async () => {
      redis = (await startRedis({ password: PASSWORD }))!;
      a = await startOpenAIFake({ reply: "ok" });
      dir = tempDir();
    });
    after(async () => {
      await redis?.stop();
      await a?.stop();
      if (dir) rmTemp(dir);
    });

    for (const [name, password, connected] of [["the right password: connected", PASSWORD, true], ["a wrong password: served from local state", "wrong-pa55word", false]] as const) {
      it(`${name}; the password appears in no log, /health, /stats or /metrics`, async () => {
        const url = redis.url.replace(encodeURIComponent(PASSWORD), encodeURIComponent(password));
        writeFile(join(dir, "config.yaml"), fleetConfig(url, a, a, "pw:"));
        const r = await startProcess(["--config", "config.yaml"], { cwd: dir, timeoutMs: 30_000 });
        try {
          const res = await post(r, chat(), { "idempotency-key": "pw-1" });
          assert.equal(res.status, 200);
          await res.arrayBuffer();
          const h = await health(r);
          assert.equal(h.state.connected, connected, JSON.stringify(h.state));
          const stats = await (await fetch(`${r.url}/stats`, { headers: { authorization: "Bearer sk-1" } })).json();
          const texts = [r.output(), JSON.stringify(h), JSON.stringify(stats), await (await fetch(`${r.url}/metrics`)).text()];
          for (const t of texts) assert.ok(!t.includes(password) && !t.includes(encodeURIComponent(password)), t);
          assert.match(stats.replica, /:\d+$/);
          assert.equal(stats.state.connected, connected);
        } finally {
          await r.stop();
        }
      });
    }
  });
}

if (redisServerBin()) {
  describe("a Redis incident as the operator sees it", () => {
    let a: FakeServer;
    let dir: string;
    before(async () => {
      a = await startOpenAIFake({ reply: "ok" });
      dir = tempDir();
    });
    after(async () => {
      await a?.stop();
      if (dir) rmTemp(dir);
    });

    const stateLogs = (r: RouterProcess, level: string) => r.logs().filter((l) => l.level === level && l.msg?.startsWith("state backend: redis"));

    it("Redis out of memory (noeviction): down once, logged once, no flapping; back once it takes writes again", async () => {
      const redis = (await startRedis())!;
      writeFile(join(dir, "config.yaml"), fleetConfig(redis.url, a, a, "oom:"));
      const r = await startProcess(["--config", "config.yaml"], { cwd: dir, timeoutMs: 30_000 });
      try {
        await waitFor(async () => (await health(r)).state.connected, "connected", 5000);
        assert.equal(await redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction"), "+OK");
        assert.equal(await redis.command("CONFIG", "SET", "maxmemory", "1"), "+OK");
        const ups = stateLogs(r, "info").length;
        // 3 s of traffic: rate limits and idempotency write on every request
        for (let i = 0; i < 30; i++) {
          const res = await post(r, chat(), { "idempotency-key": `oom-${i}` });
          assert.equal(res.status, 200);
          await res.arrayBuffer();
          await new Promise((res) => setTimeout(res, 100));
        }
        const h = await health(r);
        assert.equal(h.state.connected, false, JSON.stringify(h.state));
        assert.match(h.state.last_error, /OOM/);
        assert.equal(stateLogs(r, "warn").length, 1, "one warning for the whole incident");
        assert.equal(stateLogs(r, "info").length, ups, "never announced back while writes fail");
        assert.equal(await redis.command("CONFIG", "SET", "maxmemory", "0"), "+OK");
        await waitFor(async () => (await health(r)).state.connected, "back once Redis takes writes", 3000);
      } finally {
        await r.stop();
        await redis.stop();
      }
    });

    it("a lock left in a Redis frozen while its holder answered is released when Redis is back: a retry on another replica does not wait out its TTL", async () => {
      const redis = (await startRedis())!;
      writeFile(join(dir, "config.yaml"), fleetConfig(redis.url, a, a, "orphan:"));
      const [r1, r2] = await Promise.all([0, 1].map(() => startProcess(["--config", "config.yaml"], { cwd: dir, timeoutMs: 30_000 })));
      try {
        await everywhere([r1, r2], (h) => h.state.connected, "connected", 5000);
        a.fault = { delayMs: 1500, times: 1 };
        const first = post(r1, chat(), { "idempotency-key": "orphan-1" });
        await new Promise((res) => setTimeout(res, 300));
        redis.freeze();
        try {
          await everywhere([r1], (h) => h.state.connected === false, "r1 on its local state", 3000);
          const res = await first; // answered, and stored locally, while Redis is frozen
          assert.equal(res.status, 200);
          await res.arrayBuffer();
        } finally {
          redis.thaw();
        }
        await everywhere([r1, r2], (h) => h.state.connected, "Redis back", 5000);
        await new Promise((res) => setTimeout(res, 100));
        const t0 = Date.now();
        const retry = await post(r2, chat(), { "idempotency-key": "orphan-1" });
        const waited = Date.now() - t0;
        assert.equal(retry.status, 200);
        await retry.arrayBuffer();
        // the lock's TTL is request_timeout_seconds (2) + 5 s
        assert.ok(waited < 1500, `the retry waited ${waited} ms`);
      } finally {
        a.fault = null;
        await r1.stop();
        await r2.stop();
        await redis.stop();
      }
    });

    it("a Redis the router cannot reach: /health and the log name the cause, not only that the client is offline", async () => {
      const port = await freePort();
      writeFile(join(dir, "config.yaml"), fleetConfig(`redis://127.0.0.1:${port}/0`, a, a, "gone:"));
      const r = await startProcess(["--config", "config.yaml"], { cwd: dir, timeoutMs: 30_000 });
      try {
        const res = await post(r, chat(), { "idempotency-key": "gone-1" });
        assert.equal(res.status, 200);
        await res.arrayBuffer();
        const start = r.logs().find((l) => l.msg?.startsWith("state backend: redis"));
        assert.match(start?.last_error ?? "", /ECONNREFUSED/, JSON.stringify(start));
        await new Promise((res) => setTimeout(res, 1200));
        assert.match((await health(r)).state.last_error, /ECONNREFUSED/);
      } finally {
        await r.stop();
      }
    });
  });
}
