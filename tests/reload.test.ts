// Hot reload of a running router process (SIGHUP, POST /admin/reload, server.watch_config): a valid file
// swaps in between requests, an invalid one keeps the old config and shows on /health, and requests in
// flight finish on the config they started with. The router runs as a process from source, under the
// runtime running the tests (so the Deno entrypoint is covered by `deno test`).
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startOpenAIFake } from "./fakes/openai.ts";
import type { FakeServer } from "./fakes/common.ts";
import { postJson } from "./helpers/router.ts";
import { parseConfig } from "../src/config/load.ts";
import { ConfigHolder } from "../src/reload.ts";
import { buildRouter } from "../src/server.ts";
import { runMain } from "./helpers/platform.ts";
import { rawConnection, readUntil, rmTemp, sseText, startProcess, tempDir, waitFor, writeFile, type RouterProcess } from "./helpers/process.ts";

const chat = (extra: Record<string, unknown> = {}) => ({ model: "m", messages: [{ role: "user", content: "hi" }], ...extra });

function configYaml(a: FakeServer, b: FakeServer, chain: string, extra = "", server = "{ host: 127.0.0.1, port: 0 }"): string {
  return `server: ${server}
${extra}
providers:
  - { name: a, type: openai_compatible, endpoint: "${a.url}/v1", default_model: a-model }
  - { name: b, type: openai_compatible, endpoint: "${b.url}/v1", default_model: b-model }
routing: { fallback_chain: ${chain} }
`;
}

async function answeredBy(url: string): Promise<string | null> {
  const res = await postJson(`${url}/v1/chat/completions`, chat());
  await res.arrayBuffer();
  return res.headers.get("x-router-provider");
}

async function health(url: string): Promise<any> {
  const res = await fetch(`${url}/health`);
  assert.equal(res.status, 200);
  return res.json();
}

