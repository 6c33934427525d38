// The incremental HTTP/1.1 response parser of the socket client (http1.ts): status line, headers, and a body
// delimited by Content-Length, chunked coding or the connection's close, fed whatever each socket read delivers.

/** The position after the blank line that ends a response head starting at `pos` (LF LF or LF CR LF), or 0. */
function headEnd(buf: Uint8Array, pos: number): number {
  for (let i = buf.indexOf(10, pos); i >= 0; i = buf.indexOf(10, i + 1)) {
    if (buf[i + 1] === 10) return i + 2;
    if (buf[i + 1] === 13 && buf[i + 2] === 10) return i + 3;
  }
  return 0;
}

/** A response that is not HTTP/1.x as we can read it. */
export class ProtocolError extends TypeError {
  constructor(message: string) {
    super(`upstream sent an invalid response: ${message}`);
  }
}

const MAX_HEAD_BYTES = 64 * 1024;
/** A header name (RFC 9110 token). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const latin1 = new TextDecoder("latin1");

/** Status and headers of a response (names lower-cased; repeated headers joined with ", ", as fetch). */
export class Head {
  readonly headers = new Map<string, string>();
  constructor(readonly status: number) {}
  get(name: string): string | null {
    return this.headers.get(name.toLowerCase()) ?? null;
  }
}

export interface ResponseSink {
  head(head: Head): void;
  /** a piece of the body: a view into the fed buffer (kept by the sink only when the transport gave it away) */
  body(bytes: Uint8Array): void;
  /** the body is complete; `reusable`: the connection can carry another request */
  end(reusable: boolean): void;
}

const enum State { Head, Length, ChunkSize, ChunkData, ChunkDataEnd, Trailers, UntilClose, Done }

/**
 * Incremental HTTP/1.1 response parser: feed() it what the socket delivers, it calls the sink. Throws a
 * ProtocolError on a response it cannot read; eof() throws when the connection closed mid-response.
 */
export class ResponseParser {
  #state = State.Head;
  #pending: Uint8Array | null = null; // a head or chunk-size line split across reads
  #remaining = 0; // body bytes left (Length) or bytes left in the current chunk
  #keepAlive = false;
  #started = false;

  constructor(readonly sink: ResponseSink) {}

  /** Whether any byte of the response has arrived. */
  get started(): boolean {
    return this.#started;
  }

  feed(buf: Uint8Array): void {
    if (buf.length) this.#started = true;
    if (this.#pending) {
      // a head or line split across reads (rare): join the kept part and scan the whole again
      const p = this.#pending;
      this.#pending = null;
      const joined = new Uint8Array(p.length + buf.length);
      joined.set(p);
      joined.set(buf, p.length);
      buf = joined;
    }
    let pos = 0;
    const n = buf.length;
    while (pos < n) {
      switch (this.#state) {
        case State.Head:
        case State.ChunkSize:
        case State.Trailers: {
          const end = this.#state === State.Head ? headEnd(buf, pos) : buf.indexOf(10, pos) + 1;
          if (end <= 0) {
            if (n - pos > MAX_HEAD_BYTES) throw new ProtocolError(this.#state === State.Head ? "response head too large" : "line too long");
            this.#pending = buf.slice(pos);
            return;
          }
          // the bound holds however the head arrived: in one read, or pieced together above
          if (this.#state === State.Head && end - pos > MAX_HEAD_BYTES) throw new ProtocolError("response head too large");
          const line = buf.subarray(pos, end);
          pos = end;
          if (this.#state === State.Head) {
            if (this.#head(line)) this.#finish(this.#keepAlive && pos === n);
          } else if (this.#state === State.ChunkSize) this.#chunkSize(line);
          else if (line[0] === 10 || (line[0] === 13 && line[1] === 10)) this.#finish(this.#keepAlive && pos === n);
          break;
        }
        case State.Length:
        case State.ChunkData: {
          const take = Math.min(this.#remaining, n - pos);
          this.sink.body(buf.subarray(pos, pos + take));
          pos += take;
          this.#remaining -= take;
          if (this.#remaining > 0) break;
          if (this.#state === State.Length) this.#finish(this.#keepAlive && pos === n);
          else this.#state = State.ChunkDataEnd;
          break;
        }
        case State.ChunkDataEnd: {
          // CRLF (or a bare LF) after the chunk's data
          const c = buf[pos++];
          if (c === 10) this.#state = State.ChunkSize;
          else if (c !== 13) throw new ProtocolError("chunk data longer than its size");
          break;
        }
        case State.UntilClose:
          this.sink.body(pos === 0 ? buf : buf.subarray(pos));
          return;
        case State.Done:
          // bytes after the response: the sink was told the connection is not reusable unless they came later
          return;
      }
    }
  }

  /** The connection closed. */
  eof(): void {
    if (this.#state === State.UntilClose) this.#finish(false);
    else if (this.#state !== State.Done) {
      throw new TypeError(this.#state === State.Head ? "upstream closed the connection before answering" : "upstream closed the connection before the response ended");
    }
  }

  /** Reads a head; true when the response it starts has no body. */
  #head(bytes: Uint8Array): boolean {
    const text = latin1.decode(bytes);
    const lines = text.split("\n");
    const m = /^HTTP\/1\.([01]) (\d{3})(?: |\r?$)/.exec(lines[0]);
    if (!m) throw new ProtocolError("not an HTTP/1.x status line");
    const status = Number(m[2]);
    if (status < 200) {
      if (status === 101) throw new ProtocolError("unexpected protocol switch");
      return false; // 100 Continue, 103 Early Hints: the real head follows
    }
    const head = new Head(status);
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i];
      if (line === "" || line === "\r") continue; // the blank end line
      // a line that is not `name: value` (no colon, space before it, a folded line) is refused, as fetch does
      const colon = line.indexOf(":");
      if (colon <= 0 || !TOKEN.test(line.slice(0, colon))) throw new ProtocolError("malformed header line");
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      const prev = head.headers.get(name);
      head.headers.set(name, prev === undefined ? value : `${prev}, ${value}`);
    }
    const conn = head.headers.get("connection")?.toLowerCase();
    this.#keepAlive = m[1] === "1" ? !conn?.includes("close") : !!conn?.includes("keep-alive");
    const te = head.headers.get("transfer-encoding");
    const cl = head.headers.get("content-length");
    let empty = false;
    if (status === 204 || status === 304) empty = true;
    else if (te !== undefined) {
      if (!te.toLowerCase().endsWith("chunked")) {
        this.#keepAlive = false;
        this.#state = State.UntilClose;
      } else this.#state = State.ChunkSize;
    } else if (cl !== undefined) {
      if (!/^\d+$/.test(cl)) throw new ProtocolError("bad content-length");
      this.#remaining = Number(cl);
      if (this.#remaining === 0) empty = true;
      else this.#state = State.Length;
    } else {
      this.#keepAlive = false;
      this.#state = State.UntilClose;
    }
    this.sink.head(head);
    return empty;
  }

  #chunkSize(line: Uint8Array): void {
    let size = 0, digits = 0;
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
      if (d < 0) break; // ";extension", CR, LF
      size = size * 16 + d;
      if (++digits > 12) throw new ProtocolError("chunk size too large");
    }
    if (digits === 0) throw new ProtocolError("bad chunk size");
    if (size === 0) this.#state = State.Trailers;
    else {
      this.#remaining = size;
      this.#state = State.ChunkData;
    }
  }

  #finish(reusable: boolean): void {
    this.#state = State.Done;
    this.sink.end(reusable);
  }
}
