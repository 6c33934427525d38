// The upstream client under the router's adapters, seen through HTTP: bodies cut short, UTF-8 split across
// TCP writes, idle keep-alive connections the upstream closes, and HTTP_PROXY. Under Deno the entrypoint sends
// non-streaming requests to plain-http upstreams through node:http (src/runtime/deno-upstream.ts) and the
// in-process router of these tests does the same; under Bun everything goes through fetch. Both must behave
// the same here.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { join } from "node:path";
import { startOpenAIFake } from "./fakes/openai.ts";
import { postJson, startRouter } from "./helpers/router.ts";
import { rmTemp, startProcess, tempDir, writeFile } from "./helpers/process.ts";

const chat = () => ({ model: "m", messages: [{ role: "user", content: "hi" }] });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const completion = (content: string, model = "m") =>
  JSON.stringify({
    id: "chatcmpl-x",
    object: "chat.completion",
    created: 1,
    model,
    choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
    usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
  });

/** A plain node:http server on 127.0.0.1 that counts the TCP connections it accepted. */
async function server(handler: http.RequestListener): Promise<{ url: string; server: http.Server; connections: () => number; stop(): Promise<void> }> {
  const s = http.createServer(handler);
  const sockets = new Set<Socket>();
  let connections = 0;
  s.on("connection", (c) => {
    connections++;
    sockets.add(c);
    c.on("close", () => sockets.delete(c));
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`,
    server: s,
    connections: () => connections,
    async stop() {
      for (const c of sockets) c.destroy();
      await new Promise<void>((r) => s.close(() => r()));
    },
  };
}

describe("upstream client: non-streaming answers", () => {
  it("a body cut short by the upstream is a failed attempt: the next provider answers", async () => {
    const cut = await server((_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": "400" });
      res.write(completion("never whole").slice(0, 60));
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const b = await startOpenAIFake({ reply: "B here" });
    const r = await startRouter(`
providers:
  - { name: cut, type: openai_compatible, endpoint: "${cut.url}/v1", default_model: m }
  - { name: b, type: openai_compatible, endpoint: "${b.url}/v1", default_model: m }
`);
    try {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat());
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-router-provider"), "b");
      assert.equal(res.headers.get("x-router-attempts"), "2");
      assert.equal((await res.json()).choices[0].message.content, "B here");
      assert.equal(r.state.breakers.get("cut")?.snapshot().consecutive_failures, 1);
    } finally {
      await r.stop();
      await b.stop();
      await cut.stop();
    }
  });

  it("a body written in pieces that split multi-byte characters arrives intact", async () => {
    const content = "Grüße ✓ 😀 ".repeat(50);
    const bytes = new TextEncoder().encode(completion(content));
    const up = await server(async (_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": String(bytes.length) });
      // cut inside the first multi-byte character and then at arbitrary points: every write is its own TCP segment
      const cuts = [bytes.indexOf(0xc3) + 1, 301, 517, bytes.length];
      let at = 0;
      for (const c of cuts) {
        res.write(bytes.subarray(at, c));
        at = c;
        await sleep(15);
      }
      res.end();
    });
    const r = await startRouter(`
providers:
  - { name: a, type: openai_compatible, endpoint: "${up.url}/v1", default_model: m }
`);
    try {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat());
      assert.equal(res.status, 200);
      assert.equal((await res.json()).choices[0].message.content, content);
    } finally {
      await r.stop();
      await up.stop();
    }
  });

  it("a kept-alive connection the upstream has closed while idle is not reused: every request answers first time", async () => {
    const up = await server((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(completion("ok"));
        // the upstream closes the connection once it has been idle for 60 ms (a keep-alive timeout)
        res.on("finish", () => setTimeout(() => req.socket.end(), 60));
      });
    });
    const r = await startRouter(`
providers:
  - { name: a, type: openai_compatible, endpoint: "${up.url}/v1", default_model: m }
`);
    try {
      for (let i = 0; i < 4; i++) {
        const res = await postJson(`${r.url}/v1/chat/completions`, chat());
        assert.equal(res.status, 200, `request ${i}`);
        assert.equal(res.headers.get("x-router-attempts"), "1", `request ${i} needed no second attempt`);
        await res.arrayBuffer();
        await sleep(200);
      }
      assert.ok(up.connections() >= 2, `the upstream closed idle connections (${up.connections()} accepted)`);
    } finally {
      await r.stop();
      await up.stop();
    }
  });
});

describe("upstream client: HTTP_PROXY", () => {
  let dir: string;
  before(() => {
    dir = tempDir();
  });
  after(() => rmTemp(dir));

  it("sends upstream requests through the proxy named by HTTP_PROXY", async () => {
    const seen: string[] = [];
    // a forward proxy that answers itself: it only has to see the absolute-form request line
    const proxy = await server((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(completion("via the proxy"));
      });
    });
    const path = join(dir, "proxy.yaml");
    writeFile(path, `server: { host: 127.0.0.1, port: 0 }
providers:
  - { name: far, type: openai_compatible, endpoint: "http://upstream.invalid/v1", default_model: m }
`);
    const r = await startProcess(["--config", path], { cwd: dir, env: { HTTP_PROXY: proxy.url, NO_PROXY: "" } });
    try {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat());
      assert.equal(res.status, 200, r.output());
      assert.equal((await res.json()).choices[0].message.content, "via the proxy");
      assert.deepEqual(seen, ["POST http://upstream.invalid/v1/chat/completions"]);
    } finally {
      await r.stop();
      await proxy.stop();
    }
  });
});
