// Hostile answers from an upstream, seen through HTTP, under both clients the router sends upstream requests
// with: the runtime entrypoint's own (sockets for every plain-http request: src/runtime/http1.ts) and the global
// fetch (Deno's https upstreams, HTTP_PROXY).
// A redirect is never followed, an answer's body is bounded, a compressed answer is decoded, and a body that
// trickles past timeout_seconds is a timeout. The memory check runs the router as a process of its own.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { join } from "node:path";
import zlib from "node:zlib";
import { startAnthropicFake } from "./fakes/anthropic.ts";
import type { FakeServer } from "./fakes/common.ts";
import { startOllamaFake } from "./fakes/ollama.ts";
import { startOpenAIFake } from "./fakes/openai.ts";
import { rmTemp, startProcess, tempDir, waitFor, writeFile } from "./helpers/process.ts";
import { postJson, readSse, startRouter, upstreamFetch } from "./helpers/router.ts";
import { globalFetch } from "../src/providers/upstream.ts";
import type { UpstreamFetch } from "../src/providers/types.ts";
import type { AttemptRecord } from "../src/routing/records.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const chat = (model = "m") => ({ model, messages: [{ role: "user", content: "the prompt" }] });

/** The two upstream clients: every case must hold under both. */
const CLIENTS: { name: string; client: UpstreamFetch }[] = [
  { name: "the entrypoint's client", client: upstreamFetch },
  { name: "fetch", client: globalFetch },
];

const completion = (content: string) =>
  JSON.stringify({
    id: "chatcmpl-x", object: "chat.completion", created: 1, model: "m",
    choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
    usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
  });
const sseChunk = (content: string) =>
  `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
const SSE_END = `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })}\n\ndata: [DONE]\n\n`;
const contentOf = (events: any[]) => events.filter((e) => e !== "[DONE]").map((e) => e.choices?.[0]?.delta?.content ?? "").join("");

interface Upstream {
  url: string;
  /** TCP connections accepted */
  connections(): number;
  /** responses whose connection closed before they ended (the router dropped them) */
  dropped(): number;
  stop(): Promise<void>;
}

/** A node:http server on 127.0.0.1; `handler` gets the request's parsed JSON body. */
async function upstream(handler: (body: any, res: http.ServerResponse) => void | Promise<void>): Promise<Upstream> {
  const sockets = new Set<Socket>();
  let connections = 0, dropped = 0;
  const s = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => void parts.push(c));
    req.on("end", () => {
      let body: any;
      try {
        body = JSON.parse(Buffer.concat(parts).toString("utf8"));
      } catch { /* not JSON */ }
      res.on("close", () => {
        if (!res.writableFinished) dropped++;
      });
      void handler(body, res);
    });
  });
  s.on("connection", (c) => {
    connections++;
    sockets.add(c);
    c.on("close", () => sockets.delete(c));
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`,
    connections: () => connections,
    dropped: () => dropped,
    async stop() {
      for (const c of sockets) c.destroy();
      await new Promise<void>((r) => s.close(() => r()));
    },
  };
}

/** Writes `piece` for ever, as fast as the connection takes it, until the connection closes. */
async function endless(res: http.ServerResponse, piece: string): Promise<void> {
  const chunk = Buffer.from(piece.repeat(Math.ceil(65536 / piece.length)));
  while (!res.destroyed) {
    if (res.write(chunk)) continue;
    await new Promise<void>((resolve) => {
      const go = () => {
        res.off("drain", go).off("close", go);
        resolve();
      };
      res.on("drain", go).on("close", go);
    });
  }
}

/** Collects the router's attempts (hooks.onAttempt). */
function attemptLog(): { attempts: AttemptRecord[]; hooks: { onAttempt: (a: AttemptRecord) => void } } {
  const attempts: AttemptRecord[] = [];
  return { attempts, hooks: { onAttempt: (a) => void attempts.push(a) } };
}

async function answerText(res: Response, stream: boolean): Promise<string> {
  return stream ? contentOf(await readSse(res)) : (await res.json()).choices[0].message.content;
}

