// The upstream clients under the router's adapters, seen through HTTP: bodies cut short, UTF-8 split across
// TCP writes, chunked framing split anywhere, close-delimited streams, idle keep-alive connections the upstream
// closes, a large prompt, a slow reader, answers that are not HTTP, redirects, a handshake that never completes,
// header values, and HTTP_PROXY. The entrypoints bring their own clients for plain-http upstreams: every
// request, streamed or not, goes over sockets on both runtimes (src/runtime/http1.ts); the in-process router of
// these tests uses the same client as the entrypoint, and every case must behave the same under both runtimes.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import http from "node:http";
import net, { type AddressInfo, type Socket } from "node:net";
import { join } from "node:path";
import { startOpenAIFake } from "./fakes/openai.ts";
import { postJson, readSse, startRouter } from "./helpers/router.ts";
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

/**
 * An upstream that answers the first request on each connection with a short stream, and resets the connection
 * on the second once it has read it (so the upstream saw that request). `seen` is called for every request.
 */
function resettingUpstream(seen: () => void = () => {}) {
  const served = new WeakSet<Socket>();
  return server((req, res) => {
    seen();
    if (served.has(req.socket)) return void req.socket.destroy();
    served.add(req.socket);
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(sseChunk("fresh") + SSE_END);
    });
  });
}


/** The router in front of one openai_compatible provider "a" at `url`. */
const routerFor = (url: string) =>
  startRouter(`
providers:
  - { name: a, type: openai_compatible, endpoint: "${url}/v1", default_model: m }
`);
const rawUrl = (raw: net.Server) => `http://127.0.0.1:${(raw.address() as AddressInfo).port}`;

const sseChunk = (content: string) =>
  `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
const SSE_END = `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })}\n\ndata: [DONE]\n\n`;
const contentOf = (events: any[]) => events.filter((e) => e !== "[DONE]").map((e) => e.choices?.[0]?.delta?.content ?? "").join("");

/**
 * Four requests 200 ms apart to an upstream that closes each connection once it has been idle for 60 ms (a
 * keep-alive timeout): every one must answer at the first attempt, over a new connection.
 */
async function idleClosedConnections(stream: boolean): Promise<void> {
  const up = await server((req, res) => {
    req.resume();
    req.on("end", () => {
      if (stream) {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write(sseChunk("one"));
        setTimeout(() => res.end(sseChunk(" two") + SSE_END), 10);
      } else {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(completion("one two"));
      }
      res.on("finish", () => setTimeout(() => req.socket.end(), 60));
    });
  });
  const r = await routerFor(up.url);
  try {
    for (let i = 0; i < 4; i++) {
      const res = await postJson(`${r.url}/v1/chat/completions`, { ...chat(), stream });
      assert.equal(res.status, 200, `request ${i}`);
      assert.equal(res.headers.get("x-router-attempts"), "1", `request ${i} needed no second attempt`);
      const text = stream ? contentOf(await readSse(res)) : (await res.json()).choices[0].message.content;
      assert.equal(text, "one two", `request ${i}`);
      await sleep(200);
    }
    assert.ok(up.connections() >= 2, `the upstream closed idle connections (${up.connections()} accepted)`);
    assert.equal(r.state.breakers.get("a")?.snapshot().consecutive_failures, 0);
  } finally {
    await r.stop();
    await up.stop();
  }
}

/** A request through a router whose first provider is at `url`: that attempt fails, once, and provider b answers. */
async function failsOverFrom(url: string, stream: boolean): Promise<void> {
  const b = await startOpenAIFake({ reply: "B here" });
  const r = await startRouter(`
providers:
  - { name: first, type: openai_compatible, endpoint: "${url}/v1", default_model: m }
  - { name: b, type: openai_compatible, endpoint: "${b.url}/v1", default_model: m }
