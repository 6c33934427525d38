// End-to-end against the compiled binary (dist/failover-router, built with scripts/build when missing or
// older than the sources): copied alone into an empty folder with only a config.yaml, run with no
// arguments, and driven with the official `openai` SDK: chat, stream, completions, models, failover,
// /health, /metrics, reload and graceful stop.
import { after, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import process from "node:process";
import { chmodSync, copyFileSync, readdirSync, statSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { join } from "node:path";
import zlib from "node:zlib";
import OpenAI from "openai";
import { startOpenAIFake } from "./fakes/openai.ts";
import { refusedUrl, type FakeServer } from "./fakes/common.ts";
import { openaiChunk, pour, startScriptedFake, streamHead, type Script, type ScriptedFake } from "./fakes/scripted.ts";
import { EDGE_CONFIG, edgeChecks } from "./helpers/edge.ts";
import { makeTestCa, type TestCa } from "./helpers/tls.ts";
import { ROOT, rmTemp, run, sseText, startProcess, tempDir, waitFor, writeFile, type RouterProcess } from "./helpers/process.ts";
import { redisServerBin, startRedis } from "./helpers/redis.ts";

const BINARY = join(ROOT, "dist", "failover-router");

function newestSource(): number {
  let newest = 0;
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  walk(join(ROOT, "src"));
  for (const f of ["package.json", "package-lock.json", "scripts/build"]) newest = Math.max(newest, statSync(join(ROOT, f)).mtimeMs);
  return newest;
}

function gitHead(): string {
  return spawnSync("git", ["rev-parse", "--short=12", "HEAD"], { cwd: ROOT, encoding: "utf8" }).stdout?.trim() ?? "";
}

/** Builds dist/failover-router unless it is newer than every source file and was built from this commit. */
function ensureBinary(): void {
  let built = 0;
  try {
    built = statSync(BINARY).mtimeMs;
  } catch { /* missing */ }
  if (built > newestSource()) {
    const version = spawnSync(BINARY, ["--version"], { encoding: "utf8", timeout: 30000 }).stdout ?? "";
    if (version.includes(`commit ${gitHead()}`)) return;
  }
  const r = spawnSync("bash", [join(ROOT, "scripts/build")], { cwd: ROOT, encoding: "utf8", timeout: 180000 });
  if (r.status !== 0) throw new Error(`scripts/build failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
}

describe("the compiled binary, alone in an empty folder", () => {
  let dir: string, bin: string, a: FakeServer, flood: ScriptedFake, held: ScriptedFake, heldTls: ScriptedFake, ca: TestCa, r: RouterProcess, client: OpenAI;
  before(async () => {
    ensureBinary();
    dir = tempDir("fr-binary-");
    bin = join(dir, "failover-router");
    copyFileSync(BINARY, bin);
    chmodSync(bin, 0o755);
    a = await startOpenAIFake({ reply: "answer from A" });
    // one content chunk, then a line that never ends
    flood = await startScriptedFake((res) => {
      streamHead(res);
      res.write(openaiChunk("before the flood") + 'data: {"choices":[{"index":0,"delta":{"content":"');
      return pour(res, "x".repeat(65536), 32 * 1024 * 1024);
    });
    held = await startScriptedFake(holdUntil(0).script);
    ca = makeTestCa();
    heldTls = await startScriptedFake(holdUntil(0).script, ca);
    writeFile(join(dir, "config.yaml"), `server: { host: 127.0.0.1, port: 0 }
providers:
  - { name: dead, type: openai_compatible, endpoint: "${await refusedUrl()}/v1", default_model: m }
  - { name: a, type: openai_compatible, endpoint: "${a.url}/v1", default_model: a-model, models: [a-model, gpt-4o-mini] }
  - { name: backup, type: mock, reply: "answer from the backup mock" }
  - { name: flood, type: openai_compatible, endpoint: "${flood.url}/v1", default_model: m }
  - { name: held, type: openai_compatible, endpoint: "${held.url}/v1", default_model: m }
  - { name: heldtls, type: openai_compatible, endpoint: "${heldTls.url}/v1", default_model: m, tls: { ca_file: "${ca.caFile}" } }
routing: { fallback_chain: [dead, a, backup] }
`);
    r = await startProcess([], { cwd: dir, cmd: [bin] });
    client = new OpenAI({ baseURL: `${r.url}/v1`, apiKey: "not-checked", maxRetries: 0 });
  });
  after(async () => {
    await r?.stop();
    await a?.stop();
    await flood?.stop();
    await held?.stop();
    await heldTls?.stop();
    if (dir) rmTemp(dir);
    if (ca) rmTemp(ca.dir);
  });
  beforeEach(() => a.reset());

  it("is the only file next to config.yaml", () => {
    assert.deepEqual(readdirSync(dir).sort(), ["config.yaml", "failover-router"]);
  });

  it("--version prints the version, the runtime and the git commit", async () => {
    const v = await run([bin, "--version"], { cwd: dir });
    assert.equal(v.code, 0);
    assert.match(v.stdout, /^failover-router \d+\.\d+\.\d+ \(bun \d+\.\d+\.\d+, commit [0-9a-f]{7,}(-dirty)?\)\n$/);
    const head = gitHead();
    if (head) assert.ok(v.stdout.includes(`commit ${head}`), `${v.stdout} should name ${head}`);
  });

  it("check validates ./config.yaml", async () => {
    const c = await run([bin, "check"], { cwd: dir });
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /^chain: dead -> a -> backup$/m);
  });

  it("chat completion through the openai SDK, failing over from a dead provider", async () => {
    const { data, response } = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }).withResponse();
    assert.equal(data.choices[0].message.content, "answer from A");
    assert.equal(data.object, "chat.completion");
    assert.equal(response.headers.get("x-router-provider"), "a");
    assert.equal(response.headers.get("x-router-attempts"), "2");
    assert.equal(a.requests[0].body.model, "gpt-4o-mini");
  });

  it("streamed chat completion through the openai SDK", async () => {
    const stream = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], stream: true, stream_options: { include_usage: true } });
    let text = "";
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, "answer from A");
    assert.ok(usage && usage.total_tokens > 0, "usage chunk");
  });

  it("legacy completions through the openai SDK", async () => {
    const c = await client.completions.create({ model: "a-model", prompt: "Say hi" });
    assert.equal(c.choices[0].text, "answer from A");
  });

  it("ends a stream whose upstream sends an event larger than 1 MiB with an error, and lets the upstream go", async () => {
    const stream = await client.chat.completions.create({ model: "flood/m", messages: [{ role: "user", content: "hi" }], stream: true });
    let text = "";
    await assert.rejects(
      (async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
      })(),
      (e: unknown) => e instanceof OpenAI.APIError && /upstream stream event larger than 1048576 bytes/.test(e.message),
    );
    assert.equal(text, "before the flood");
    await waitFor(() => flood.aborted === 1, "the upstream request to be aborted");
  });

  it("models through the openai SDK", async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    for (const id of ["a-model", "gpt-4o-mini", "a/a-model", "backup/mock"]) assert.ok(ids.includes(id), `${id} in ${ids.join(", ")}`);
  });

  it("fails over to the next provider when one answers 500", async () => {
    a.fault = { status: 500 };
    const { data, response } = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }).withResponse();
    assert.equal(data.choices[0].message.content, "answer from the backup mock");
    assert.equal(response.headers.get("x-router-provider"), "backup");
    assert.equal(response.headers.get("x-router-attempts"), "3");
  });

  it("an OpenAI-shaped error when the whole chain fails reaches the SDK as an APIError", async () => {
    await assert.rejects(
      client.chat.completions.create({ model: "dead/m", messages: [{ role: "user", content: "hi" }] }),
      (e: unknown) => e instanceof OpenAI.APIError && e.status === 502 && (e.error as { code?: string })?.code === "all_providers_failed",
    );
  });

  it("/metrics serves the Prometheus exposition with the traffic so far", async () => {
    const res = await fetch(`${r.url}/metrics`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(text, /^failover_router_requests_total\{endpoint="\/v1\/chat\/completions",status="200"\} [1-9]/m);
    assert.match(text, /^failover_router_build_info\{version="[^"]+",runtime="bun",replica="[^"]+:\d+"\} 1$/m);
  });

  it("serves the dashboard page from inside the binary, and its data", async () => {
    const page = await fetch(`${r.url}/dashboard`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type")!, /^text\/html/);
    assert.match(await page.text(), /<title>failover-router dashboard<\/title>/);
    const state = await (await fetch(`${r.url}/admin/state`)).json();
    assert.ok(state.providers.some((p: { name: string }) => p.name === "backup"));
  });

  it("/health answers with the config block, and `healthcheck` agrees", async () => {
    const res = await fetch(`${r.url}/health`);
    assert.equal(res.status, 200);
    const h = await res.json();
    // the failover tests above made the dead provider fail: its breaker may be open (degraded), never down
    assert.ok(h.status === "ok" || h.status === "degraded", h.status);
    assert.equal(h.providers.backup.state, "closed");
    assert.equal(h.config.last_reload_error, null);
    const ok = await run([bin, "healthcheck", "--port", String(r.port)], { cwd: dir });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /healthy/);
    const bad = await run([bin, "healthcheck", "--url", `${await refusedUrl()}/health`], { cwd: dir });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /unhealthy/);
  });

  // Started without BUN_CONFIG_MAX_HTTP_REQUESTS (startProcess drops it). Each upstream holds every request until
  // all have arrived; through Bun's fetch, with its cap, no more than 256 would ever reach it and none would end.
  // Every request, streamed or not, over http and https, goes over the socket client, which has no such cap.
  // Raw sockets on the client side: this test runner's own fetch may be capped at 256 too.
  const cases = [
    ["streams to a plain-http upstream (the socket client)", "held", true],
    ["streams to an https upstream (the socket client over TLS)", "heldtls", true],
    ["requests that are not streamed, to a plain-http upstream", "held", false],
    ["requests that are not streamed, to an https upstream", "heldtls", false],
  ] as const;
  for (const [name, path, stream] of cases) {
    it(`carries ${STREAMS} concurrent ${name}, with no environment variable set`, async () => {
      const fake = path === "held" ? held : heldTls;
      const gate = holdUntil(STREAMS);
      fake.script = gate.script;
      const socks = Array.from({ length: STREAMS }, () => rawPost(r.port, "/v1/chat/completions", { model: `${path}/m`, stream, messages: [{ role: "user", content: "hi" }] }));
      const answered = Promise.all(socks.map(readAll));
      try {
        await waitFor(() => gate.peak() >= STREAMS, `${STREAMS} requests open at the upstream at once`, 60000).catch((e) => {
          throw new Error(`${e.message}; at most ${gate.peak()} were`);
        });
        const answers = await answered;
        assert.equal(gate.done(), STREAMS);
        answers.forEach((a, i) => assert.ok(a.startsWith("HTTP/1.1 200") && a.includes("held") && (!stream || a.includes("[DONE]")), `request ${i}: ${a.slice(0, 200)}`));
      } finally {
        gate.release();
        for (const s of socks) s.destroy();
      }
      assert.ok(!r.output().includes("concurrent upstream requests"), "no startup warning about the cap");
    });
  }

  it("reloads on SIGHUP and stops cleanly on SIGTERM", async () => {
    writeFile(join(dir, "config.yaml"), `server: { host: 127.0.0.1, port: 0 }\nproviders:\n  - { name: backup, type: mock, reply: "reloaded" }\n`);
    r.kill("SIGHUP");
    await waitFor(async () => {
      const c = await client.chat.completions.create({ model: "x", messages: [{ role: "user", content: "hi" }] });
      return c.choices[0].message.content === "reloaded";
    }, "the reloaded config to answer");
    r.kill("SIGTERM");
    assert.equal((await r.exited).code, 0, r.output());
  });
});

describe("the compiled binary, against hostile upstreams", () => {
  // the binary runs on Bun's upstream client: every request over its sockets
  let dir: string, target: FakeServer, mover: FakeServer, a: FakeServer, cut: FakeServer, hostile: http.Server, r: RouterProcess;
  before(async () => {
    ensureBinary();
    dir = tempDir("fr-binary-hostile-");
    target = await startOpenAIFake({ reply: "from the redirect target" });
    mover = await startOpenAIFake();
    mover.fault = { status: 307, headers: { location: `${target.url}/v1/chat/completions` }, rawBody: "moved" };
    a = await startOpenAIFake({ reply: "answer from A" });
    cut = await startOpenAIFake({ reply: "a stream that dies mid-way and is continued by prefill", chunks: 6, prefill: "continue" });
    // the model asked for picks the misbehaviour: an endless 200 body, or a gzip stream nobody asked for
    hostile = http.createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on("data", (c: Buffer) => void parts.push(c));
      req.on("end", async () => {
        const { model } = JSON.parse(Buffer.concat(parts).toString("utf8"));
        if (model === "endless") {
          res.writeHead(200, { "content-type": "application/json" });
          const chunk = Buffer.alloc(65536, 32);
          while (!res.destroyed) if (!res.write(chunk)) await new Promise((d) => setTimeout(d, 1));
          return;
        }
        const event = (delta: object, finish: string | null) =>
          `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 1, model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
        res.writeHead(200, { "content-type": "text/event-stream", "content-encoding": "gzip" });
        res.end(zlib.gzipSync(event({ content: "unzipped" }, null) + event({}, "stop") + "data: [DONE]\n\n"));
      });
    });
    await new Promise<void>((ok) => hostile.listen(0, "127.0.0.1", () => ok()));
    const hostileUrl = `http://127.0.0.1:${(hostile.address() as net.AddressInfo).port}/v1`;
    writeFile(join(dir, "config.yaml"), `server: { host: 127.0.0.1, port: 0, max_upstream_body_bytes: 1048576 }
providers:
  - { name: mover, type: openai_compatible, endpoint: "${mover.url}/v1", api_key: sk-mover-secret, default_model: m }
  - { name: a, type: openai_compatible, endpoint: "${a.url}/v1", default_model: m }
  - { name: hostile, type: openai_compatible, endpoint: "${hostileUrl}", models: [endless, gzip] }
  - { name: cut, type: openai_compatible, endpoint: "${cut.url}/v1", default_model: m, supports_prefill: true }
routing: { fallback_chain: [mover, a], stream_recovery: true }
`);
    r = await startProcess([], { cwd: dir, cmd: [BINARY] });
  });
  after(async () => {
    await r?.stop();
    hostile?.closeAllConnections();
    hostile?.close();
    for (const f of [target, mover, a, cut]) await f?.stop();
    if (dir) rmTemp(dir);
  });

  it("does not follow a redirect, streamed or not: fails over, and the redirect target hears nothing", async () => {
    for (const stream of [false, true]) {
      const res = await fetch(`${r.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "m", stream, messages: [{ role: "user", content: "hi" }] }),
      });
      assert.equal(res.status, 200, `stream ${stream}`);
      assert.equal(res.headers.get("x-router-provider"), "a", `stream ${stream}`);
      const text = stream ? sseText(await res.text()).text : (await res.json()).choices[0].message.content;
      assert.equal(text, "answer from A", `stream ${stream}`);
    }
    assert.equal(target.requests.length, 0, "the redirect target received nothing");
    // the request log line of each request (written as the request ends, so possibly just after its body)
    const reasons = () => r.logs().flatMap((l) => l.attempts ?? []).filter((x: any) => x.provider === "mover").map((x: any) => x.reason);
    await waitFor(() => reasons().length === 2, "both requests' log lines");
    assert.deepEqual(reasons(), [`redirect to ${target.url} not followed`, `redirect to ${target.url} not followed`]);
  });

  it("cuts a non-streamed body at server.max_upstream_body_bytes, and decodes a gzip stream", async () => {
    const big = await fetch(`${r.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "hostile/endless", messages: [{ role: "user", content: "hi" }] }),
    });
    assert.equal(big.status, 502);
    assert.deepEqual((await big.json()).error.attempts, [{ provider: "hostile", status: 502, reason: "upstream body too large" }]);
    const gz = await fetch(`${r.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "hostile/gzip", stream: true, messages: [{ role: "user", content: "hi" }] }),
    });
    assert.equal(gz.status, 200);
    assert.deepEqual(sseText(await gz.text()), { text: "unzipped", done: true });
  });

  it("continues a stream cut mid-answer by prefill (routing.stream_recovery)", async () => {
    cut.fault = { cutAfter: 3, chunkDelayMs: 10, times: 1 };
    const res = await fetch(`${r.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "cut/m", stream: true, messages: [{ role: "user", content: "hi" }] }),
    });
    assert.deepEqual(sseText(await res.text()), { text: "a stream that dies mid-way and is continued by prefill", done: true });
    assert.equal(cut.requests.length, 2);
    assert.equal(cut.requests[1].body.continue_final_message, true);
  });
});

