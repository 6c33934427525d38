// Readers of upstream streams: text/event-stream (SSE) events and NDJSON lines, cut from the body's bytes with
// bounded memory. Web standards only.
import { UpstreamStreamError } from "./types.ts";

/** Bytes of an upstream body read into one reused buffer where the stream allows it (see chunkReader). */
export interface ChunkReader {
  /** the next chunk (valid only until the next read), or null at the end of the body */
  read(): Promise<Uint8Array | null>;
  cancel(): void;
  /**
   * The consumer has all it needs, though the body may not have ended (an SSE stream's [DONE] can come before
   * the end of the HTTP body): the rest may be discarded, and a client that can keeps the connection if the body
   * ends soon. Without it, cancel().
   */
  done?(): void;
}

/**
 * A body from a runtime entrypoint's own stream client (src/runtime/http1.ts) can hand out its chunks
 * directly: `body[DIRECT_CHUNKS]()` returns a ChunkReader, which saves a stream reader's promise and result
 * object per read. Such a body is still a ReadableStream for everyone else.
 */
export const DIRECT_CHUNKS: unique symbol = Symbol.for("failover-router.direct-chunks") as never;

/** Size of the reused read buffer: bigger reads just take more than one read. */
export const READ_BUFFER_BYTES = 8192;

/**
 * Reads a body chunk by chunk. Where the body is a byte stream (Deno's fetch bodies) a BYOB reader fills one
 * buffer of READ_BUFFER_BYTES per body, reused for every read: the default reader of such a stream allocates a
 * fresh 64 KiB buffer per read (Deno's autoAllocateChunkSize), which for a stream of small SSE events means
 * 64 KiB of garbage per event and 64 KiB held by every open stream's pending read. Other streams (Bun's fetch
 * bodies are not byte streams) use a default reader. A chunk is only valid until the next read(): decode or
 * copy it first.
 */
export function chunkReader(body: ReadableStream<Uint8Array>): ChunkReader {
  const direct = (body as { [DIRECT_CHUNKS]?: () => ChunkReader })[DIRECT_CHUNKS];
  if (direct) return direct.call(body);
  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = body.getReader({ mode: "byob" });
  } catch { /* not a byte stream */ }
  if (byob) {
    const reader = byob;
    let buf = new Uint8Array(READ_BUFFER_BYTES);
    return {
      async read() {
        const { done, value } = await reader.read(buf);
        if (done || !value) return null;
        // the read transferred the buffer: the next read reuses its memory through the new view's buffer
        buf = new Uint8Array(value.buffer);
        return value;
      },
      cancel: () => void reader.cancel().catch(() => {}),
    };
  }
  const reader = body.getReader();
  return {
    async read() {
      const { done, value } = await reader.read();
      return done ? null : value;
    },
    cancel: () => void reader.cancel().catch(() => {}),
  };
}

/** Skips a stream event that is not valid JSON (CallOptions.malformedEvent), or fails the stream with `message`. */
export function skipMalformed(malformedEvent: (() => void) | undefined, message: string): void {
  if (!malformedEvent) throw new UpstreamStreamError(message);
  malformedEvent();
}

const STREAM_DECODE: TextDecodeOptions = { stream: true };
const NO_BYTES = new Uint8Array(0);

/** The failure of a stream that sends one event (or line) larger than the router holds. */
function tooLarge(max: number): UpstreamStreamError {
  return new UpstreamStreamError(`upstream stream event larger than ${max} bytes`);
}

/**
 * Cuts a byte stream into lines (LF or CRLF), decoded as UTF-8. A line that a read cuts waits as bytes in one
 * buffer of at most `max` bytes, and each read is decoded once from its first line to its last newline: a line
 * that never ends costs bounded memory and time linear in its length, however it is cut into reads (a byte is
 * searched for a newline at most twice as bytes and once as text, never again with each read). A line longer
 * than `max` fails the stream (UpstreamStreamError); a complete line is measured decoded, in UTF-16 units,
 * never more than its bytes.
 */