`);
  try {
    const res = await postJson(`${r.url}/v1/chat/completions`, { ...chat(), stream });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-router-provider"), "b");
    assert.equal(res.headers.get("x-router-attempts"), "2");
    const text = stream ? contentOf(await readSse(res)) : (await res.json()).choices[0].message.content;
    assert.equal(text, "B here");
    assert.equal(r.state.breakers.get("first")?.snapshot().consecutive_failures, 1);
  } finally {
    await r.stop();
    await b.stop();
  }
}

describe("upstream client: non-streaming answers", () => {
  it("a body cut short by the upstream is a failed attempt: the next provider answers", async () => {
    const cut = await server((_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": "400" });
      res.write(completion("never whole").slice(0, 60));
      setTimeout(() => res.socket?.destroy(), 20);
    });
    try {
      await failsOverFrom(cut.url, false);
    } finally {
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
    const r = await routerFor(up.url);
    try {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat());
      assert.equal(res.status, 200);
      assert.equal((await res.json()).choices[0].message.content, content);
    } finally {
      await r.stop();
      await up.stop();
    }
  });

  it("a kept-alive connection the upstream has closed while idle is not reused: every request answers first time", () => idleClosedConnections(false));

  it("a chunked body split across TCP writes, and a body that ends when the connection closes, arrive whole", async () => {
    const json = new TextEncoder().encode(completion("Grüße ✓ framed"));
    const half = json.indexOf(0xc3) + 1; // the first chunk ends inside a multi-byte character
    const size = (n: number) => new TextEncoder().encode(`${n.toString(16)};ext=1\r\n`);
    const crlf = new TextEncoder().encode("\r\n");
    const parts = [
      new TextEncoder().encode("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"),
      size(half), json.subarray(0, half), crlf, size(json.length - half), json.subarray(half), crlf,
      new TextEncoder().encode("0\r\nx-trailer: t\r\n\r\n"),
    ];
    const chunked = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (chunked.set(p, at), at + p.length), 0);
    let served = 0;
    const raw = net.createServer((c) => {
      c.on("data", async () => {
        // first answer chunked in 7-byte pieces (keep-alive); the next close-delimited, on a connection of its own
        if (served++ % 2 === 0) {
          for (let at = 0; at < chunked.length; at += 7) {
            c.write(chunked.subarray(at, at + 7));
            await sleep(1);
          }
        } else {
          c.write("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n");
          c.write(json.subarray(0, half));
          await sleep(5);
          c.end(json.subarray(half));
        }
      });
    });
    await new Promise<void>((r) => raw.listen(0, "127.0.0.1", () => r()));
    const r = await routerFor(rawUrl(raw));
    try {
      for (let i = 0; i < 4; i++) {
        const res = await postJson(`${r.url}/v1/chat/completions`, chat());
        assert.equal(res.status, 200, `request ${i}`);
        assert.equal((await res.json()).choices[0].message.content, "Grüße ✓ framed", `request ${i}`);
        assert.equal(res.headers.get("x-router-attempts"), "1", `request ${i}`);
      }
    } finally {
      await r.stop();
      raw.close();
    }
  });
});

describe("upstream client: streams", () => {
  it("a chunked stream whose head, chunk sizes, CRLFs and characters are split across TCP writes arrives intact", async () => {
    const words = ["Grüße", " ✓", " 😀", " fin"];
    const chunked = (text: string) => {
      const b = new TextEncoder().encode(text);
      return `${b.length.toString(16)};ext=1\r\n${text}\r\n`;
    };
    const body = words.map((w) => chunked(sseChunk(w))).join("") + chunked(SSE_END) + "0\r\nx-trailer: t\r\n\r\n";
    const response = new TextEncoder().encode("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n" + body);
    const raw = net.createServer((c) => {
      c.on("error", () => {}); // the router may close the connection at [DONE], before the last pieces
      c.once("data", async () => {
        // 7-byte pieces: every boundary (head, size line, CRLF, multi-byte character) is cut somewhere
        for (let at = 0; at < response.length; at += 7) {
          c.write(response.subarray(at, at + 7));
          await sleep(1);
        }
      });
    });
    await new Promise<void>((r) => raw.listen(0, "127.0.0.1", () => r()));
    const r = await routerFor(rawUrl(raw));
    try {
      const s = await postJson(`${r.url}/v1/chat/completions`, { ...chat(), stream: true });
      assert.equal(s.status, 200);
      const events = await readSse(s);
      assert.equal(contentOf(events), words.join(""));
      assert.equal(events.at(-1), "[DONE]");
      assert.equal(events.at(-2).choices[0].finish_reason, "stop");
    } finally {
      await r.stop();
      raw.close();
    }
  });

  it("a stream that ends when the upstream closes the connection (no length, not chunked) arrives whole, every time", async () => {
    let connections = 0;
    const raw = net.createServer((c) => {
      connections++;
      c.once("data", async () => {
        c.write("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n");
        for (const w of ["close", "-delimited"]) {
          c.write(sseChunk(w));
          await sleep(5);
        }
        c.end(SSE_END);
      });
    });
    await new Promise<void>((r) => raw.listen(0, "127.0.0.1", () => r()));
    const r = await routerFor(rawUrl(raw));
    try {
      for (let i = 0; i < 2; i++) {
        const s = await postJson(`${r.url}/v1/chat/completions`, { ...chat(), stream: true });
        const events = await readSse(s);
        assert.equal(contentOf(events), "close-delimited", `stream ${i}`);
        assert.equal(events.at(-1), "[DONE]");
      }
      assert.equal(connections, 2, "a connection the upstream closed is not reused");
    } finally {
      await r.stop();
      raw.close();
    }
  });

  it("a stream over a kept-alive connection the upstream closed while idle answers first time", () => idleClosedConnections(true));

  it("a kept-alive connection reset after the request reached the upstream is one attempt of its own: in the log, the breaker, max_retries", async () => {
    let received = 0;
    const up = await resettingUpstream(() => void received++);
    const r = await startRouter(`