describe("hot reload", () => {
  let a: FakeServer, b: FakeServer, dir: string, path: string, r: RouterProcess;
  before(async () => {
    a = await startOpenAIFake({ reply: "answer from A, in several pieces", chunks: 6 });
    b = await startOpenAIFake({ reply: "answer from B" });
    dir = tempDir();
    path = join(dir, "config.yaml");
  });
  after(async () => {
    await a.stop();
    await b.stop();
    rmTemp(dir);
  });
  beforeEach(async () => {
    a.reset();
    b.reset();
    writeFile(path, configYaml(a, b, "[a, b]"));
    r = await startProcess(["--config", path], { cwd: dir });
  });
  afterEach(async () => {
    await r.stop();
  });

  it("POST /admin/reload swaps in the new chain order and /health shows when it was loaded", async () => {
    assert.equal(await answeredBy(r.url), "a");
    const h0 = await health(r.url);
    assert.equal(h0.config.last_reload_error, null);
    assert.ok(!Number.isNaN(Date.parse(h0.config.loaded_at)));

    writeFile(path, configYaml(a, b, "[b, a]"));
    const res = await fetch(`${r.url}/admin/reload`, { method: "POST" });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.status, "reloaded");
    assert.deepEqual(body.chain, ["b", "a"]);
    assert.equal(await answeredBy(r.url), "b");
    const h1 = await health(r.url);
    assert.equal(h1.config.loaded_at, body.loaded_at);
    assert.ok(Date.parse(h1.config.loaded_at) >= Date.parse(h0.config.loaded_at));
    assert.equal(h1.config.last_reload_error, null);
  });

  it("SIGHUP reloads the file", async () => {
    const before = (await health(r.url)).config.loaded_at;
    writeFile(path, configYaml(a, b, "[b]"));
    r.kill("SIGHUP");
    await waitFor(async () => (await health(r.url)).config.loaded_at !== before, "the SIGHUP reload");
    assert.equal(await answeredBy(r.url), "b");
    assert.ok(r.logs().some((l) => l.msg === "config reloaded" && l.trigger === "SIGHUP"), r.output());
    assert.equal(r.done, false, "still running");
  });

  it("logging.format takes effect at once; a warning names only the settings that need a restart", async () => {
    writeFile(path, configYaml(a, b, "[a, b]", "logging: { format: pretty }", "{ host: 127.0.0.1, port: 0, replica_id: renamed }"));
    const res = await fetch(`${r.url}/admin/reload`, { method: "POST" });
    assert.equal(res.status, 200);
    assert.equal(await answeredBy(r.url), "a");
    await waitFor(() => /INFO\s+request /.test(r.output()), "a pretty request line");
    const out = r.output();
    assert.match(out, /WARN\s+some changed settings take effect only after a restart settings=\["server\.replica_id"\]/);
    assert.doesNotMatch(out, /logging\.format/);
  });

  it("an invalid file keeps the old config, answers 400 with every problem and shows the error on /health", async () => {
    const loadedAt = (await health(r.url)).config.loaded_at;
    writeFile(path, configYaml(a, b, "[b, ghost]", "bogus_block: 1"));
    const res = await fetch(`${r.url}/admin/reload`, { method: "POST" });
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.equal(body.error.type, "invalid_request_error");
    assert.equal(body.error.code, "invalid_config");
    assert.deepEqual(body.error.problems, ["bogus_block: unknown key", 'routing.fallback_chain[1]: unknown provider "ghost"']);
    assert.match(body.error.message, /2 problems.*bogus_block: unknown key; routing\.fallback_chain\[1\]: unknown provider "ghost"/);

    const h = await health(r.url);
    assert.equal(h.status, "ok");
    assert.equal(h.config.loaded_at, loadedAt, "the old config is still in force");
    assert.match(h.config.last_reload_error, /bogus_block: unknown key/);
    assert.equal(await answeredBy(r.url), "a", "still serving the old chain");

    // the same through SIGHUP, with one problem left
    writeFile(path, configYaml(a, b, "[b, ghost]"));
    r.kill("SIGHUP");
    await waitFor(async () => !/bogus_block/.test((await health(r.url)).config.last_reload_error ?? "bogus_block"), "the failed SIGHUP reload on /health");
    assert.equal((await health(r.url)).config.last_reload_error, 'routing.fallback_chain[1]: unknown provider "ghost"');
    assert.equal(await answeredBy(r.url), "a");
    assert.ok(r.logs().some((l) => l.level === "error" && l.msg.startsWith("config reload failed") && l.trigger === "SIGHUP"), r.output());

    // fixing the file clears the error
    writeFile(path, configYaml(a, b, "[b, a]"));
    const ok = await fetch(`${r.url}/admin/reload`, { method: "POST" });
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
    const h2 = await health(r.url);
    assert.equal(h2.config.last_reload_error, null);
    assert.notEqual(h2.config.loaded_at, loadedAt);
    assert.equal(await answeredBy(r.url), "b");
  });

  it("a missing file is a reload error too, and the router keeps serving", async () => {
    rmTemp(path);
    const res = await fetch(`${r.url}/admin/reload`, { method: "POST" });
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.match(body.error.problems[0], /config file not found/);
    assert.equal(await answeredBy(r.url), "a");
  });

  it("requests in flight during a reload finish on the config they started with", async () => {
    a.fault = { chunkDelayMs: 300 }; // ~2 s for the whole stream
    // a stream from A, committed (first content chunk received) before the reload
    const streamRes = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(streamRes.headers.get("x-router-provider"), "a");
    const partial = await readUntil(streamRes, (t) => sseText(t.slice(0, t.lastIndexOf("\n\n") + 2)).text.length > 0);
    // a non-streaming request to A that is still waiting for its answer during the reload
    const slowA = await startOpenAIFake({ reply: "slow answer from A" });
    try {
      slowA.fault = { delayMs: 1500 };
      writeFile(path, configYaml(slowA, b, "[a, b]"));
      let res = await fetch(`${r.url}/admin/reload`, { method: "POST" });
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      let answered = false;
      const pending = postJson(`${r.url}/v1/chat/completions`, chat()).finally(() => (answered = true));
      await waitFor(() => slowA.requests.length === 1, "the slow request to reach provider a");

      // the new config drops provider a altogether; a is still answering both requests above
      writeFile(path, `server: { host: 127.0.0.1, port: 0 }\nproviders:\n  - { name: b, type: openai_compatible, endpoint: "${b.url}/v1", default_model: b-model }\n`);
      res = await fetch(`${r.url}/admin/reload`, { method: "POST" });
      assert.equal(res.status, 200);
      assert.deepEqual((await res.json()).chain, ["b"]);
      assert.equal(await answeredBy(r.url), "b", "new requests use the new config");
      assert.equal(answered, false, "the slow request was still in flight during the reload");

      const slow = await pending;
      assert.equal(slow.status, 200);
      assert.equal(slow.headers.get("x-router-provider"), "a");
      assert.equal((await slow.json()).choices[0].message.content, "slow answer from A");
    } finally {
      await slowA.stop();
    }
    const full = sseText(await partial.rest());
    assert.equal(full.text, "answer from A, in several pieces");
    assert.equal(full.done, true);
  });
});