/** One HTTP/1.1 POST on its own connection, left open (destroy the socket to go away). */
/** More than Bun's default cap of 256 concurrent fetch requests, with a wide margin. */
const STREAMS = 1000;

/**
 * A script that holds every request until `n` are open at once, then answers them all: a stream's head at once
 * and its chunk at the end, a plain answer at the end; `peak`: the most open at once, `done`: answers ended.
 */
function holdUntil(n: number): { script: Script; peak(): number; done(): number; release(): void } {
  let open = 0, peak = 0, done = 0;
  let release!: () => void;
  const all = new Promise<void>((r) => (release = r));
  return {
    async script(res, req) {
      open++;
      peak = Math.max(peak, open);
      if (open >= n) release();
      const stream = !!req.body?.stream;
      if (stream) streamHead(res);
      await all;
      if (!stream) res.writeHead(200, { "content-type": "application/json" });
      const body = stream ? openaiChunk("held") + "data: [DONE]\n\n" : JSON.stringify({ id: "x", object: "chat.completion", created: 1, model: "m", choices: [{ index: 0, message: { role: "assistant", content: "held" }, finish_reason: "stop" }] });
      res.end(body, () => void done++);
      open--;
    },
    peak: () => peak,
    done: () => done,
    release,
  };
}

/** Everything a raw socket receives until it closes. */
function readAll(sock: net.Socket): Promise<string> {
  let text = "";
  sock.setEncoding("utf8");
  sock.on("data", (d) => void (text += d));
  return new Promise((resolve) => sock.once("close", () => resolve(text)));
}