providers:
  - { name: a, type: openai_compatible, endpoint: "${up.url}/v1", default_model: m, max_retries: 1 }
circuit_breaker: { failure_threshold: 100 }
`, {}, { retryBaseMs: 10 });
    try {
      const attempts: string[] = [];
      for (let i = 0; i < 3; i++) {
        const res = await postJson(`${r.url}/v1/chat/completions`, { ...chat(), stream: true });
        assert.equal(res.status, 200, `stream ${i}`);
        attempts.push(res.headers.get("x-router-attempts")!);
        assert.equal(contentOf(await readSse(res)), "fresh", `stream ${i}`);
      }
      // the first stream opens the connection; each later one finds it kept alive, is reset, and is retried by the
      // failover loop (max_retries) on a new connection
      assert.deepEqual(attempts, ["1", "2", "2"]);
      const logged = r.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === "request").flatMap((l) => l.attempts);
      assert.equal(logged.length, received, "every request the upstream saw is an attempt in the log");
      assert.equal(logged.filter((a: any) => a.outcome === "error").length, 2);
      const stats = (await (await fetch(`${r.url}/stats`)).json()).providers.a;
      assert.equal(stats.requests, received);
      assert.equal(stats.failures, 2);
      assert.equal(r.state.breakers.get("a")?.snapshot().consecutive_failures, 0, "each reset was followed by a success");
    } finally {
      await r.stop();
      await up.stop();
    }
  });

  it("a reset connection reaches the breaker: without retries it fails over and counts as a failure", async () => {
    const up = await resettingUpstream();
    const b = await startOpenAIFake({ reply: "B here" });
    const r = await startRouter(`
providers:
  - { name: a, type: openai_compatible, endpoint: "${up.url}/v1", default_model: m }
  - { name: b, type: openai_compatible, endpoint: "${b.url}/v1", default_model: m }