describe("one config per request", () => {
  it("a reload that lands while a request's body arrives changes none of its settings: routed and stored under the config it started with", async () => {
    const a = await startOpenAIFake({ reply: "answer from A" });
    const b = await startOpenAIFake({ reply: "answer from B" });
    const files: Record<string, string> = { "config.yaml": configYaml(a, b, "[a, b]", "idempotency: { enabled: false }") };
    const r = await runMain({ args: ["--config", "config.yaml"], files, env: {} });
    const conn = await rawConnection(Number(new URL(r.url).port));
    try {
      const body = JSON.stringify(chat());
      conn.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n` +
        `Idempotency-Key: k1\r\nConnection: close\r\n\r\n${body.slice(0, 10)}`);
      await new Promise((res) => setTimeout(res, 300)); // the router has the head and waits for the rest of the body
      // the new config turns idempotency on and puts b first
      files["config.yaml"] = configYaml(a, b, "[b, a]", "idempotency: { enabled: true }");
      const reload = await fetch(`${r.url}/admin/reload`, { method: "POST" });
      assert.equal(reload.status, 200);
      await reload.arrayBuffer();
      conn.write(body.slice(10));
      await waitFor(() => conn.received().includes("\r\n\r\n"), "the first answer");
      const head = conn.received();
      assert.match(head, /^HTTP\/1\.1 200/);
      assert.match(head, /x-router-provider: a\r\n/i, "routed under the config it started with");

      // under the new config the same key and body are a new request: the first one was not stored, since
      // idempotency was off in its config
      const res = await postJson(`${r.url}/v1/chat/completions`, chat(), { "idempotency-key": "k1" });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("idempotent-replayed"), null, "not a replay of the request served under the old config");
      assert.equal(res.headers.get("x-router-provider"), "b");
      assert.equal((await res.json()).choices[0].message.content, "answer from B");
    } finally {
      conn.destroy();
      await r.stop();
      await a.stop();
      await b.stop();
    }
  });
});

describe("server.watch_config", () => {
  let a: FakeServer, b: FakeServer, dir: string;
  before(async () => {
    a = await startOpenAIFake({ reply: "A" });
    b = await startOpenAIFake({ reply: "B" });
    dir = tempDir();
  });
  after(async () => {
    await a.stop();
    await b.stop();
    rmTemp(dir);
  });

  it("reloads when the file changes, and reports an invalid change on /health", async () => {
    const path = join(dir, "config.yaml");
    const watched = "{ host: 127.0.0.1, port: 0, watch_config: true }";
    writeFile(path, configYaml(a, b, "[a, b]", "", watched));
    const r = await startProcess(["--config", path], { cwd: dir });
    try {
      assert.equal(await answeredBy(r.url), "a");
      writeFile(path, configYaml(a, b, "[b, a]", "", watched));
      await waitFor(async () => (await answeredBy(r.url)) === "b", "the watcher to pick up the new chain");
      assert.ok(r.logs().some((l) => l.msg === "config reloaded" && l.trigger === "watch"), r.output());

      writeFile(path, configYaml(a, b, "[b, a]", "extra_key: true", watched));
      await waitFor(async () => (await health(r.url)).config.last_reload_error?.includes("extra_key: unknown key"), "the invalid change on /health");
      assert.equal(await answeredBy(r.url), "b", "the last valid config still serves");
    } finally {
      await r.stop();
    }
  });
});

describe("ConfigHolder (in-process)", () => {
  const yaml = (chain: string) => `providers: [{ name: a, type: mock }, { name: b, type: mock }]\nrouting: { fallback_chain: ${chain} }\n`;

  it("builds a Router per loaded config, tells listeners after a swap, and serialises reloads", async () => {
    let file = yaml("[a, b]");
    const built: string[][] = [];
    let loads = 0;
    const holder = new ConfigHolder({
      path: "config.yaml",
      config: parseConfig(file),
      load: async () => {
        const n = ++loads;
        await new Promise((r) => setTimeout(r, n === 1 ? 50 : 0)); // the first load is the slowest
        return parseConfig(file);
      },
      build: (cfg) => {
        built.push(cfg.routing.fallback_chain);
        return buildRouter(cfg);
      },
    });
    const seen: string[] = [];
    holder.onReload((cfg, old) => seen.push(`${old.routing.fallback_chain.join(",")} -> ${cfg.routing.fallback_chain.join(",")}`));
    const first = holder.router;

    file = yaml("[b, a]");
    const [r1, r2] = await Promise.all([holder.reload("admin"), holder.reload("SIGHUP")]);
    assert.ok(r1.ok && r2.ok);
    assert.deepEqual(built, [["a", "b"], ["b", "a"], ["b", "a"]]);
    assert.deepEqual(seen, ["a,b -> b,a", "b,a -> b,a"]);
    assert.notEqual(holder.router, first);
    assert.deepEqual(first.config.routing.fallback_chain, ["a", "b"], "a Router held by a request never changes");

    file = yaml("[a, zzz]");
    const bad = await holder.reload("admin");
    assert.equal(bad.ok, false);
    assert.equal(built.length, 3, "nothing built for an invalid file");
    assert.equal(seen.length, 2, "no listener call for a failed reload");
    assert.deepEqual(holder.config.routing.fallback_chain, ["b", "a"]);
    assert.match(holder.health().last_reload_error ?? "", /routing\.fallback_chain\[1\]: unknown provider "zzz"/);
  });

  it("a build that throws is a 500 reload failure and keeps the Router in force", async () => {
    let fail = false;
    const holder = new ConfigHolder({
      path: "config.yaml",
      config: parseConfig(yaml("[a, b]")),
      load: async () => parseConfig(yaml("[b]")),
      build: (cfg) => {
        if (fail) throw new Error("adapter exploded");
        return buildRouter(cfg);
      },
    });
    const before = holder.router;
    fail = true;
    const r = await holder.reload("admin");
    assert.ok(!r.ok);
    assert.equal(r.status, 500);
    assert.deepEqual(r.problems, ["adapter exploded"]);
    assert.equal(holder.router, before);
    assert.equal(holder.health().last_reload_error, "adapter exploded");
  });
});
