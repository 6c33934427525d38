// A floor for a gateway that reads its streams in JavaScript (docs/benchmarks.md, "Realistic workload"): the
// minimal Bun proxy of fetch-proxy.ts, except that each chunk of the answer passes through JavaScript, read from
// fetch's body and enqueued into a ReadableStream of its own, as a gateway that looks at the chunks (usage, errors,
// failover) must. No parsing, no other work. Usage: bun js-pipe-proxy.ts LISTEN_PORT UPSTREAM_PORT|UPSTREAM_URL
const [listenArg, upArg] = Bun.argv.slice(2);
const upstream = upArg.startsWith("http") ? upArg : `http://127.0.0.1:${upArg}`;

async function handle(req: Request): Promise<Response> {
  const path = req.url.slice(req.url.indexOf("/", 8));
  const init: RequestInit = req.method === "POST"
    ? { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(await req.json()) }
    : {};
  const r = await fetch(upstream + path, init);
  const reader = r.body!.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      const { done, value } = await reader.read();
      if (done) c.close();
      else c.enqueue(value);
    },
    cancel: (why) => reader.cancel(why),
  }, { highWaterMark: 0 });
  return new Response(body, { status: r.status, headers: { "content-type": r.headers.get("content-type") ?? "application/json" } });
}

Bun.serve({ hostname: "127.0.0.1", port: Number(listenArg), fetch: handle });
console.log(`listening ${listenArg}`);
