// Raw HTTP/1.1 over a TCP socket, for requests fetch() cannot make: a Content-Length that lies, a chunked
// body that never ends.
import net from "node:net";

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface RawOptions {
  /** bytes sent right after the head */
  body?: string | Uint8Array;
  /** called every `intervalMs` for one more body chunk, until the response is complete */
  endless?: () => string | Uint8Array;
  intervalMs?: number;
  timeoutMs?: number;
  /** the client's own address (another loopback address, such as 127.0.0.2, is another client IP) */
  localAddress?: string;
}

function parse(buf: Buffer): RawResponse | null {
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0) return null;
  const [statusLine, ...lines] = buf.subarray(0, end).toString("latin1").split("\r\n");
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(":");
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  const status = Number(statusLine.split(" ")[1]);
  const rest = buf.subarray(end + 4);
  if (headers["content-length"] !== undefined) {
    const n = Number(headers["content-length"]);
    return rest.length >= n ? { status, headers, body: rest.subarray(0, n).toString("utf8") } : null;
  }
  if ((headers["transfer-encoding"] ?? "").includes("chunked")) {
    let off = 0;
    const parts: Buffer[] = [];
    while (true) {
      const nl = rest.indexOf("\r\n", off);
      if (nl < 0) return null;
      const size = parseInt(rest.subarray(off, nl).toString("latin1"), 16);
      if (size === 0) return { status, headers, body: Buffer.concat(parts).toString("utf8") };
      if (rest.length < nl + 2 + size + 2) return null;
      parts.push(rest.subarray(nl + 2, nl + 2 + size));
      off = nl + 2 + size + 2;
    }
  }
  return null; // read until close
}

/** Sends `head` (request line and headers, without the blank line) and the body; resolves with the response. */
export function rawRequest(port: number, head: string, opts: RawOptions = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: "127.0.0.1", localAddress: opts.localAddress });
    let buf = Buffer.alloc(0);
    let done = false;
    let timer: ReturnType<typeof setInterval> | undefined;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      clearTimeout(deadline);
      sock.destroy();
      const res = parse(buf);
      if (res) resolve(res);
      else if (err) reject(err);
      else {
        // closed without a length: take what came
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) reject(new Error(`connection closed without a response (${buf.length} bytes)`));
        else resolve({ ...parse(Buffer.concat([buf.subarray(0, end), Buffer.from(`\r\ncontent-length: ${buf.length - end - 4}\r\n\r\n`), buf.subarray(end + 4)]))! });
      }
    };
    const deadline = setTimeout(() => finish(new Error("raw request timed out")), opts.timeoutMs ?? 10_000);
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (parse(buf)) finish();
    });
    sock.on("error", (e) => finish(e));
    sock.on("close", () => finish());
    sock.on("connect", () => {
      sock.write(head + "\r\n\r\n");
      if (opts.body !== undefined) sock.write(opts.body);
      if (opts.endless) {
        const more = opts.endless;
        timer = setInterval(() => {
          if (!done && !sock.destroyed) sock.write(more());
        }, opts.intervalMs ?? 5);
      }
    });
  });
}
