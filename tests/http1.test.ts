// The socket HTTP/1.1 client the entrypoints use for plain-http upstreams (src/runtime/http1.ts), driven
// directly (the `UpstreamFetch` the runtime's entrypoint builds) against raw TCP servers that send exact bytes:
// chunked bodies with extensions and trailers and Content-Length bodies cut at every byte boundary or one byte
// per read, keep-alive reuse, `connection: close`, a close-delimited body after a half-close, and malformed
// answers, which must fail cleanly (a TypeError, promptly), never hang. Streamed and not.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import net, { type AddressInfo, type Socket } from "node:net";
import { upstreamFetch } from "./helpers/router.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const bytes = (s: string) => new TextEncoder().encode(s);

/**
 * A raw TCP upstream: `answer` is called for each request it receives (counted across connections: `n`), with
 * the connection to write to. allowHalfOpen: a server that ends its side keeps reading.
 */
async function rawUpstream(answer: (c: Socket, n: number) => void | Promise<void>) {
  let connections = 0, requests = 0;
  const sockets = new Set<Socket>();
  const srv = net.createServer({ allowHalfOpen: true }, (c) => {
    connections++;
    sockets.add(c);
    c.setNoDelay(true);
    c.on("error", () => {});
    c.on("close", () => sockets.delete(c));
    c.on("end", () => c.end());
    c.on("data", (d) => {
      for (let at = d.indexOf("POST "); at >= 0; at = d.indexOf("POST ", at + 1)) void answer(c, requests++);
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/v1/chat/completions`,
    connections: () => connections,
    requests: () => requests,
    async stop() {
      for (const c of sockets) c.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

/** Writes `data` in the pieces between `cuts`, pausing between them so that each arrives in a read of its own. */
async function writeCut(c: Socket, data: Uint8Array, cuts: number[]): Promise<void> {
  let at = 0;
  for (const cut of [...cuts, data.length]) {
    if (cut <= at) continue;
    c.write(data.subarray(at, cut));
    at = cut;
    if (at < data.length) await sleep(2);
  }
}

/** One request through the client; the body read whole. Rejects like the client (a hang shows as a TimeoutError). */
async function call(url: string, stream: boolean, timeoutMs = 5000): Promise<{ status: number; text: string }> {
  const res = await upstreamFetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: "{}", signal: AbortSignal.timeout(timeoutMs), maxBodyBytes: 1 << 20 }, stream);
  return { status: res.status, text: await res.text() };
}

/** The error a request fails with (it must fail, with a TypeError, within `timeoutMs`). */
async function failure(url: string, stream: boolean, timeoutMs = 5000): Promise<Error> {
  const t0 = performance.now();
  try {
    const r = await call(url, stream, timeoutMs);
    assert.fail(`${stream ? "streamed" : "not streamed"}: answered ${r.status} ${JSON.stringify(r.text.slice(0, 40))} instead of failing`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    assert.equal((e as Error).name, "TypeError", `${stream ? "streamed" : "not streamed"}: ${(e as Error).name}: ${(e as Error).message}`);
    assert.ok(performance.now() - t0 < timeoutMs - 1000, "failed promptly");
    return e as Error;
  }
}

const BODY = '{"id":"x","choices":[{"message":{"content":"Grüße ✓"}}]}';
const CHUNKED = bytes(
  "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n" +
    `${bytes(BODY.slice(0, 30)).length.toString(16)};name=value;x\r\n${BODY.slice(0, 30)}\r\n` +
    `${bytes(BODY.slice(30)).length.toString(16).toUpperCase()};ext\r\n${BODY.slice(30)}\r\n` +
    "0\r\nx-trailer: t\r\nx-other: u\r\n\r\n",
);
const LENGTH = bytes(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${bytes(BODY).length}\r\n\r\n${BODY}`);

describe("http1 client: framing", () => {
  for (const stream of [true, false]) {
    const mode = stream ? "streamed" : "not streamed";
    for (const [name, response] of [["chunked (extensions, trailers)", CHUNKED], ["content-length", LENGTH]] as const) {
      it(`a ${name} response cut at every byte boundary arrives whole, over one kept-alive connection (${mode})`, async () => {
        const up = await rawUpstream((c, n) => writeCut(c, response, [n + 1]));
        try {
          for (let i = 0; i < response.length - 1; i++) {
            const r = await call(up.url, stream);
            assert.deepEqual(r, { status: 200, text: BODY }, `cut at ${i + 1}`);
          }
          assert.equal(up.connections(), 1, "one connection carried every request");
        } finally {
          await up.stop();
        }
      });
    }

    it(`a response sent one byte per read arrives whole (${mode})`, async () => {
      const up = await rawUpstream((c) => writeCut(c, CHUNKED, Array.from({ length: CHUNKED.length }, (_, i) => i + 1)));
      try {
        assert.deepEqual(await call(up.url, stream, 20000), { status: 200, text: BODY });
      } finally {
        await up.stop();
      }
    });

    it(`\`connection: close\` is honoured: the next request opens a new connection (${mode})`, async () => {
      // the server does not close: the client must not send another request on this connection
      const up = await rawUpstream((c) => void c.write(`HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: ${bytes(BODY).length}\r\n\r\n${BODY}`));
      try {
        for (let i = 0; i < 3; i++) assert.deepEqual(await call(up.url, stream), { status: 200, text: BODY }, `request ${i}`);
        assert.equal(up.connections(), 3);
      } finally {
        await up.stop();
      }
    });

    it(`a body delimited by the server half-closing the connection arrives whole; the next request opens a new connection (${mode})`, async () => {
      const up = await rawUpstream(async (c) => {
        await writeCut(c, bytes(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n${BODY}`), [40, 80]);
        c.end(); // FIN: no more from the server; it still reads
      });
      try {
        for (let i = 0; i < 2; i++) assert.deepEqual(await call(up.url, stream), { status: 200, text: BODY }, `request ${i}`);
        assert.equal(up.connections(), 2);
      } finally {
        await up.stop();
      }
    });
  }
});

describe("http1 client: malformed answers fail cleanly", () => {
  const cases: [string, (c: Socket) => void | Promise<void>][] = [
    ["a status line that is not HTTP/1.x", (c) => void c.write("HTTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")],
    ["a status code that is not three digits", (c) => void c.write("HTTP/1.1 20 OK\r\ncontent-length: 2\r\n\r\nok")],
    ["a header line without a colon", (c) => void c.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nnot a header\r\n\r\nok")],
    ["whitespace between a header name and its colon", (c) => void c.write("HTTP/1.1 200 OK\r\ncontent-length : 2\r\n\r\nok")],
    // a little over the bound: on Bun it comes in one read, the end of the head included
    ["a head larger than 64 KiB, complete", (c) => void c.write(`HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-big: ${"a".repeat(66_000)}\r\n\r\nok`)],
    ["a head that never ends", async (c) => {
      c.write("HTTP/1.1 200 OK\r\n");
      for (let i = 0; i < 100 && !c.destroyed; i++) {
        c.write(`x-h${i}: ${"a".repeat(2000)}\r\n`);
        await sleep(1);
      }
    }],
    ["a chunk size that is not hex", (c) => void c.write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n")],
    ["chunk data longer than its size", (c) => void c.write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokay\r\n0\r\n\r\n")],
    ["a chunked body cut short by a close", (c) => void c.end("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\nonly part")],
    ["a body shorter than its content-length, then a close", (c) => void c.end("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort")],
    ["a content-length that is not a number", (c) => void c.write("HTTP/1.1 200 OK\r\ncontent-length: 2x\r\n\r\nok")],
    ["two different content-lengths", (c) => void c.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok")],
    ["a close before any byte of the answer", (c) => void c.end()],
  ];
  for (const [name, answer] of cases) {
    it(name, async () => {
      for (const stream of [true, false]) {
        const up = await rawUpstream(answer);
        try {
          await failure(up.url, stream);
        } finally {
          await up.stop();
        }
      }
    });
  }
});