function rawPost(port: number, path: string, body: unknown): net.Socket {
  const json = JSON.stringify(body);
  const sock = net.connect(port, "127.0.0.1", () => {
    sock.write(`POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(json)}\r\nconnection: close\r\n\r\n${json}`);
  });
  sock.on("error", () => {});
  return sock;
}

describe("the compiled binary at the client-facing edge (slow clients, Host, JSON items)", () => {
  let dir: string, r: RouterProcess;
  before(async () => {
    ensureBinary();
    dir = tempDir("fr-binary-edge-");
    const bin = join(dir, "failover-router");
    copyFileSync(BINARY, bin);
    chmodSync(bin, 0o755);
    writeFile(join(dir, "config.yaml"), EDGE_CONFIG);
    r = await startProcess([], { cwd: dir, cmd: [bin] });
  });
  after(async () => {
    await r?.stop();
    if (dir) rmTemp(dir);
  });

  edgeChecks(() => r, "bun");
});

// the Redis client (node-redis, loaded on first use) runs inside the binary too
if (redisServerBin()) {
  describe("the compiled binary on the redis state backend", () => {
    it("two binaries on one redis-server: a retry on the other is replayed", async () => {
      ensureBinary();
      const redis = (await startRedis())!;
      const a = await startOpenAIFake({ reply: "shared" });
      const dir = tempDir("fr-binary-redis-");
      const rs: RouterProcess[] = [];
      try {
        writeFile(join(dir, "config.yaml"), `server: { host: 127.0.0.1, port: 0 }
providers: [{ name: a, type: openai_compatible, endpoint: "${a.url}/v1", default_model: m }]
state: { backend: redis, redis: { url: "${redis.url}" } }
`);
        for (let i = 0; i < 2; i++) rs.push(await startProcess([], { cwd: dir, cmd: [BINARY] }));
        for (const r of rs) await waitFor(async () => (await (await fetch(`${r.url}/health`)).json()).state.connected, "connected to Redis", 10_000);
        const post = (r: RouterProcess) => fetch(`${r.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", "idempotency-key": "binary-1" },
          body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }),
        });
        const first = await post(rs[0]);
        const body = await first.text();
        const again = await post(rs[1]);
        assert.equal(again.headers.get("idempotent-replayed"), "true");
        assert.equal(await again.text(), body);
        assert.equal(a.requests.length, 1);
      } finally {
        for (const r of rs) await r.stop();
        await a.stop();
        await redis.stop();
        rmTemp(dir);
      }
    });
  });
}

describe("the compiled binary, against an https upstream with a private CA", () => {
  let ca: TestCa, up: FakeServer, dir: string, r: RouterProcess;
  before(async () => {
    ensureBinary();
    ca = makeTestCa();
    up = await startOpenAIFake({ reply: "answer over TLS", chunks: 3, tls: ca });
    dir = tempDir("fr-binary-tls-");
    writeFile(join(dir, "config.yaml"), `server: { host: 127.0.0.1, port: 0 }
providers:
  - { name: trusted, type: openai_compatible, endpoint: "${up.url}/v1", default_model: m, tls: { ca_file: "${ca.caFile}" } }
  - { name: untrusted, type: openai_compatible, endpoint: "${up.url}/v1", default_model: m }
`);
    r = await startProcess([], { cwd: dir, cmd: [BINARY] });
  });
  after(async () => {
    await r?.stop();
    await up?.stop();
    if (dir) rmTemp(dir);
    if (ca) rmTemp(ca.dir);
  });

  it("trusts the CA of tls.ca_file for its provider, streamed and not; a provider without it fails on the certificate", async () => {
    const client = new OpenAI({ baseURL: `${r.url}/v1`, apiKey: "not-checked", maxRetries: 0 });
    const c = await client.chat.completions.create({ model: "trusted/m", messages: [{ role: "user", content: "hi" }] });
    assert.equal(c.choices[0].message.content, "answer over TLS");
    const stream = await client.chat.completions.create({ model: "trusted/m", messages: [{ role: "user", content: "hi" }], stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    assert.equal(text, "answer over TLS");
    await assert.rejects(client.chat.completions.create({ model: "untrusted/m", messages: [{ role: "user", content: "hi" }] }), (e: any) => {
      assert.equal(e.status, 502);
      assert.match(e.error.attempts[0].reason, /certificate/i);
      return true;
    });
  });
});

describe("scripts/build", () => {
  it("rejects an unknown target with the list of targets", () => {
    const r = spawnSync("bash", [join(ROOT, "scripts/build"), "--target", "plan9-mips"], { cwd: ROOT, encoding: "utf8", timeout: 30000 });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown target "plan9-mips" \(one of: linux-x64 .*linux-arm64.*darwin-arm64/);
  });

  it("--deno builds dist/failover-router-deno, or fails quickly with a clear message when denort cannot be downloaded", () => {
    const out = join(ROOT, "dist", "failover-router-deno");
    const r = spawnSync("bash", [join(ROOT, "scripts/build"), "--deno"], {
      cwd: ROOT,
      encoding: "utf8",
      // within the test runner's 30 s: a download that is merely slow also ends as a clear failure here
      timeout: 28000,
      env: { ...process.env, DENO_COMPILE_TIMEOUT: "25" },
    });
    assert.notEqual(r.signal, "SIGTERM", "the build did not hang");
    if (r.status === 0) {
      const v = spawnSync(out, ["--version"], { encoding: "utf8", timeout: 30000 });
      assert.match(v.stdout, /^failover-router \S+ \(deno \d+\.\d+\.\d+, commit [0-9a-f]{7,}/);
    } else {
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /could not download denort/);
      assert.match(r.stderr, /DENORT_BIN/);
    }
  });
});
