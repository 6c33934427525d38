// Throughput ceiling reference (docs/benchmarks.md, "Throughput ceilings"): the least a gateway on the runtime's
// own HTTP server and fetch can do. It JSON.parses the request body and serialises it again (a gateway has to read
// "model"), sends it upstream with fetch and answers with the upstream's body. Runs on Bun (Bun.serve) and on Deno
// (Deno.serve). Usage: bun|deno run -A fetch-proxy.ts LISTEN_PORT UPSTREAM_PORT|UPSTREAM_URL (the realistic section
// passes the TLS upstream's https:// URL; the runtime trusts its CA through NODE_EXTRA_CA_CERTS) [--through-js]
// --through-js: each chunk of the answer passes through JavaScript, read from fetch's body and enqueued into a
// ReadableStream of its own, as a gateway that looks at its streams (usage, errors, failover) must at least do;
// without it the runtime pipes the upstream's body to the client natively.
declare const Deno: { serve(o: { hostname: string; port: number; onListen?: () => void }, h: (r: Request) => Promise<Response>): unknown; args: string[] };
const isBun = typeof Bun !== "undefined";
const [listenArg, upArg, mode] = isBun ? Bun.argv.slice(2) : Deno.args;
const throughJs = mode === "--through-js";
const listenPort = Number(listenArg);
const upstream = upArg.startsWith("http") ? upArg : `http://127.0.0.1:${upArg}`;

async function handle(req: Request): Promise<Response> {
  const path = req.url.slice(req.url.indexOf("/", 8));
  const init: RequestInit = req.method === "POST"
    ? { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(await req.json()) }
    : {};
  const r = await fetch(upstream + path, init);
  return new Response(throughJs ? viaJs(r.body!) : r.body, { status: r.status, headers: { "content-type": r.headers.get("content-type") ?? "application/json" } });
}

function viaJs(upstreamBody: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  const reader = upstreamBody.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      const { done, value } = await reader.read();
      if (done) c.close();
      else c.enqueue(value);
    },
    cancel: (why) => reader.cancel(why),
  }, { highWaterMark: 0 });
}

if (isBun) Bun.serve({ hostname: "127.0.0.1", port: listenPort, fetch: handle });
else Deno.serve({ hostname: "127.0.0.1", port: listenPort, onListen() {} }, handle);
console.log(`listening ${listenPort}`);

export {};