class LineCutter {
  readonly #decoder = new TextDecoder();
  #part = NO_BYTES;
  #len = 0; // bytes of #part holding the start of a line

  constructor(readonly max: number) {}

  /** Calls `line(text, start, end)` for each line `chunk` completes, without its CR / LF. */
  push(chunk: Uint8Array, line: (text: string, start: number, end: number) => void): void {
    const last = chunk.lastIndexOf(10);
    if (last < 0) return this.#keep(chunk, 0);
    const upTo = last === chunk.length - 1 ? chunk : chunk.subarray(0, last + 1);
    let s: string;
    if (this.#len) {
      if (this.#len + chunk.indexOf(10) > this.max) throw tooLarge(this.max);
      // the buffered start may end inside a character: decode it in stream mode, the rest flushes it
      s = this.#decoder.decode(this.#part.subarray(0, this.#len), STREAM_DECODE) + this.#decoder.decode(upTo);
      this.#len = 0;
      if (this.#part.byteLength > READ_BUFFER_BYTES) this.#part = NO_BYTES; // do not hold a long line's buffer
    } else s = this.#decoder.decode(upTo);
    let pos = 0, nl: number;
    while ((nl = s.indexOf("\n", pos)) >= 0) {
      if (nl - pos > this.max) throw tooLarge(this.max);
      line(s, pos, nl > pos && s.charCodeAt(nl - 1) === 13 ? nl - 1 : nl);
      pos = nl + 1;
    }
    if (last < chunk.length - 1) this.#keep(chunk, last + 1);
  }

  /** The body ended: a last line without a newline still counts. */
  end(line: (text: string, start: number, end: number) => void): void {
    if (!this.#len) return;
    const s = this.#decoder.decode(this.#part.subarray(0, this.#len));
    this.#len = 0;
    line(s, 0, s.charCodeAt(s.length - 1) === 13 ? s.length - 1 : s.length);
  }

  /** Appends chunk[start..] to the unterminated line. */
  #keep(chunk: Uint8Array, start: number): void {
    const n = this.#len + chunk.length - start;
    if (n > this.max) throw tooLarge(this.max);
    if (n > this.#part.byteLength) {
      // doubling keeps the copies linear in the line's length when it arrives in many small reads
      const grown = new Uint8Array(Math.min(this.max, Math.max(n, 2 * this.#part.byteLength, 256)));
      grown.set(this.#part.subarray(0, this.#len));
      this.#part = grown;
    }
    this.#part.set(start ? chunk.subarray(start) : chunk, this.#len);
    this.#len = n;
  }
}

/**
 * Splits a byte stream into lines (LF or CRLF), decoded as UTF-8; a line longer than `maxLineBytes` fails the
 * stream (UpstreamStreamError).
 */
export async function* lines(body: ReadableStream<Uint8Array>, maxLineBytes: number): AsyncGenerator<string, void, undefined> {
  const reader = chunkReader(body);
  const cutter = new LineCutter(maxLineBytes);
  const out: string[] = [];
  const line = (s: string, start: number, end: number) => void out.push(s.slice(start, end));
  try {
    while (true) {
      const value = await reader.read();
      if (value === null) break;
      cutter.push(value, line);
      for (let i = 0; i < out.length; i++) yield out[i];
      out.length = 0;
    }
    cutter.end(line);
    if (out.length) yield out[0];
  } finally {
    reader.cancel();
  }
}

export interface SseEvent {
  event: string;
  data: string;
}

/**
 * Incremental text/event-stream parser: push() the body's bytes as they arrive, get the complete events (event
 * name defaults to "message"; comments and unknown fields are ignored; LF or CRLF line ends). Synchronous and
 * allocation-light, so an adapter can parse inside its own read loop instead of stacking generators. One line,
 * or the data of one event, larger than `maxEventBytes` fails the stream (UpstreamStreamError).
 */
export class SseParser {
  readonly #cutter: LineCutter;
  #out: SseEvent[] = [];
  #event = "";
  #data: string | null = null;
  #more: string[] | null = null;
  #dataLength = 0;

  constructor(readonly maxEventBytes: number) {
    this.#cutter = new LineCutter(maxEventBytes);
  }

  /** Parses `chunk` (the next bytes of the body) and appends every event it completes to `out`. */
  push(chunk: Uint8Array, out: SseEvent[]): void {
    this.#out = out;
    this.#cutter.push(chunk, this.#line);
  }

  /** The body ended: a last unterminated line and a pending event still count. */
  end(out: SseEvent[]): void {
    this.#out = out;
    this.#cutter.end(this.#line);
    this.#dispatch();
  }

  readonly #line = (s: string, start: number, end: number): void => {
    if (start === end) this.#dispatch();
    else if (s.startsWith("data:", start)) {
      const v = s.charCodeAt(start + 5) === 32 ? start + 6 : start + 5;
      this.#dataLength += end - v;
      if (this.#dataLength > this.maxEventBytes) throw tooLarge(this.maxEventBytes);
      const d = s.slice(v, end);
      if (this.#data === null) this.#data = d;
      else (this.#more ??= []).push(d);
    } else if (s.startsWith("event:", start)) {
      this.#event = s.slice(start + 6, end).trim();
    } // comments (":") and other fields are ignored
  };

  #dispatch(): void {
    if (this.#data !== null) {
      const data = this.#more ? [this.#data, ...this.#more].join("\n") : this.#data;
      this.#out.push({ event: this.#event || "message", data });
    }
    this.#event = "";
    this.#data = null;
    this.#more = null;
    this.#dataLength = 0;
  }
}

/**
 * Reads a text/event-stream body one upstream read at a time, without a generator of its own (a hot-path
 * caller such as the OpenAI passthrough loops over it inside its own generator).
 */
export class SseReader {
  readonly #reader: ChunkReader;
  readonly #parser: SseParser;
  readonly #out: SseEvent[] = [];
  #ended = false;

  /** `maxEventBytes`: see SseParser. */
  constructor(body: ReadableStream<Uint8Array>, maxEventBytes: number) {
    this.#reader = chunkReader(body);
    this.#parser = new SseParser(maxEventBytes);
  }

  /**
   * The events completed by the next read (possibly none; the array is reused, so consume it before the next
   * call), or null once the body has ended and its last events were returned.
   */
  read(): Promise<SseEvent[] | null> {
    if (this.#ended) return Promise.resolve(null);
    // a then() with a callback made once, not an async function: one promise per read fewer on the chunk path
    return this.#reader.read().then(this.#parse);
  }

  readonly #parse = (value: Uint8Array | null): SseEvent[] => {
    this.#out.length = 0;
    if (value === null) {
      this.#ended = true;
      this.#parser.end(this.#out);
    } else this.#parser.push(value, this.#out);
    return this.#out;
  };

  cancel(): void {
    this.#reader.cancel();
    this.#out.length = 0;
  }

  /** The consumer has read all it needs (an SSE stream's [DONE]): see ChunkReader.done. */
  done(): void {
    if (this.#reader.done) this.#reader.done();
    else this.#reader.cancel();
    this.#out.length = 0;
  }
}

/** Parses a text/event-stream body into events (event name defaults to "message"); `maxEventBytes`: see SseParser. */
export async function* sseEvents(body: ReadableStream<Uint8Array>, maxEventBytes: number): AsyncGenerator<SseEvent, void, undefined> {
  const sse = new SseReader(body, maxEventBytes);
  try {
    for (let events = await sse.read(); events !== null; events = await sse.read()) {
      for (let i = 0; i < events.length; i++) yield events[i];
    }
  } finally {
    sse.cancel();
  }
}
