// The client-facing edge: slow clients over raw sockets (request heads and bodies sent a byte at a time, to see
// when the router gives up on them: server.header_timeout_seconds, server.body_timeout_seconds), a Host header
// that tries to pick the route, JSON bodies with too many items. edgeChecks() runs them against a router process:
// from source under the test runner's runtime (tests/slow-clients.test.ts) and the compiled binary
// (tests/binary.test.ts).
import net from "node:net";
import { it } from "node:test";
import assert from "node:assert/strict";
import { rawRequest } from "./raw.ts";
import { runtime, type RouterProcess } from "./process.ts";

/** The server block the edge checks need (small timeouts, so the tests are short). */
const EDGE_SERVER = "{ host: 127.0.0.1, port: 0, header_timeout_seconds: 2, body_timeout_seconds: 2 }";
/** The config every run of the edge checks serves: 2 s header and body timeouts, a fast and a slow provider. */
export const EDGE_CONFIG = `server: ${EDGE_SERVER}
providers:
  - { name: fast, type: mock, reply: "hi" }
  - { name: slow, type: mock, reply: "late", latency_ms: 6000 }
routing: { fallback_chain: [fast, slow] }
`;
const HEADER_S = 2, BODY_S = 2;
/** slack for a loaded machine */
const MARGIN_MS = 3000;

const chat = (extra: Record<string, unknown> = {}) => JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }], ...extra });
/** A POST's head for rawRequest (which adds the blank line) */
const postHead = (path: string, body: string) => `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}`;

/** A chat body whose JSON holds exactly `items` keys and array items (6 in the request itself, the rest in "x"). */
function bodyWithItems(items: number): string {
  const keys: string[] = [];
  for (let i = 0; i < items - 6; i++) keys.push(`"k${i}":${i}`);
  return chat({ x: {} }).replace('"x":{}', `"x":{${keys.join(",")}}`);
}

/**
 * The checks, against a router whose server block is EDGE_SERVER, whose chain answers model "m" and has a provider
 * `slow` that answers after 6 s. `server`: the runtime the router runs on (default: the one running the tests).
 */
