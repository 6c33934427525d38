// The realistic section's fake upstream (docs/benchmarks.md, "Realistic workload"): HTTPS (Bun.serve) with a
// certificate from a CA the bench makes at run time, paced like a model.
//   POST /v1/chat/completions, model "real", stream  -> first token after FIRST_MS (jittered +-20%), then TOKENS
//        content chunks at RATE per second (the last with finish_reason "stop" and the usage), then [DONE]. Each
//        chunk carries "ts", the upstream's wall clock in ms when it was written (per-chunk transit).
//   model "slow", stream                              -> one chunk every SLOW_MS, SLOW_CHUNKS of them: an open,
//        mostly idle stream (the open-streams memory test)
//   stream false                                      -> one chat.completion after FIRST_MS
//   GET /stats -> {"tls_connections": N, "open_streams": N}: connections told apart by the client's address and
//        port (Bun.serve reports no connection events), so a port reused within the run counts once
//   GET /health -> ok
// Usage: bun upstream-tls.ts --port N --key FILE --cert FILE   (prints `listening <port>` once ready; without
// --key and --cert it serves plain http)
// Environment: FIRST_MS (300), TOKENS (200), RATE (40), SLOW_MS (2000), SLOW_CHUNKS (10).
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
function chunk(i: number, n: number, rx?: number): string {
  const content = JSON.stringify(i === 0 ? "Hello" : ` w${i}`);
  const last = i === n - 1;
  const usage = last ? `,"usage":{"prompt_tokens":9,"completion_tokens":${n},"total_tokens":${9 + n}}` : "";
  // the first chunk also says when the request arrived ("rx"): the client subtracts the upstream's own wait (ts - rx)
  // from its TTFB, so the jitter does not blur the overhead
  const at = rx === undefined ? "" : `,"rx":${rx.toFixed(3)}`;
  return `data: ${HEAD}[{"index":0,"delta":{"content":${content}},"finish_reason":${last ? '"stop"' : "null"}}]${usage}${at},"ts":${wall().toFixed(3)}}\n\n`;
}
const JSON_BODY = JSON.stringify({
  id: "chatcmpl-real", object: "chat.completion", created: 1700000000, model: "real",
  choices: [{ index: 0, message: { role: "assistant", content: "Hello w1 w2" }, finish_reason: "stop" }],
  usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 },
});

const clients = new Set<string>(); // address:port of every connection seen
let open = 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function stream(slow: boolean, jitter: number, rx: number): Response {
  const n = slow ? SLOW_CHUNKS : TOKENS;
  const gap = slow ? SLOW_MS : 1000 / RATE;
  let timer: ReturnType<typeof setInterval> | undefined;
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    clearInterval(timer);
    open--;
  };
  const body = new ReadableStream({
    async start(controller) {
      open++;
      if (!slow) await sleep(jitter);
      let i = 0;
      const write = () => {
        try {
          controller.enqueue(chunk(i, n, i === 0 ? rx : undefined));
          if (++i < n) return;
          controller.enqueue("data: [DONE]\n\n");
          controller.close();
        } catch { /* the client went away */ }
        finish();
      };
      // the first token after the jittered wait (slow streams: at once), then one per gap on the stream's own phase
      write();
      if (i < n) timer = setInterval(write, gap);
    },
    cancel: finish,
  });
  return new Response(body.pipeThrough(new TextEncoderStream()), { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } });
}

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(arg("--port") ?? 0),
  idleTimeout: 0,
  // without --key: plain http, for tls-floor.ts's comparison
  tls: args.includes("--key") ? { key: readFileSync(arg("--key"), "utf8"), cert: readFileSync(arg("--cert"), "utf8") } : undefined,
  async fetch(req, srv) {
    const rx = wall();
    const ip = srv.requestIP(req);
    if (ip) clients.add(`${ip.address}:${ip.port}`);
    if (req.method === "GET") {
      return new URL(req.url).pathname === "/stats" ? Response.json({ tls_connections: clients.size, open_streams: open }) : new Response("ok");
    }
    let body: any;
    try {
      body = await req.json();
    } catch {
      return Response.json({ error: { message: "invalid JSON" } }, { status: 400 });
    }
    const jitter = FIRST_MS * (0.8 + 0.4 * Math.random());
    if (body?.stream === true) return stream(body.model === "slow", jitter, rx);
    await sleep(jitter);
    return new Response(JSON_BODY, { headers: { "content-type": "application/json" } });
  },
});
console.log(`listening ${server.port}`);
process.on("SIGTERM", () => process.exit(0));
