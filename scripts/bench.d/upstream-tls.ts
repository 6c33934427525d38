// The realistic section's fake upstream (docs/benchmarks.md, "Realistic workload"): HTTPS with a certificate from a
// CA the bench makes at run time, paced like a model. node:https under Bun, for its connection events: GET /stats
// tells how many TLS connections clients opened.
//   POST /v1/chat/completions, model "real", stream  -> first token after FIRST_MS (jittered +-20%), then TOKENS
//        content chunks at RATE per second (the last with finish_reason "stop" and the usage), then [DONE]. Each
//        chunk carries "ts", the upstream's wall clock in ms when it was written (per-chunk transit).
//   model "slow", stream                              -> one chunk every SLOW_MS, SLOW_CHUNKS of them: an open,
//        mostly idle stream (the open-streams memory test)
//   stream false                                      -> one chat.completion after FIRST_MS
//   GET /stats -> {"tls_connections": N, "open_streams": N}; GET /health -> ok
// Usage: bun upstream-tls.ts --port N --key FILE --cert FILE   (prints `listening <port>` once ready)
// Environment: FIRST_MS (300), TOKENS (200), RATE (40), SLOW_MS (2000), SLOW_CHUNKS (10).
import https from "node:https";
import { readFileSync } from "node:fs";

const args = Bun.argv.slice(2);
const arg = (name: string) => args[args.indexOf(name) + 1];
const FIRST_MS = Number(process.env.FIRST_MS ?? 300);
const TOKENS = Number(process.env.TOKENS ?? 200);
const RATE = Number(process.env.RATE ?? 40);
const SLOW_MS = Number(process.env.SLOW_MS ?? 2000);
const SLOW_CHUNKS = Number(process.env.SLOW_CHUNKS ?? 10);
const wall = () => performance.timeOrigin + performance.now();

const HEAD = `{"id":"chatcmpl-real","object":"chat.completion.chunk","created":1700000000,"model":"real","choices":`;
/** Content chunk i of n ("Hello", " w1", " w2", ...); the last one finishes the answer and carries the usage. */
function chunk(i: number, n: number): string {
  const content = JSON.stringify(i === 0 ? "Hello" : ` w${i}`);
  const last = i === n - 1;
  const usage = last ? `,"usage":{"prompt_tokens":9,"completion_tokens":${n},"total_tokens":${9 + n}}` : "";
  return `data: ${HEAD}[{"index":0,"delta":{"content":${content}},"finish_reason":${last ? '"stop"' : "null"}}]${usage},"ts":${wall().toFixed(3)}}\n\n`;
}
const JSON_BODY = JSON.stringify({
  id: "chatcmpl-real", object: "chat.completion", created: 1700000000, model: "real",
  choices: [{ index: 0, message: { role: "assistant", content: "Hello w1 w2" }, finish_reason: "stop" }],
  usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 },
});

let tlsConnections = 0, open = 0;
const server = https.createServer({ key: readFileSync(arg("--key")), cert: readFileSync(arg("--cert")) }, (req, res) => {
  if (req.method === "GET") {
    if (req.url === "/stats") res.end(JSON.stringify({ tls_connections: tlsConnections, open_streams: open }));
    else res.end("ok");
    return;
  }
  const parts: Buffer[] = [];
  req.on("data", (c: Buffer) => void parts.push(c));
  req.on("end", () => {
    let body: any;
    try {
      body = JSON.parse(Buffer.concat(parts).toString("utf8"));
    } catch {
      res.writeHead(400, { "content-type": "application/json" }).end('{"error":{"message":"invalid JSON"}}');
      return;
    }
    const jitter = FIRST_MS * (0.8 + 0.4 * Math.random());
    if (body?.stream !== true) {
      setTimeout(() => res.writeHead(200, { "content-type": "application/json" }).end(JSON_BODY), jitter);
      return;
    }
    const slow = body.model === "slow";
    const n = slow ? SLOW_CHUNKS : TOKENS;
    const gap = slow ? SLOW_MS : 1000 / RATE;
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    res.flushHeaders();
    open++;
    let i = 0, timer: ReturnType<typeof setInterval> | undefined;
    const done = () => {
      clearInterval(timer);
      open--;
    };
    res.on("close", () => i < n && done());
    const write = () => {
      if (res.destroyed) return;
      res.write(chunk(i, n));
      if (++i < n) return;
      res.end("data: [DONE]\n\n");
      done();
    };
    // the first token after the jittered wait (slow streams: at once), then one per gap on the stream's own phase
    setTimeout(() => {
      write();
      if (i < n) timer = setInterval(write, gap);
    }, slow ? 0 : jitter);
  });
});
server.on("secureConnection", () => void tlsConnections++);
server.listen(Number(arg("--port") ?? 0), "127.0.0.1", () => console.log(`listening ${(server.address() as { port: number }).port}`));
process.on("SIGTERM", () => process.exit(0));