describe("upstream answers: redirects are never followed", () => {
  let target: Upstream, b: FakeServer;
  let evil: Record<"openai_compatible" | "anthropic" | "ollama", { fake: FakeServer; endpoint: string }>;
  before(async () => {
    // where the redirects point: it must never see a connection (credentials, custom headers, the prompt)
    target = await upstream((_body, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(completion("from the redirect target"));
    });
    b = await startOpenAIFake({ reply: "B here" });
    const openai = await startOpenAIFake(), anthropic = await startAnthropicFake(), ollama = await startOllamaFake();
    evil = {
      openai_compatible: { fake: openai, endpoint: `${openai.url}/v1` },
      anthropic: { fake: anthropic, endpoint: anthropic.url },
      ollama: { fake: ollama, endpoint: ollama.url },
    };
  });
  after(async () => {
    await target.stop();
    await b.stop();
    for (const e of Object.values(evil)) await e.fake.stop();
  });

  for (const { name, client } of CLIENTS) {
    it(`${name}: 302, 307 and 308 from every provider type, streamed and not, fail over and reach nothing at the other host`, async () => {
      for (const [type, { fake, endpoint }] of Object.entries(evil)) {
        const log = attemptLog();
        const r = await startRouter(`
providers:
  - { name: evil, type: ${type}, endpoint: "${endpoint}", api_key: sk-evil-secret, headers: { x-custom: secret-header }, default_model: m, circuit_breaker: { failure_threshold: 100 } }
  - { name: b, type: openai_compatible, endpoint: "${b.url}/v1", default_model: m }
`, {}, { upstreamFetch: client, hooks: log.hooks });
        try {
          for (const status of [302, 307, 308]) {
            for (const stream of [false, true]) {
              const what = `${type} ${status} stream ${stream}`;
              fake.fault = { status, headers: { location: `${target.url}/steal?key=sk-evil-secret` }, rawBody: "moved" };
              log.attempts.length = 0;
              const res = await postJson(`${r.url}/v1/chat/completions`, { ...chat(), stream });
              assert.equal(res.status, 200, what);
              assert.equal(res.headers.get("x-router-provider"), "b", what);
              assert.equal(await answerText(res, stream), "B here", what);
              const first = log.attempts[0];
              assert.equal(first.provider, "evil", what);
              assert.equal(first.outcome, "error", what);
              assert.equal(first.status, status, what);
              assert.equal(first.reason, `redirect to ${target.url} not followed`, what);
            }
          }
          const breaker = r.state.breakers.get("evil")!.snapshot();
          assert.equal(breaker.consecutive_failures, 6, `${type}: every redirect counts against the breaker`);
          assert.match(breaker.last_error ?? "", /^HTTP 308: redirect to http:\/\/127\.0\.0\.1:\d+ not followed$/);
        } finally {
          fake.reset();
          await r.stop();
        }
      }
      assert.equal(target.connections(), 0, "the redirect target saw no connection");
    });

    it(`${name}: without a fallback the 502 names the redirect's origin only (never its path or query)`, async () => {
      const { fake, endpoint } = evil.openai_compatible;
      const r = await startRouter(`
providers:
  - { name: evil, type: openai_compatible, endpoint: "${endpoint}", api_key: sk-evil-secret, default_model: m }
`, {}, { upstreamFetch: client });
      try {
        for (const stream of [false, true]) {
          fake.fault = { status: 307, headers: { location: `${target.url}/steal?key=sk-evil-secret` }, rawBody: "moved" };
          const res = await postJson(`${r.url}/v1/chat/completions`, { ...chat(), stream });
          assert.equal(res.status, 502);
          const text = await res.text();
          const body = JSON.parse(text);
          assert.equal(body.error.code, "all_providers_failed");
          assert.deepEqual(body.error.attempts, [{ provider: "evil", status: 307, reason: `redirect to ${target.url} not followed` }]);
          assert.ok(!text.includes("/steal") && !text.includes("sk-evil"), text);
        }
      } finally {
        fake.reset();
        await r.stop();
      }
      assert.equal(target.connections(), 0, "the redirect target saw no connection");
    });
  }
});