export function edgeChecks(router: () => RouterProcess, server: "bun" | "deno" = runtime): void {
  // Bun's idle timer fires on a 4 s tick, so a connection closes up to 4 s after its timeout; and Bun closes a
  // connection whose first request head is unfinished after its own fixed 10 s, whatever the config
  const TICK_MS = server === "bun" ? 4000 : 0;
  const FIRST_HEAD_MS = server === "bun" ? 10_000 + TICK_MS : HEADER_S * 1000;

  it(`closes connections that never finish their request head (200 at once) within the header timeout${server === "bun" ? " (Bun: its own 10 s for a first head)" : ""}`, async () => {
    const r = await trickledHeads(router().port, 200, { waitMs: FIRST_HEAD_MS + MARGIN_MS });
    assert.equal(r.stillOpen, 0, `${r.stillOpen} of 200 still open after ${FIRST_HEAD_MS + MARGIN_MS} ms`);
    assert.ok(Math.min(...r.closedAfterMs) >= HEADER_S * 1000 - 100, `closed too early: ${Math.min(...r.closedAfterMs)} ms`);
    assert.ok(r.received.every((l) => l === "" || l.startsWith("HTTP/1.1 408")), r.received.join(" | "));
  });

  it("closes a keep-alive connection whose next request head never finishes within the header timeout", async () => {
    const r = await trickledHeads(router().port, 20, { waitMs: HEADER_S * 1000 + TICK_MS + MARGIN_MS, before: `GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n` });
    assert.equal(r.stillOpen, 0, `${r.stillOpen} of 20 still open`);
    assert.ok(r.received.every((l) => l.startsWith("HTTP/1.1 200")), "the first request was answered");
  });

  it("answers 408 (OpenAI-shaped) to a body sent a byte a second, and closes the connection", async () => {
    const res = await rawRequest(router().port, `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000`, {
      endless: () => " ",
      intervalMs: 1000,
      timeoutMs: BODY_S * 1000 + MARGIN_MS,
    });
    assert.equal(res.status, 408);
    assert.equal(JSON.parse(res.body).error.code, "request_timeout");
    assert.equal(res.headers.connection, "close");
    const many = await trickledBodies(router().port, 20, { waitMs: BODY_S * 1000 + TICK_MS + MARGIN_MS });
    assert.equal(many.stillOpen, 0, `${many.stillOpen} of 20 still open`);
    assert.ok(many.received.every((l) => l.startsWith("HTTP/1.1 408")), many.received.join(" | "));
  });

  it("closes a connection whose unread body keeps trickling after its answer (an unknown path)", async () => {
    const r = await trickledBodies(router().port, 10, { path: "/nowhere", waitMs: HEADER_S * 1000 + TICK_MS + MARGIN_MS });
    assert.equal(r.stillOpen, 0, `${r.stillOpen} of 10 still open`);
    assert.ok(r.received.every((l) => l.startsWith("HTTP/1.1 404")), r.received.join(" | "));
  });

  it("serves a slow request whose head and body each arrive within their timeouts", async () => {
    const body = chat();
    const text = `${postHead("/v1/chat/completions", body)}\r\n\r\n${body}`;
    const cut = text.indexOf("\r\n\r\n") + 4;
    const parts = [text.slice(0, 20), text.slice(20, 60), text.slice(60, cut), body.slice(0, 10), body.slice(10, 30), body.slice(30)];
    const res = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(router().port, "127.0.0.1");
      let got = "";
      sock.on("data", (d: Buffer) => {
        got += d.toString();
        if (/\r\n\r\n[\s\S]*\}\s*$/.test(got)) {
          sock.destroy();
          resolve(got);
        }
      });
      sock.on("error", reject);
      sock.on("connect", async () => {
        for (const p of parts) {
          sock.write(p);
          await new Promise((r) => setTimeout(r, 300));
        }
      });
    });
    assert.match(res, /^HTTP\/1\.1 200/);
  });

  it("answers a request that takes longer than the header timeout upstream", async () => {
    const res = await rawRequest(router().port, postHead("/v1/chat/completions", chat({ model: "slow/mock" })), {
      body: chat({ model: "slow/mock" }),
      timeoutMs: 20_000,
    });
    assert.equal(res.status, 200, res.body);
  });

  it("takes the route from the request target alone; an invalid Host gets 400", async () => {
    for (const host of ["x/stats?", "x#y", "a b", "", "127.0.0.1:1/admin", "a@b", "x\\stats"]) {
      const res = await rawRequest(router().port, `GET /health HTTP/1.1\r\nHost: ${host}\r\nConnection: close`);
      assert.equal(res.status, 400, `Host ${JSON.stringify(host)}: ${res.status} ${res.body.slice(0, 100)}`);
      const e = JSON.parse(res.body).error;
      assert.equal(e.code, "invalid_host");
      assert.equal(e.type, "invalid_request_error");
    }
    for (const host of ["127.0.0.1", "localhost:8000", "router.example.com", "[::1]:80"]) {
      const res = await rawRequest(router().port, `GET /health HTTP/1.1\r\nHost: ${host}\r\nConnection: close`);
      assert.equal(res.status, 200, `Host ${host}: ${res.status} ${res.body.slice(0, 100)}`);
      assert.ok("providers" in JSON.parse(res.body), "the /health body");
    }
  });

  it("refuses a JSON body with more than max_json_items keys and items, quickly, and stays responsive meanwhile", async () => {
    const big = bodyWithItems(500_000);
    const port = router().port;
    let slowest = 0;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        const t0 = performance.now();
        const h = await rawRequest(port, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close");
        assert.equal(h.status, 200);
        slowest = Math.max(slowest, performance.now() - t0);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const t0 = performance.now();
    const res = await rawRequest(port, postHead("/v1/chat/completions", big), { body: big, timeoutMs: 20_000 });
    const took = performance.now() - t0;
    polling = false;
    await poll;
    assert.equal(res.status, 400, res.body.slice(0, 200));
    const e = JSON.parse(res.body).error;
    assert.equal(e.code, "json_too_large");
    assert.match(e.message, /100000/);
    assert.ok(took < 2000, `answered after ${took.toFixed(0)} ms`);
    assert.ok(slowest < 300, `/health took up to ${slowest.toFixed(0)} ms meanwhile`);
  });

  it("accepts a body with exactly max_json_items keys and items, and refuses one more", async () => {
    const at = bodyWithItems(100_000);
    const ok = await rawRequest(router().port, postHead("/v1/chat/completions", at), { body: at, timeoutMs: 20_000 });
    assert.equal(ok.status, 200, ok.body.slice(0, 200));
    const over = bodyWithItems(100_001);
    const refused = await rawRequest(router().port, postHead("/v1/chat/completions", over), { body: over, timeoutMs: 20_000 });
    assert.equal(refused.status, 400);
    assert.equal(JSON.parse(refused.body).error.code, "json_too_large");
  });
}