circuit_breaker: { failure_threshold: 100 }
`);
    try {
      const first = await postJson(`${r.url}/v1/chat/completions`, { ...chat(), stream: true });
      assert.equal(first.headers.get("x-router-provider"), "a");
      await readSse(first);
      const second = await postJson(`${r.url}/v1/chat/completions`, { ...chat(), stream: true });
      assert.equal(second.headers.get("x-router-provider"), "b");
      assert.equal(second.headers.get("x-router-attempts"), "2");
      assert.equal(contentOf(await readSse(second)), "B here");
      assert.equal(r.state.breakers.get("a")?.snapshot().consecutive_failures, 1);
    } finally {
      await r.stop();
      await b.stop();
      await up.stop();
    }
  });

  it("a large prompt reaches the upstream whole (a request bigger than one socket write)", async () => {
    const prompt = "päd ".repeat(1_000_000); // 5 MB of UTF-8
    let got = -1;
    const up = await server((req, res) => {
      const parts: Buffer[] = [];
      req.on("data", (c: Buffer) => void parts.push(c));
      req.on("end", () => {
        const body = JSON.parse(Buffer.concat(parts).toString("utf8"));
        got = body.messages[0].content.length;
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(sseChunk(`got ${got}`) + SSE_END);
      });
    });
    const r = await routerFor(up.url);
    try {
      const res = await postJson(`${r.url}/v1/chat/completions`, { model: "m", stream: true, messages: [{ role: "user", content: prompt }] });
      assert.equal(res.status, 200);
      assert.equal(contentOf(await readSse(res)), `got ${prompt.length}`);
      assert.equal(got, prompt.length);
    } finally {
      await r.stop();
      await up.stop();
    }
  });

  it("a stream whose HTTP body ends a little after [DONE] keeps its connection; one whose body never ends is closed", async () => {
    const chunk = (text: string) => `${new TextEncoder().encode(text).length.toString(16)}\r\n${text}\r\n`;
    let connections = 0;
    let served = 0;
    const raw = net.createServer((c) => {
      connections++;
      c.on("error", () => {});
      c.on("data", async () => {
        const n = ++served;
        c.write("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n");
        c.write(chunk(sseChunk(`answer ${n}`)) + chunk(SSE_END));
        // the first answer's body ends 30 ms after [DONE] (a server that closes its generator late); the second's never
        if (n === 1) setTimeout(() => c.write("0\r\n\r\n"), 30);
      });
    });
    await new Promise<void>((r) => raw.listen(0, "127.0.0.1", () => r()));
    const r = await routerFor(rawUrl(raw));
    try {
      for (let i = 1; i <= 3; i++) {
        const res = await postJson(`${r.url}/v1/chat/completions`, { ...chat(), stream: true });
        assert.equal(contentOf(await readSse(res)), `answer ${i}`, `stream ${i}`);
        await sleep(i === 1 ? 100 : 1300);
        if (i === 1) assert.equal(connections, 1, "the body ended after [DONE]: the connection was kept");
      }
      assert.equal(connections, 2, "the second body never ended: its connection was closed, the third stream opened a new one");
      assert.equal(r.state.breakers.get("a")?.snapshot().consecutive_failures, 0);
    } finally {
      await r.stop();
      raw.close();
    }
  });

  it("concurrent streams with chunks of every size, some larger than the read buffer, each arrive intact and in order", async () => {
    // On Deno the socket reads and the SSE chunks the router sends are cut from shared 64 KiB slabs: a region
    // handed out twice, or a chunk bigger than the slab rule allows, would show as corrupted or mixed-up text.
    const piece = (s: number, i: number) => `${s}.${i}:` + "é😀x".repeat(((s * 7 + i * 131) % 40) * (i % 9 === 0 ? 200 : 1)) + "|";
    const up = await server((req, res) => {
      const parts: Buffer[] = [];
      req.on("data", (c: Buffer) => void parts.push(c));
      req.on("end", async () => {
        const s = Number(JSON.parse(Buffer.concat(parts).toString("utf8")).messages[0].content);
        res.writeHead(200, { "content-type": "text/event-stream" });
        for (let i = 0; i < 30; i++) {
          res.write(sseChunk(piece(s, i)));
          if (i % 5 === 0) await sleep(1);
        }
        res.end(SSE_END);
      });
    });
    const r = await routerFor(up.url);
    try {
      const texts = await Promise.all(Array.from({ length: 12 }, async (_, s) => {
        const res = await postJson(`${r.url}/v1/chat/completions`, { model: "m", stream: true, messages: [{ role: "user", content: String(s) }] });
        assert.equal(res.status, 200);
        return contentOf(await readSse(res));
      }));
      texts.forEach((t, s) => assert.equal(t, Array.from({ length: 30 }, (_, i) => piece(s, i)).join(""), `stream ${s}`));
    } finally {
      await r.stop();
      await up.stop();
    }
  });

  it("an upstream that does not answer in HTTP is a failed attempt: the next provider answers, streamed and not", async () => {
    const raw = net.createServer((c) => c.once("data", () => c.end("SSH-2.0-OpenSSH_9.2\r\n\r\n")));
    await new Promise<void>((ok) => raw.listen(0, "127.0.0.1", () => ok()));
    try {
      await failsOverFrom(rawUrl(raw), true);
      await failsOverFrom(rawUrl(raw), false);
    } finally {
      raw.close();
    }
  });

  it("a redirect is a failed attempt, not followed: the next provider answers, streamed and not", async () => {
    const moved = await server((req, res) => {
      req.resume();
      res.writeHead(308, { location: "http://127.0.0.1:1/v1/chat/completions", "content-type": "text/plain" });
      res.end("moved");
    });
    try {
      await failsOverFrom(moved.url, true);
      await failsOverFrom(moved.url, false);
    } finally {
      await moved.stop();
    }
  });

  it("a long fast stream read slowly by the client arrives whole and in order", async () => {
    const N = 3000;
    const pad = "x".repeat(600);
    const up = await server((req, res) => {
      req.resume();
      req.on("end", async () => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        // as fast as the socket takes it: ~2 MB, far more than the router may hold for a slow reader
        for (let i = 0; i < N; i++) {
          if (!res.write(sseChunk(`${i} ${pad}|`))) await new Promise((d) => res.once("drain", d));
        }
        res.end(SSE_END);
      });
    });
    const r = await routerFor(up.url);
    try {
      const res = await postJson(`${r.url}/v1/chat/completions`, { ...chat(), stream: true });
      assert.equal(res.status, 200);
      const reader = res.body!.getReader();
      const dec = new TextDecoder();
      let text = "";
      for (let n = 0; ; n++) {
        const { done, value } = await reader.read();
        if (done) break;
        text += dec.decode(value, { stream: true });
        if (n < 40) await sleep(5); // slow at first, while the upstream keeps writing
      }
      const events = text.split("\n\n").filter((b) => b.startsWith("data: ")).map((b) => b.slice(6)).map((d) => (d === "[DONE]" ? d : JSON.parse(d)));
      const parts = contentOf(events).split("|").filter(Boolean);
      assert.equal(parts.length, N);
      parts.forEach((p, i) => assert.equal(p, `${i} ${pad}`, `chunk ${i}`));
      assert.equal(events.at(-1), "[DONE]");
    } finally {
      await r.stop();
      await up.stop();
    }
  });
});

describe("upstream client: connections that never open", () => {
  it("an upstream whose TCP handshake never completes is given up at timeout_seconds, streamed and not", async () => {
    // a listener with a backlog of 1 whose process never accepts: once its queue holds two connections, the
    // kernel drops further SYNs and a connect waits (minutes) as for a host that has gone dark
    const child = spawn("node", ["-e", `const s = require("net").createServer();