describe("upstream answers: bounded bodies", () => {
  let b: FakeServer;
  let bomb: Buffer | undefined;
  before(async () => {
    b = await startOpenAIFake({ reply: "B here" });
  });
  after(() => b.stop());

  /** A router in front of `url` (provider "big") with provider b behind it. */
  const routerFor = (url: string, client: UpstreamFetch, hooks: { onAttempt: (a: AttemptRecord) => void }) =>
    startRouter(`
server: { max_upstream_body_bytes: 1048576 }
providers:
  - { name: big, type: openai_compatible, endpoint: "${url}/v1", default_model: m, timeout_seconds: 20 }
  - { name: b, type: openai_compatible, endpoint: "${b.url}/v1", default_model: m }
`, {}, { upstreamFetch: client, hooks });

  for (const { name, client } of CLIENTS) {
    it(`${name}: a 200 body that never ends is cut at server.max_upstream_body_bytes and fails over`, async () => {
      const up = await upstream((_body, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        void endless(res, `{"choices":[{"message":{"content":"`);
      });
      const log = attemptLog();
      const r = await routerFor(up.url, client, log.hooks);
      try {
        const t0 = performance.now();
        const res = await postJson(`${r.url}/v1/chat/completions`, chat());
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("x-router-provider"), "b");
        assert.equal(await answerText(res, false), "B here");
        assert.ok(performance.now() - t0 < 10000, "failed over at the size limit, long before timeout_seconds");
        assert.equal(log.attempts[0].reason, "upstream body too large");
        assert.equal(log.attempts[0].status, 502);
        await waitFor(() => up.dropped() === 1, "the router to drop the upstream connection", 5000);
      } finally {
        await r.stop();
        await up.stop();
      }
    });

    it(`${name}: an error body that never ends is read only up to a small cap, streamed and not`, async () => {
      const up = await upstream((_body, res) => {
        res.writeHead(500, { "content-type": "application/json" });
        void endless(res, "overloaded ");
      });
      const log = attemptLog();
      const r = await routerFor(up.url, client, log.hooks);
      try {
        for (const stream of [false, true]) {
          log.attempts.length = 0;
          const t0 = performance.now();
          const res = await postJson(`${r.url}/v1/chat/completions`, { ...chat(), stream });
          assert.equal(res.status, 200, `stream ${stream}`);
          assert.equal(await answerText(res, stream), "B here");
          assert.ok(performance.now() - t0 < 10000, `stream ${stream}: failed over long before timeout_seconds`);
          assert.equal(log.attempts[0].status, 500);
          assert.match(log.attempts[0].reason ?? "", /^upstream returned HTTP 500: overloaded overloaded/);
        }
        await waitFor(() => up.dropped() === 2, "the router to drop both upstream connections", 5000);
      } finally {
        await r.stop();
        await up.stop();
      }
    });

    it(`${name}: a compressed body is bounded by its decoded size`, async () => {
      // 64 MiB of spaces inside a JSON string: about 64 KiB of gzip
      bomb ??= zlib.gzipSync(Buffer.concat([Buffer.from(`{"choices":[{"message":{"content":"`), Buffer.alloc(64 << 20, 32), Buffer.from(`"}}]}`)]));
      const gz = bomb;
      const up = await upstream((_body, res) => {
        res.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip", "content-length": String(gz.length) });
        res.end(gz);
      });
      const log = attemptLog();
      const r = await routerFor(up.url, client, log.hooks);
      try {
        const res = await postJson(`${r.url}/v1/chat/completions`, chat());
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("x-router-provider"), "b");
        assert.equal(await answerText(res, false), "B here");
        assert.equal(log.attempts[0].reason, "upstream body too large");
      } finally {
        await r.stop();
        await up.stop();
      }
    });
  }
});

describe("upstream answers: compressed bodies", () => {
  const compress: Record<string, () => zlib.Gzip | zlib.Deflate | zlib.BrotliCompress> = {
    gzip: () => zlib.createGzip(),
    deflate: () => zlib.createDeflate(),
    br: () => zlib.createBrotliCompress(),
  };
  let up: Upstream;
  before(async () => {
    // the model names the encoding; the answer is sent in pieces, each flushed through the compressor
    up = await upstream(async (body, res) => {
      const enc: string = body.model;
      const z = compress[enc]();
      res.writeHead(200, { "content-type": body.stream ? "text/event-stream" : "application/json", "content-encoding": enc });
      z.pipe(res);
      const pieces = body.stream ? ["Grüße", " in ", enc].map(sseChunk).concat(SSE_END) : [completion(`Grüße in ${enc}`)];
      for (const p of pieces) {
        z.write(p);
        await new Promise<void>((d) => z.flush(() => d()));
        await sleep(5);
      }
      z.end();
    });
  });
  after(() => up.stop());

  // fetch asks for what it decodes itself (Deno's: gzip and br); the entrypoint's client asks for nothing
  const cases = [{ ...CLIENTS[0], codings: ["gzip", "deflate", "br"] }, { ...CLIENTS[1], codings: ["gzip", "br"] }];
  for (const { name, client, codings } of cases) {
    it(`${name}: ${codings.join(", ")} answers are decoded, streamed and not`, async () => {
      const r = await startRouter(`
providers:
  - { name: a, type: openai_compatible, endpoint: "${up.url}/v1", models: [gzip, deflate, br] }
`, {}, { upstreamFetch: client });
      try {
        for (const enc of codings) {
          for (const stream of [false, true]) {
            const res = await postJson(`${r.url}/v1/chat/completions`, { ...chat(enc), stream });
            assert.equal(res.status, 200, `${enc} stream ${stream}: ${res.status === 200 ? "" : await res.clone().text()}`);
            assert.equal(await answerText(res, stream), `Grüße in ${enc}`, `${enc} stream ${stream}`);
          }
        }
      } finally {
        await r.stop();
      }
    });
  }

  it("the entrypoint's client: an encoding it cannot decode is a failed attempt that names it", async () => {
    const odd = await upstream((body, res) => {
      res.writeHead(200, { "content-type": body.stream ? "text/event-stream" : "application/json", "content-encoding": "x-odd" });
      res.end("\x1f\x8b garbage");
    });
    const log = attemptLog();
    const r = await startRouter(`
providers:
  - { name: a, type: openai_compatible, endpoint: "${odd.url}/v1", default_model: m }
`, {}, { hooks: log.hooks });
    try {
      const res = await postJson(`${r.url}/v1/chat/completions`, { ...chat(), stream: true });
      assert.equal(res.status, 502);
      assert.match(log.attempts[0].reason ?? "", /content-encoding x-odd/);
    } finally {
      await r.stop();
      await odd.stop();
    }
  });
});

