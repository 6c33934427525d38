// The SSE / line readers the adapters parse upstream streams with: events must come out the same whatever
// the chunk boundaries (down to one byte per read), with CRLF, multi-line data, comments and UTF-8 split
// across reads.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { lines as linesOf, READ_BUFFER_BYTES, SseParser, sseEvents as sseEventsOf, type SseEvent } from "../src/providers/event-streams.ts";

const enc = new TextEncoder();
const MAX = 1 << 20; // the default routing.stream_max_event_bytes
const sseEvents = (body: ReadableStream<Uint8Array>) => sseEventsOf(body, MAX);
const lines = (body: ReadableStream<Uint8Array>) => linesOf(body, MAX);

function bodyOf(parts: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(c) {
      for (const p of parts) c.enqueue(p);
      c.close();
    },
  });
}

/** A byte stream (type "bytes", like Deno's fetch bodies): the readers use a BYOB reader and one reused buffer. */
function byteBodyOf(parts: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    type: "bytes",
    pull(c) {
      if (i < parts.length) c.enqueue(parts[i++].slice());
      else {
        c.close();
        c.byobRequest?.respond(0); // a pending BYOB read completes only with this (as Deno's fetch bodies do)
      }
    },
  });
}

/** The bytes of `text` cut every `size` bytes (cuts land inside multi-byte UTF-8 characters too). */
function cut(text: string, size: number): Uint8Array[] {
  const b = enc.encode(text);
  const out: Uint8Array[] = [];
  for (let i = 0; i < b.length; i += size) out.push(b.subarray(i, i + size));
  return out;
}

async function collect<T>(gen: AsyncGenerator<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const v of gen) out.push(v);
  return out;
}

const STREAM = [
  ": keep-alive comment",
  "event: ping",
  "data: {\"a\":1}",
  "",
  "data: first line",
  "data:second line (no space)",
  "id: 7",
  "",
  "data: {\"content\":\"héllo wörld ✓ 😀\"}",
  "",
  "",
  "event: done",
  "data: [DONE]",
  "",
].join("\n") + "\n";

const EXPECTED: SseEvent[] = [
  { event: "ping", data: "{\"a\":1}" },
  { event: "message", data: "first line\nsecond line (no space)" },
  { event: "message", data: "{\"content\":\"héllo wörld ✓ 😀\"}" },
  { event: "done", data: "[DONE]" },
];

describe("sseEvents / SseParser", () => {
  it("parses the same events whatever the read boundaries", async () => {
    for (const size of [1, 2, 3, 5, 7, 16, 64, 100000]) {
      assert.deepEqual(await collect(sseEvents(bodyOf(cut(STREAM, size)))), EXPECTED, `reads of ${size} bytes`);
    }
  });

  it("accepts CRLF line ends", async () => {
    const crlf = STREAM.replace(/\n/g, "\r\n");
    for (const size of [1, 4, 100000]) {
      assert.deepEqual(await collect(sseEvents(bodyOf(cut(crlf, size)))), EXPECTED, `reads of ${size} bytes`);
    }
  });

  it("still delivers a last event that has no blank line (or no newline) after it", async () => {
    assert.deepEqual(await collect(sseEvents(bodyOf(cut("data: a\n\ndata: b\n", 3)))), [
      { event: "message", data: "a" },
      { event: "message", data: "b" },
    ]);
    assert.deepEqual(await collect(sseEvents(bodyOf(cut("data: a\n\ndata: tail", 2)))), [
      { event: "message", data: "a" },
      { event: "message", data: "tail" },
    ]);
  });

  it("ignores events without data and empty bodies", async () => {
    assert.deepEqual(await collect(sseEvents(bodyOf(cut("event: x\n\n: comment\n\n", 1)))), []);
    assert.deepEqual(await collect(sseEvents(bodyOf([]))), []);
  });

  it("parses a byte stream the same, events larger than the read buffer included", async () => {
    const big = "ünïcødé ✓ 😀 ".repeat(Math.ceil((3 * READ_BUFFER_BYTES) / 10));
    const text = `${STREAM}data: {"content":"${big}"}\n\ndata: after\n\n`;
    const want = [...EXPECTED, { event: "message", data: `{"content":"${big}"}` }, { event: "message", data: "after" }];
    for (const size of [1, 7, 1000, READ_BUFFER_BYTES - 1, READ_BUFFER_BYTES + 3, 100000]) {
      assert.deepEqual(await collect(sseEvents(byteBodyOf(cut(text, size)))), want, `reads of ${size} bytes`);
    }
  });

  it("SseParser.push returns events as soon as their blank line arrives", () => {
    const p = new SseParser(MAX);
    const out: SseEvent[] = [];
    p.push(enc.encode("data: one\n"), out);
    assert.equal(out.length, 0);
    p.push(enc.encode("\ndata: tw"), out);
    assert.deepEqual(out, [{ event: "message", data: "one" }]);
    p.push(enc.encode("o\n\n"), out);
    assert.deepEqual(out[1], { event: "message", data: "two" });
    p.end(out);
    assert.equal(out.length, 2);
  });
});

describe("lines", () => {
  it("splits LF and CRLF lines across any read boundary, keeping empty lines", async () => {
    const text = "alpha\r\nbéta\n\ngamma ✓\nlast";
    for (const size of [1, 2, 5, 100000]) {
      assert.deepEqual(await collect(lines(bodyOf(cut(text, size)))), ["alpha", "béta", "", "gamma ✓", "last"], `reads of ${size} bytes`);
      assert.deepEqual(await collect(lines(byteBodyOf(cut(text, size)))), ["alpha", "béta", "", "gamma ✓", "last"], `byte stream, reads of ${size} bytes`);
    }
    const long = "x✓".repeat(READ_BUFFER_BYTES);
    assert.deepEqual(await collect(lines(byteBodyOf(cut(`${long}\nend\n`, 5000)))), [long, "end"]);
  });
});