s.listen({ port: 0, host: "127.0.0.1", backlog: 1 }, () => { console.log(s.address().port); for (;;); });`], { stdio: ["ignore", "pipe", "inherit"] });
    const fillers: Socket[] = [];
    const b = await startOpenAIFake({ reply: "B here" });
    let r: Awaited<ReturnType<typeof startRouter>> | undefined;
    try {
      const port = await new Promise<number>((ok, fail) => {
        child.stdout!.once("data", (d) => ok(Number(String(d).trim())));
        child.once("exit", () => fail(new Error("the listener process exited")));
      });
      for (let i = 0; i < 2; i++) {
        const c = net.connect(port, "127.0.0.1");
        fillers.push(c);
        await new Promise((ok) => c.once("connect", ok));
      }
      r = await startRouter(`
providers:
  - { name: dark, type: openai_compatible, endpoint: "http://127.0.0.1:${port}/v1", default_model: m, timeout_seconds: 0.5 }
  - { name: b, type: openai_compatible, endpoint: "${b.url}/v1", default_model: m }
`);
      for (const stream of [true, false]) {
        const t0 = performance.now();
        const res = await postJson(`${r.url}/v1/chat/completions`, { ...chat(), stream });
        assert.equal(res.status, 200, `stream ${stream}`);
        assert.equal(res.headers.get("x-router-provider"), "b");
        const text = stream ? contentOf(await readSse(res)) : (await res.json()).choices[0].message.content;
        assert.equal(text, "B here");
        const took = performance.now() - t0;
        assert.ok(took >= 450 && took < 3000, `stream ${stream}: answered after ${Math.round(took)} ms (the 0.5 s timeout, then b)`);
      }
    } finally {
      await r?.stop();
      for (const c of fillers) c.destroy();
      child.kill("SIGKILL");
      await b.stop();
    }
  });
});

describe("upstream client: request headers", () => {
  it("a key that ends in a newline (read from a file) reaches the upstream trimmed, streamed and not", async () => {
    const seen: (string | undefined)[] = [];
    const up = await server((req, res) => {
      seen.push(req.headers.authorization);
      req.resume();
      req.on("end", () => {
        // the first request is the plain one, the second the stream
        if (seen.length === 2) {
          res.writeHead(200, { "content-type": "text/event-stream" });
          res.end(sseChunk("one two") + SSE_END);
        } else {
          res.writeHead(200, { "content-type": "application/json" });
          res.end(completion("one two"));
        }
      });
    });
    const r = await startRouter(`
providers:
  - { name: a, type: openai_compatible, endpoint: "${up.url}/v1", api_key: "\${KEY}", default_model: m }
`, { KEY: "sk-from-file\n" });
    try {
      const plain = await postJson(`${r.url}/v1/chat/completions`, chat());
      assert.equal(plain.status, 200);
      assert.equal((await plain.json()).choices[0].message.content, "one two");
      const streamed = await postJson(`${r.url}/v1/chat/completions`, { ...chat(), stream: true });
      assert.equal(contentOf(await readSse(streamed)), "one two");
      assert.deepEqual(seen, ["Bearer sk-from-file", "Bearer sk-from-file"]);
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