export interface SlowResult {
  /** ms from connect to close, for each connection the router closed within waitMs (the rest are not listed) */
  closedAfterMs: number[];
  /** how many were still open after waitMs */
  stillOpen: number;
  /** the first line of whatever each connection received (status lines), "" for nothing */
  received: string[];
}

/**
 * `n` connections, each sending a request head that never ends: one more header byte every `everyMs`. `before`:
 * a complete request sent first on each connection (the trickled head is then that connection's second request).
 */
export function trickledHeads(port: number, n: number, opts: { waitMs: number; everyMs?: number; before?: string }): Promise<SlowResult> {
  return trickle(port, n, opts.waitMs, opts.everyMs ?? 1000, (sock, started) => {
    if (!opts.before) return started(`GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: `);
    sock.write(opts.before);
    let got = "";
    const onData = (d: Buffer) => {
      got += d.toString("latin1");
      if (!/\r\n\r\n[\s\S]*\}/.test(got)) return; // the whole first (JSON) answer
      sock.off("data", onData);
      started(`GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: `);
    };
    sock.on("data", onData);
  });
}

/** `n` connections, each sending a complete head announcing `length` body bytes, then one body byte every `everyMs`. */
export function trickledBodies(port: number, n: number, opts: { waitMs: number; everyMs?: number; path?: string; length?: number }): Promise<SlowResult> {
  const head = `POST ${opts.path ?? "/v1/chat/completions"} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${opts.length ?? 1000}\r\n\r\n`;
  return trickle(port, n, opts.waitMs, opts.everyMs ?? 1000, (_sock, started) => started(head));
}

function trickle(
  port: number,
  n: number,
  waitMs: number,
  everyMs: number,
  start: (sock: net.Socket, started: (first: string) => void) => void,
): Promise<SlowResult> {
  const closedAfterMs: number[] = [];
  const received: string[] = [];
  const socks: net.Socket[] = [];
  const timers: ReturnType<typeof setInterval>[] = [];
  const all = Array.from({ length: n }, () =>
    new Promise<void>((resolve) => {
      const t0 = Date.now();
      const sock = net.connect(port, "127.0.0.1");
      socks.push(sock);
      let got = "";
      sock.on("data", (d) => (got += d.toString("latin1")));
      sock.on("error", () => {});
      sock.on("close", () => {
        closedAfterMs.push(Date.now() - t0);
        received.push(got.split("\r\n")[0]);
        resolve();
      });
      sock.on("connect", () =>
        start(sock, (first) => {
          sock.write(first);
          timers.push(setInterval(() => sock.writable && sock.write(" "), everyMs));
        }));
    }));
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(deadline);
      for (const t of timers) clearInterval(t);
      const stillOpen = n - closedAfterMs.length;
      for (const s of socks) s.destroy();
      resolve({ closedAfterMs: [...closedAfterMs], stillOpen, received: [...received] });
    };
    const deadline = setTimeout(done, waitMs);
    void Promise.all(all).then(done);
  });
}