describe("upstream answers: a body that trickles", () => {
  for (const { name, client } of CLIENTS) {
    it(`${name}: a non-streamed body still arriving at timeout_seconds is a timeout`, async () => {
      const up = await upstream(async (_body, res) => {
        res.writeHead(200, { "content-type": "application/json", "content-length": "100000" });
        res.write(`{"choices":[{"message":{"content":"`);
        while (!res.destroyed) {
          res.write("x");
          await sleep(250);
        }
      });
      const log = attemptLog();
      const r = await startRouter(`
providers:
  - { name: slow, type: openai_compatible, endpoint: "${up.url}/v1", default_model: m, timeout_seconds: 1 }
`, {}, { upstreamFetch: client, hooks: log.hooks });
      try {
        const t0 = performance.now();
        const res = await postJson(`${r.url}/v1/chat/completions`, chat());
        const took = performance.now() - t0;
        const body = await res.json();
        assert.deepEqual(body.error.attempts, [{ provider: "slow", status: 504, reason: "upstream timed out" }]);
        assert.equal(log.attempts[0].outcome, "timeout");
        assert.ok(took >= 900 && took < 5000, `answered after ${Math.round(took)} ms (timeout_seconds 1)`);
        assert.match(r.state.breakers.get("slow")!.snapshot().last_error ?? "", /^timeout/);
        await waitFor(() => up.dropped() === 1, "the router to drop the upstream connection", 5000);
      } finally {
        await r.stop();
        await up.stop();
      }
    });
  }
});

describe("upstream answers: the router's memory, as a process of its own", () => {
  let dir: string;
  before(() => {
    dir = tempDir();
  });
  after(() => rmTemp(dir));

  /** kB of a /proc/<pid>/status field */
  const procKb = (pid: number, field: "VmRSS" | "VmHWM") => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]);

  it("endless bodies with the default limits: every request fails over and the peak RSS stays far below the bodies' size", async () => {
    // the model picks the answer: an endless 200 body or an endless 500 error body
    const up = await upstream((body, res) => {
      res.writeHead(body.model === "ok" ? 200 : 500, { "content-type": "application/json" });
      void endless(res, `{"choices":[{"message":{"content":"`);
    });
    const path = join(dir, "endless.yaml");
    writeFile(path, `server: { host: 127.0.0.1, port: 0 }
providers:
  - { name: endless, type: openai_compatible, endpoint: "${up.url}/v1", models: [ok, err], timeout_seconds: 60 }
`);
    const r = await startProcess(["--config", path], { cwd: dir });
    const pid = r.child.pid!;
    const LIMIT_KB = 300 * 1024;
    try {
      const start = procKb(pid, "VmRSS");
      for (const [model, stream, reason] of [["ok", false, /^upstream body too large$/], ["err", false, /^upstream returned HTTP 500/], ["err", true, /^upstream returned HTTP 500/]] as const) {
        const what = `${model} stream ${stream}`;
        const answer = postJson(`${r.url}/v1/chat/completions`, { ...chat(model), stream }).then((res) => res.json());
        // a router that keeps reading grows by hundreds of MB a second: stop it before it takes the machine's memory
        let grew = 0;
        const watch = setInterval(() => {
          grew = Math.max(grew, procKb(pid, "VmRSS") - start);
          if (grew > LIMIT_KB) r.kill("SIGKILL");
        }, 50);
        try {
          const body = await answer;
          assert.equal(body.error?.attempts?.length, 1, `${what}: ${JSON.stringify(body)}`);
          assert.match(body.error.attempts[0].reason, reason, what);
        } catch (e) {
          throw new Error(`${what}: the router grew by ${Math.round(grew / 1024)} MB (${(e as Error).message})`);
        } finally {
          clearInterval(watch);
        }
      }
      const peak = procKb(pid, "VmHWM") - start;
      assert.ok(peak < LIMIT_KB, `peak RSS ${Math.round(peak / 1024)} MB above the start`);
    } finally {
      await r.stop();
      await up.stop();
    }
  });
});
