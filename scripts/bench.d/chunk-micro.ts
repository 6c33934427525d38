// In-process micro benchmark of the router's per-chunk path of a stream: the Hono app driven with app.fetch
// (no HTTP server), its openai_compatible provider answered through the router's own socket client (http1.ts)
// over an in-memory transport, so each SSE chunk goes through the HTTP/1.1 parser, the SSE reader, the
// adapter, the event pipe and the renderer as in the binary, without the kernel, TLS or Bun's native server.
//
//   bun scripts/bench.d/chunk-micro.ts [--streams 500] [--chunks 200] [--rounds 7]
//
// Each round opens --streams streams, then feeds each a chunk in turn (one chunk = one upstream read, chunked
// encoding, the realistic upstream's event) and reads it from every client body, --chunks times.
// Prints the CPU time of this process per chunk (user + system) for each round, after three warm-up rounds, and
// the median. Runs under Bun and Deno (deno run -A scripts/bench.d/chunk-micro.ts).
import process from "node:process";
import { parseConfig } from "../../src/config/load.ts";
import { createApp } from "../../src/http/app.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { Observability } from "../../src/observability/observability.ts";
import { buildRouter, createRoutingState } from "../../src/server.ts";
import { type Conn, socketUpstreamFetch, type Transport } from "../../src/runtime/http1.ts";

const g = globalThis as any;
const argv: string[] = g.Bun ? g.Bun.argv.slice(2) : g.Deno.args;
const opt = (name: string, def: string) => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : def;
};
const STREAMS = Number(opt("--streams", "500"));
const CHUNKS = Number(opt("--chunks", "200"));
const ROUNDS = Number(opt("--rounds", "7"));
const enc = new TextEncoder();

const HEAD = `{"id":"chatcmpl-real","object":"chat.completion.chunk","created":1700000000,"model":"real","choices":`;
function event(i: number, n: number): string {
  const last = i === n - 1;
  const usage = last ? `,"usage":{"prompt_tokens":9,"completion_tokens":${n},"total_tokens":${9 + n}}` : "";
  return `data: ${HEAD}[{"index":0,"delta":{"content":${JSON.stringify(i === 0 ? "Hello" : ` w${i}`)}},"finish_reason":${last ? '"stop"' : "null"}}]${usage},"ts":${(1.7e12 + i).toFixed(3)}}\n\n`;
}
/** one chunk of a chunked body, as its own upstream read (a fresh buffer, as a socket gives) */
const chunked = (s: string) => {
  const b = enc.encode(s);
  return enc.encode(`${b.length.toString(16)}\r\n${s}\r\n`);
};
const RESPONSE_HEAD = enc.encode("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n");

/** An upstream connection in memory: the request written to it opens a stream the bench then feeds. */
class MemTransport implements Transport {
  flushed = true;
  constructor(readonly conn: Conn) {}
  write(): void {
    opened.push(this.conn);
    queueMicrotask(() => this.conn.data(RESPONSE_HEAD.slice()));
  }
  pause(): void {}
  resume(): void {}
  close(): void {
    queueMicrotask(() => this.conn.closed());
  }
  idle(): void {}
}
let opened: Conn[] = [];
const send = socketUpstreamFetch({}, async (_e, conn) => new MemTransport(conn), { tls: false }, () => Promise.reject(new Error("no fetch")));

const config = parseConfig(`
providers: [{ name: real, type: openai_compatible, endpoint: "http://upstream.invalid/v1", api_key: sk-up, default_model: real, models: [real] }]
routing: { stream_idle_timeout_seconds: 600 }
auth: { enabled: false }
rate_limit: { enabled: false }
idempotency: { enabled: false }
logging: { level: warn }
`, {});
const observability = new Observability({ version: "micro", runtime: g.Bun ? "bun" : "deno", logger: createLogger(() => {}, "warn", "json") });
const router = buildRouter(config, observability.hooksFor(config), { ...createRoutingState(config), upstreamFetch: send });
const app = createApp({ router: () => router, observability });
const BODY = JSON.stringify({ model: "real", messages: [{ role: "user", content: "Say hello" }], stream: true });

async function round(): Promise<{ us: number; chunks: number }> {
  opened = [];
  const pending = Array.from({ length: STREAMS }, () =>
    app.fetch(new Request("http://127.0.0.1/v1/chat/completions", { method: "POST", body: BODY, headers: { "content-type": "application/json", "content-length": String(BODY.length) } }), { remoteAddr: "127.0.0.1" }));
  // the first chunk commits each stream (the router reads ahead to it before answering)
  await new Promise((r) => setTimeout(r, 10));
  if (opened.length !== STREAMS) throw new Error(`${opened.length} of ${STREAMS} upstream requests`);
  const conns = opened;
  for (const c of conns) c.data(chunked(event(0, CHUNKS)));
  const responses = await Promise.all(pending);
  const readers = responses.map((r) => {
    if (r.status !== 200) throw new Error(`status ${r.status}`);
    return r.body!.getReader();
  });
  for (const rd of readers) await rd.read();
  const reads = Array.from({ length: CHUNKS }, (_, i) => chunked(event(i, CHUNKS)));
  const c0 = process.cpuUsage();
  let chunks = 0;
  for (let i = 1; i < CHUNKS; i++) {
    const got = readers.map((rd) => rd.read());
    for (const c of conns) c.data(reads[i].slice());
    for (const p of got) {
      const r = await p;
      if (r.done) throw new Error("stream ended early");
      chunks++;
    }
  }
  const c = process.cpuUsage(c0);
  for (const c of conns) c.data(chunked("data: [DONE]\n\n"));
  for (const c of conns) c.data(enc.encode("0\r\n\r\n"));
  for (const rd of readers) while (!(await rd.read()).done);
  return { us: (c.user + c.system) / chunks, chunks };
}

for (let w = 0; w < 3; w++) await round(); // the JIT settles over the first rounds
const figures: number[] = [];
for (let r = 0; r < ROUNDS; r++) figures.push((await round()).us);
const med = [...figures].sort((a, b) => a - b)[Math.floor(figures.length / 2)];
console.log(`${g.Bun ? "bun" : "deno"}: ${STREAMS} streams x ${CHUNKS} chunks, CPU µs/chunk median ${med.toFixed(2)}  rounds: ${figures.map((f) => f.toFixed(2)).join(" ")}`);
process.exit(0);
