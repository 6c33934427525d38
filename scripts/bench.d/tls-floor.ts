// Bun's own CPU per streamed chunk read over TLS against plain TCP, outside the router (docs/decisions/0027, "Bun's
// floor"): a process holds N Bun.connect connections to the realistic section's paced upstream
// (upstream-tls.ts, with and without TLS), each in a loop on a stream, and reports its own CPU time per chunk.
// Every variant runs in a fresh process of its own, measured after a warm-up; the variants run in turn, --rounds
// times.
// Usage: bun scripts/bench.d/tls-floor.ts [--streams 500] [--secs 10] [--rounds 2] [--variants a,b,...]
// Variants: plain, tls (uint8array reads, the handler only counts), tls-buffer, tls-arraybuffer, tls-parse (the
// handler scans the bytes for line ends, as the router's parser), tls-sub and tls-arraybuffer-view (one subarray per
// read, kept a while, as the router's parser hands the chunk's data on; the second from arraybuffer reads),
// tls-roots (tls.ca is the default store plus the CA file, as the router passes it), plain-echo and tls-echo (each
// read is also written to a plain-http sink socket, as the router writes each chunk on to its client).
import { getCACertificates } from "node:tls";
import { join } from "node:path";
import { makeTestCa } from "../../tests/helpers/tls.ts";

const args = Bun.argv.slice(2);
const opt = (name: string, def: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : def);

if (args[0] === "--client") await client(JSON.parse(args[1]));
else await main();

async function main() {
  const streams = Number(opt("--streams", "500"));
  const secs = Number(opt("--secs", "10"));
  const rounds = Number(opt("--rounds", "2"));
  const variants = opt("--variants", "plain,tls,tls-sub,tls-roots,plain-echo,tls-echo").split(",");
  const ca = makeTestCa("tls-floor CA");
  const here = import.meta.dir;
  const start = async (tls: boolean) => {
    const p = Bun.spawn([process.execPath, join(here, "upstream-tls.ts"), "--port", "0", ...(tls ? ["--key", join(ca.dir, "leaf.key"), "--cert", join(ca.dir, "leaf.pem")] : [])], {
      stdout: "pipe", stderr: "inherit", env: { ...process.env, TOKENS: "200" },
    });
    const reader = p.stdout.getReader();
    let out = "";
    while (!out.includes("\n")) out += new TextDecoder().decode((await reader.read()).value);
    return { p, port: Number(/listening (\d+)/.exec(out)![1]) };
  };
  const ups = { tls: await start(true), plain: await start(false) };
  const sink = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }); // the echo variants' client side
  try {
    console.log(`${streams} streams, ${secs} s per run, load average ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}`);
    console.log("variant           µs/chunk  reads/chunk  chunks");
    for (let r = 0; r < rounds; r++) {
      for (const v of variants) {
        const tls = v.startsWith("tls");
        const cfg = { variant: v, port: (tls ? ups.tls : ups.plain).port, tls, caFile: ca.caFile, streams, secs, sink: sink.port };
        const c = Bun.spawn([process.execPath, import.meta.path, "--client", JSON.stringify(cfg)], { stdout: "pipe", stderr: "inherit" });
        const res = JSON.parse(await new Response(c.stdout).text());
        console.log(`${v.padEnd(16)} ${res.us_per_chunk.toFixed(2).padStart(9)} ${res.reads_per_chunk.toFixed(2).padStart(12)} ${String(res.chunks).padStart(7)}`);
      }
    }
  } finally {
    ups.tls.p.kill();
    ups.plain.p.kill();
    sink.stop(true);
  }
}

interface ClientCfg { variant: string; port: number; tls: boolean; caFile: string; streams: number; secs: number; sink: number }

async function client(cfg: ClientCfg) {
  const v = cfg.variant;
  const binaryType = v.endsWith("-buffer") ? "buffer" : v.includes("-arraybuffer") ? "arraybuffer" : "uint8array";
  const caPem = await Bun.file(cfg.caFile).text();
  const body = JSON.stringify({ model: "real", stream: true, messages: [{ role: "user", content: "hi" }] });
  const request = new TextEncoder().encode(`POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
  const echo = v.endsWith("-echo");
  const sub = v.endsWith("-sub") || v === "tls-arraybuffer-view";
  const kept: Uint8Array[] = []; // the -sub variants keep their views a while, as the router's stream queue does
  let reads = 0, chunks = 0;
  // the end of one chunk of the chunked body: "\n\n" of the SSE event, then the CRLF after the chunk's data
  const endsChunk = (b: Uint8Array) => b[b.length - 1] === 10 && b[b.length - 3] === 10 && b[b.length - 4] === 10;
  const isLast = (b: Uint8Array) => b[b.length - 5] === 48 && b[b.length - 4] === 13; // "0\r\n\r\n"
  const view = (b: any): Uint8Array => (b instanceof ArrayBuffer ? new Uint8Array(b) : b);
  const handlers = {
    binaryType,
    data(s: any, raw: any) {
      reads++;
      const b = view(raw);
      if (v === "tls-parse") for (let i = b.indexOf(10); i >= 0; i = b.indexOf(10, i + 1));
      if (sub) kept[reads & 63] = b.subarray(4, b.length - 2);
      if (endsChunk(b)) chunks++;
      if (echo) s.data.sink.write(b);
      if (isLast(b)) s.write(request); // the response is complete: the next stream on the same connection
    },
    open(s: any) {
      if (!cfg.tls) s.write(request);
    },
    handshake(s: any, ok: boolean) {
      if (!ok) throw new Error("handshake failed");
      s.write(request);
    },
    close() {},
  };
  const tls = cfg.tls ? { serverName: "127.0.0.1", ca: v === "tls-roots" ? [...getCACertificates("default"), caPem] : caPem } : undefined;
  for (let i = 0; i < cfg.streams; i++) {
    const data: { sink?: Bun.Socket } = {};
    if (echo) {
      data.sink = await Bun.connect({ hostname: "127.0.0.1", port: cfg.sink, socket: { data() {} } });
      data.sink.setNoDelay(true);
    }
    const s = await Bun.connect({ hostname: "127.0.0.1", port: cfg.port, tls, data, socket: handlers as any });
    s.setNoDelay(true);
    await Bun.sleep(1000 / cfg.streams); // started spread over a second, as the bench's clients
  }
  await Bun.sleep(2000); // warm-up: every stream past its first token
  const c0 = process.cpuUsage(), r0 = reads, n0 = chunks;
  await Bun.sleep(cfg.secs * 1000);
  const c = process.cpuUsage(c0), dr = reads - r0, dn = chunks - n0;
  console.log(JSON.stringify({ us_per_chunk: (c.user + c.system) / dn, reads_per_chunk: dr / dn, chunks: dn }));
  process.exit(0);
}
