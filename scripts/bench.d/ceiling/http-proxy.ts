// Throughput ceiling reference (docs/benchmarks.md, "Throughput ceilings"): the least a JavaScript HTTP gateway can
// do, on raw Bun sockets instead of Bun.serve and fetch. Per request it finds the end of the head, reads
// Content-Length, JSON.parses the body (a gateway has to read "model") and serialises it again, writes it with a
// new head to an upstream connection paired with the client's, and answers with the upstream's body under a new
// head. No chunked bodies, no pipelining, no timeouts, ASCII bodies only: a floor to measure against, not a server.
// Usage: bun http-proxy.ts LISTEN_PORT UPSTREAM_PORT
const [listenPort, upPort] = Bun.argv.slice(2).map(Number);
const latin1 = new TextDecoder("latin1");
const HOST = `127.0.0.1:${upPort}`;

interface Side {
  buf: string;
  client: Bun.Socket<Side>;
  up: Bun.Socket<Side> | null;
  queued: string[];
}

/** One complete message at the start of s.buf (head and Content-Length body), taken off the buffer. */
function take(s: Side): { head: string; body: string } | null {
  const end = s.buf.indexOf("\r\n\r\n");
  if (end < 0) return null;
  const head = s.buf.slice(0, end);
  const m = /\r\ncontent-length: *(\d+)/i.exec(head);
  const len = m ? Number(m[1]) : 0;
  if (s.buf.length < end + 4 + len) return null;
  const body = s.buf.slice(end + 4, end + 4 + len);
  s.buf = s.buf.slice(end + 4 + len);
  return { head, body };
}

const upstreamSocket: Bun.SocketHandler<Side> = {
  data(up, bytes) {
    const s = up.data;
    s.buf += latin1.decode(bytes);
    for (let msg = take(s); msg; msg = take(s)) {
      const status = msg.head.slice(9, 12);
      s.client.write(`HTTP/1.1 ${status} OK\r\ncontent-type: application/json\r\ncontent-length: ${msg.body.length}\r\n\r\n${msg.body}`);
    }
  },
  close: (up) => void up.data.client.end(),
  error() {},
};

Bun.listen<Side>({
  hostname: "127.0.0.1",
  port: listenPort,
  socket: {
    open(client) {
      const side: Side = { buf: "", client, up: null, queued: [] };
      client.data = side;
      // the upstream side keeps its own read buffer
      Bun.connect<Side>({ hostname: "127.0.0.1", port: upPort, data: { buf: "", client, up: null, queued: [] }, socket: {
        ...upstreamSocket,
        open(up) {
          side.up = up;
          for (const q of side.queued) up.write(q);
          side.queued.length = 0;
        },
      } }).catch(() => client.end());
    },
    data(client, bytes) {
      const s = client.data;
      s.buf += latin1.decode(bytes);
      for (let msg = take(s); msg; msg = take(s)) {
        const sp = msg.head.indexOf(" ");
        const method = msg.head.slice(0, sp);
        const path = msg.head.slice(sp + 1, msg.head.indexOf(" ", sp + 1));
        const body = msg.body ? JSON.stringify(JSON.parse(msg.body)) : "";
        const req = `${method} ${path} HTTP/1.1\r\nhost: ${HOST}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
        if (s.up) s.up.write(req);
        else s.queued.push(req);
      }
    },
    close: (client) => void client.data.up?.end(),
    error() {},
  },
});
console.log(`listening ${listenPort}`);

export {};
