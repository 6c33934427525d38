// Fast fake OpenAI-compatible upstream for the benchmark (Bun.serve, one process, 127.0.0.1).
//   POST /v1/chat/completions  (and /v1/completions, answered with the same chat shape)
//   GET  /v1/models, GET /health
// The request's model picks the behaviour, so the same upstream serves every leg (direct, router,
// Portkey) and the router passes the model through from its `models` list:
//   any model, stream false   -> one constant chat.completion (precomputed bytes)
//   "bench",  stream true     -> 20 content chunks + a finish chunk, written back to back, then [DONE]
//   "bench-paced", stream     -> the same chunks, one every PACE_MS (default 2 ms); each chunk carries
//                                "ts": the upstream's wall clock in ms (float) when it was written, so a
//                                client can measure per-chunk transit delay and spot batching
//   "bench-hold", stream      -> first chunk at once, the rest spread over HOLD_MS (default 8000 ms): an
//                                open, mostly idle stream (for the 1,000-open-streams memory test)
// stream_options.include_usage adds the usage chunk before [DONE], as OpenAI does.
// Usage: bun scripts/bench.d/upstream.ts [--port N]   (prints `listening <port>` once ready)

const args = Bun.argv.slice(2);
const portArg = args.indexOf("--port");
const port = portArg >= 0 ? Number(args[portArg + 1]) : 0;
const PACE_MS = Number(process.env.PACE_MS ?? 2);
const HOLD_MS = Number(process.env.HOLD_MS ?? 8000);
const CHUNKS = 20;

const enc = new TextEncoder();
const wall = () => performance.timeOrigin + performance.now();

const REPLY_TOKENS = Array.from({ length: CHUNKS }, (_, i) => (i === 0 ? "Hello" : ` w${i}`));
const REPLY = REPLY_TOKENS.join("");
const USAGE = { prompt_tokens: 9, completion_tokens: CHUNKS, total_tokens: 9 + CHUNKS };

const JSON_BODY = enc.encode(JSON.stringify({
  id: "chatcmpl-bench",
  object: "chat.completion",
  created: 1700000000,
  model: "bench",
  system_fingerprint: "fp_bench",
  choices: [{ index: 0, message: { role: "assistant", content: REPLY, refusal: null }, logprobs: null, finish_reason: "stop" }],
  usage: USAGE,
}));

const HEAD = `{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench","system_fingerprint":"fp_bench","choices":`;
function chunkText(i: number, ts?: number): string {
  // i in [0, CHUNKS): content; i === CHUNKS: finish chunk; i === CHUNKS + 1: usage chunk
  const tail = ts === undefined ? "}" : `,"ts":${ts.toFixed(3)}}`;
  let choices: string;
  if (i < CHUNKS) {
    const delta = i === 0 ? `{"role":"assistant","content":${JSON.stringify(REPLY_TOKENS[i])}}` : `{"content":${JSON.stringify(REPLY_TOKENS[i])}}`;
    choices = `[{"index":0,"delta":${delta},"logprobs":null,"finish_reason":null}]`;
  } else if (i === CHUNKS) {
    choices = `[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]`;
  } else {
    return `data: ${HEAD}[],"usage":${JSON.stringify(USAGE)}${tail}\n\n`;
  }
  return `data: ${HEAD}${choices}${tail}\n\n`;
}
// the fast stream's bytes, one Uint8Array per event (written as separate writes)
const FAST = Array.from({ length: CHUNKS + 1 }, (_, i) => enc.encode(chunkText(i)));
const FAST_USAGE = enc.encode(chunkText(CHUNKS + 1));
const DONE = enc.encode("data: [DONE]\n\n");

const SSE_HEADERS = { "content-type": "text/event-stream", "cache-control": "no-cache" };
const JSON_HEADERS = { "content-type": "application/json" };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function stream(mode: "fast" | "paced" | "hold", usage: boolean): Response {
  const gap = mode === "paced" ? PACE_MS : mode === "hold" ? HOLD_MS / CHUNKS : 0;
  const body = new ReadableStream({
    type: "direct",
    async pull(controller: ReadableStreamDirectController) {
      try {
        if (mode === "fast") {
          for (const c of FAST) controller.write(c);
          if (usage) controller.write(FAST_USAGE);
          controller.write(DONE);
        } else {
          for (let i = 0; i <= CHUNKS; i++) {
            if (i > 0) await sleep(gap);
            controller.write(chunkText(i, wall()));
            controller.flush();
          }
          if (usage) controller.write(chunkText(CHUNKS + 1, wall()));
          controller.write(DONE);
        }
        controller.close();
      } catch {
        /* client went away */
      }
    },
  } as unknown as UnderlyingSource);
  return new Response(body, { headers: SSE_HEADERS });
}

const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  idleTimeout: 0,
  async fetch(req) {
    const url = req.url;
    const path = url.slice(url.indexOf("/", 8));
    if (req.method === "POST" && (path === "/v1/chat/completions" || path === "/v1/completions")) {
      let body: any;
      try {
        body = await req.json();
      } catch {
        return Response.json({ error: { message: "invalid JSON", type: "invalid_request_error" } }, { status: 400 });
      }
      if (body?.stream === true) {
        const model = String(body.model ?? "");
        const mode = model.includes("hold") ? "hold" : model.includes("paced") ? "paced" : "fast";
        return stream(mode, body.stream_options?.include_usage === true);
      }
      return new Response(JSON_BODY, { headers: JSON_HEADERS });
    }
    if (path === "/v1/models") return Response.json({ object: "list", data: [{ id: "bench", object: "model", created: 0, owned_by: "bench" }] });
    if (path === "/health") return new Response("ok");
    return Response.json({ error: { message: "not found" } }, { status: 404 });
  },
});
console.log(`listening ${server.port}`);
process.on("SIGTERM", () => {
  server.stop(true);
  process.exit(0);
});
