// https upstreams signed by a private CA (providers[].tls.ca_file): trusted for the provider that names the CA,
// streamed and not, over reused connections; a provider without it fails over with the certificate problem as
// the reason; a missing or wrong file is a config error naming the key; nothing turns verification off, not
// even NODE_TLS_REJECT_UNAUTHORIZED=0. The router runs as a process from source under the runtime running the
// tests (tests/binary.test.ts: the binary), and in process with the entrypoint's upstream client (on Bun, https
// streams go over its own sockets: the CA, the host name, keep-alive and a reset mid-stream over TLS).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startOpenAIFake } from "./fakes/openai.ts";
import type { FakeServer } from "./fakes/common.ts";
import net, { type AddressInfo, type Socket } from "node:net";
import { postJson, readSse, runtime, startRouter, type RunningRouter } from "./helpers/router.ts";
import { MAX_CONNECTING } from "../src/runtime/http1.ts";
import { rmTemp, run, sourceCommand, sseText, startProcess, tempDir, writeFile, type RouterProcess } from "./helpers/process.ts";
import { makeTestCa, type TestCa } from "./helpers/tls.ts";

const chat = (extra: Record<string, unknown> = {}) => ({ model: "m", messages: [{ role: "user", content: "hi" }], ...extra });
const CERT_PROBLEM = /certificate|UnknownIssuer/i;
const contentOf = (events: any[]) => events.filter((e) => e !== "[DONE]").map((e) => e.choices?.[0]?.delta?.content ?? "").join("");
/** The request log lines of an in-process router (msg "request"), parsed. */
const requestLines = (r: RunningRouter) => r.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === "request");

describe("https upstreams and tls.ca_file", () => {
  let ca: TestCa, up: FakeServer, dir: string, r: RouterProcess;
  before(async () => {
    ca = makeTestCa();
    up = await startOpenAIFake({ reply: "answer over TLS", chunks: 4, tls: ca });
    dir = tempDir();
    writeFile(join(dir, "config.yaml"), `server: { host: 127.0.0.1, port: 0 }
providers:
  - { name: trusted, type: openai_compatible, endpoint: "${up.url}/v1", default_model: m, tls: { ca_file: "${ca.caFile}" } }
  - { name: untrusted, type: openai_compatible, endpoint: "${up.url}/v1", default_model: m }
  - { name: backup, type: mock, reply: "answer from the backup mock" }
routing: { fallback_chain: [trusted, backup] }
`);
    r = await startProcess(["--config", join(dir, "config.yaml")], { cwd: dir });
  });
  after(async () => {
    await r?.stop();
    await up?.stop();
    if (dir) rmTemp(dir);
    if (ca) rmTemp(ca.dir);
  });

  it("answers through the provider that trusts the CA, streamed and not, reusing its connection", async () => {
    up.tlsConnections = 0;
    for (let i = 0; i < 3; i++) {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat());
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-router-provider"), "trusted");
      assert.equal((await res.json()).choices[0].message.content, "answer over TLS");
    }
    const s = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(s.status, 200);
    assert.equal(s.headers.get("x-router-provider"), "trusted");
    assert.deepEqual(sseText(await s.text()), { text: "answer over TLS", done: true });
    // sequential requests share a kept-alive connection (the stream may need one more on some clients)
    assert.ok(up.tlsConnections >= 1 && up.tlsConnections <= 2, `TLS connections opened: ${up.tlsConnections}`);
  });

  it("a provider without the CA fails over, and the reason names the certificate problem", async () => {
    for (const stream of [false, true]) {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({ model: "untrusted/m", stream }));
      assert.equal(res.status, 502, `stream ${stream}`);
      const body = await res.json();
      assert.equal(body.error.code, "all_providers_failed");
      assert.equal(body.error.attempts[0].provider, "untrusted");
      assert.match(body.error.attempts[0].reason, CERT_PROBLEM);
    }
  });

  it("a failed certificate check moves the request on to the next provider in the chain", async () => {
    writeFile(join(dir, "failover.yaml"), `server: { host: 127.0.0.1, port: 0 }
providers:
  - { name: untrusted, type: openai_compatible, endpoint: "${up.url}/v1", default_model: m }
  - { name: backup, type: mock, reply: "answer from the backup mock" }
`);
    const f = await startProcess(["--config", join(dir, "failover.yaml")], { cwd: dir });
    try {
      const res = await postJson(`${f.url}/v1/chat/completions`, chat());
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-router-provider"), "backup");
      assert.equal(res.headers.get("x-router-attempts"), "2");
      await res.arrayBuffer();
      const line = f.logs().find((l) => Array.isArray(l.attempts) && l.attempts.length === 2);
      assert.ok(line, f.output());
      assert.match(JSON.stringify(line.attempts[0]), CERT_PROBLEM);
    } finally {
      await f.stop();
    }
  });
});

describe("NODE_TLS_REJECT_UNAUTHORIZED in the router's environment", () => {
  it("does not turn verification off: a provider without the CA still fails on the certificate, streamed and not", async () => {
    const ca = makeTestCa();
    const up = await startOpenAIFake({ reply: "must not arrive", tls: ca });
    const dir = tempDir();
    let r: RouterProcess | undefined;
    try {
      writeFile(join(dir, "config.yaml"), `server: { host: 127.0.0.1, port: 0 }
providers:
  - { name: untrusted, type: openai_compatible, endpoint: "${up.url}/v1", default_model: m }
`);
      r = await startProcess(["--config", join(dir, "config.yaml")], { cwd: dir, env: { NODE_TLS_REJECT_UNAUTHORIZED: "0" } });
      for (const stream of [false, true]) {
        const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream }));
        const body = await res.json();
        assert.equal(res.status, 502, `stream ${stream}: ${JSON.stringify(body)}`);
        assert.match(body.error.attempts[0].reason, CERT_PROBLEM, `stream ${stream}`);
      }
      assert.equal(up.requests.length, 0, "nothing reached the unverified upstream");
    } finally {
      await r?.stop();
      await up.stop();
      rmTemp(dir);
      rmTemp(ca.dir);
    }
  });
});

describe("https streams through the entrypoint's upstream client (in process)", () => {
  let ca: TestCa, other: TestCa, misnamed: TestCa, up: FakeServer, wrongName: FakeServer, r: RunningRouter;
  before(async () => {
    ca = makeTestCa();
    other = makeTestCa("another CA");
    misnamed = makeTestCa("a CA whose leaf names another host", "DNS:elsewhere.example");
    up = await startOpenAIFake({ reply: "answer over TLS", chunks: 4, tls: ca });
    wrongName = await startOpenAIFake({ reply: "must not arrive", tls: misnamed });
    r = await startRouter(`
providers:
  - { name: trusted, type: openai_compatible, endpoint: "${up.url}/v1", default_model: m, tls: { ca_file: "${ca.caFile}" } }
  - { name: untrusted, type: openai_compatible, endpoint: "${up.url}/v1", default_model: m }
  - { name: wrongca, type: openai_compatible, endpoint: "${up.url}/v1", default_model: m, tls: { ca_file: "${other.caFile}" } }
  - { name: wrongname, type: openai_compatible, endpoint: "${wrongName.url}/v1", default_model: m, tls: { ca_file: "${misnamed.caFile}" } }
  - { name: backup, type: mock, reply: "answer from the backup mock" }
routing: { fallback_chain: [trusted, backup] }
`);
  });
  after(async () => {
    await r?.stop();
    await up?.stop();
    await wrongName?.stop();
    for (const c of [ca, other, misnamed]) if (c) rmTemp(c.dir);
  });

  it("streams one after another with the provider's CA over one kept-alive TLS connection", async () => {
    up.tlsConnections = 0;
    for (let i = 0; i < 5; i++) {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-router-provider"), "trusted");
      assert.equal(contentOf(await readSse(res)), "answer over TLS");
    }
    assert.equal(up.tlsConnections, 1, "TLS connections opened");
  });

  it("without the CA, with another CA or with a certificate for another host, the attempt fails over naming the certificate", async () => {
    // trusted's verified connection is idle in the pool now: it must not carry another provider's request
    for (const name of ["untrusted", "wrongca", "wrongname"]) {
      for (const stream of [true, false]) {
        r.logs.length = 0;
        const res = await postJson(`${r.url}/v1/chat/completions`, chat({ model: `${name}/m`, stream }));
        const body = await res.json();
        assert.equal(res.status, 502, `${name}, stream ${stream}: ${JSON.stringify(body)}`);
        assert.equal(body.error.attempts.length, 1);
        assert.match(body.error.attempts[0].reason, CERT_PROBLEM, `${name}, stream ${stream}`);
      }
    }
    assert.equal(wrongName.requests.length, 0);
  });

  it("a connection reset mid-stream over TLS is one failed attempt, not a silent second request", async () => {
    let res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(contentOf(await readSse(res)), "answer over TLS"); // a kept-alive connection for the next one
    const before = up.requests.length;
    up.fault = { cutAfter: 3, chunkDelayMs: 30, times: 1 };
    r.logs.length = 0;
    res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-router-provider"), "trusted");
    const events = await readSse(res);
    assert.equal(events.at(-1).error?.type, "upstream_error", JSON.stringify(events.at(-1)));
    assert.match(events.at(-1).error.message, /^upstream stream broke: \S/);
    assert.equal(up.requests.length, before + 1, "the upstream saw the request once");
    let line: any;
    for (let i = 0; i < 50 && !(line = requestLines(r)[0]); i++) await new Promise((ok) => setTimeout(ok, 20));
    assert.equal(line?.attempts?.length, 1, JSON.stringify(line));
    // the next stream goes out on a new connection and answers
    res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(contentOf(await readSse(res)), "answer over TLS");
  });

  it("a burst of requests opens at most MAX_CONNECTING connections to one upstream at once, and reuses them", async () => {
    // In front of the TLS fake, a proxy that holds each new connection's first bytes for 300 ms: every TLS
    // handshake takes that long, and the proxy counts the connections inside that window.
    let opening = 0, maxOpening = 0, accepted = 0;
    const sockets = new Set<Socket>();
    const slow = net.createServer((c) => {
      sockets.add(c);
      accepted++;
      maxOpening = Math.max(maxOpening, ++opening);
      const held: Buffer[] = [];
      const hold = (b: Buffer) => void held.push(b);
      c.on("data", hold);
      c.on("error", () => {});
      setTimeout(() => {
        opening--;
        c.off("data", hold);
        const u = net.connect(Number(new URL(up.url).port), "127.0.0.1", () => {
          for (const b of held) u.write(b);
          c.pipe(u);
          u.pipe(c);
        });
        sockets.add(u);
        u.on("error", () => c.destroy());
        c.on("close", () => u.destroy());
        u.on("close", () => c.destroy());
      }, 300);
    });
    await new Promise<void>((ok) => slow.listen(0, "127.0.0.1", () => ok()));
    const burst = await startRouter(`
providers:
  - { name: slowtls, type: openai_compatible, endpoint: "https://localhost:${(slow.address() as AddressInfo).port}/v1", default_model: m, tls: { ca_file: "${ca.caFile}" } }
`);
    try {
      const answers = await Promise.all(Array.from({ length: 100 }, async () => {
        const res = await postJson(`${burst.url}/v1/chat/completions`, chat());
        return res.status === 200 ? (await res.json()).choices[0].message.content : `${res.status} ${await res.text()}`;
      }));
      assert.deepEqual(new Set(answers), new Set(["answer over TLS"]));
      // Bun's client opens https connections itself; Deno's https requests go through its fetch, unbounded
      if (runtime === "bun") {
        assert.ok(maxOpening <= MAX_CONNECTING, `${maxOpening} connections opening at once`);
        assert.ok(accepted < 100, `${accepted} connections for 100 requests: none was reused`);
      }
    } finally {
      await burst.stop();
      for (const c of sockets) c.destroy();
      await new Promise<void>((ok) => slow.close(() => ok()));
    }
  });

  it("an https upstream that never completes the handshake is given up at timeout_seconds, and the request fails over", async () => {
    const sockets = new Set<Socket>();
    const silent = net.createServer((c) => (sockets.add(c), c.on("error", () => {}))); // accepts, never answers
    await new Promise<void>((ok) => silent.listen(0, "127.0.0.1", () => ok()));
    const dark = await startRouter(`
providers:
  - { name: dark, type: openai_compatible, endpoint: "https://127.0.0.1:${(silent.address() as AddressInfo).port}/v1", default_model: m, timeout_seconds: 0.5, tls: { ca_file: "${ca.caFile}" } }
  - { name: backup, type: mock, reply: "answer from the backup mock" }
`);
    try {
      for (const stream of [true, false]) {
        const t0 = performance.now();
        const res = await postJson(`${dark.url}/v1/chat/completions`, chat({ stream }));
        assert.equal(res.status, 200, `stream ${stream}`);
        assert.equal(res.headers.get("x-router-provider"), "backup");
        await res.arrayBuffer();
        const took = performance.now() - t0;
        assert.ok(took >= 450 && took < 5000, `stream ${stream}: answered after ${Math.round(took)} ms (the 0.5 s timeout, then backup)`);
      }
    } finally {
      await dark.stop();
      for (const c of sockets) c.destroy();
      await new Promise<void>((ok) => silent.close(() => ok()));
    }
  });
});

describe("tls.ca_file in the config", () => {
  let dir: string;
  before(() => void (dir = tempDir()));
  after(() => rmTemp(dir));

  const check = async (tls: string) => {
    writeFile(join(dir, "config.yaml"), `providers:
  - { name: ok, type: mock }
  - { name: p, type: openai_compatible, endpoint: "https://127.0.0.1:1/v1", default_model: m, tls: ${tls} }
`);
    return run([...sourceCommand(), "check"], { cwd: dir });
  };

  it("a missing file is a config error naming providers[i].tls.ca_file", async () => {
    const c = await check(`{ ca_file: "${join(dir, "nope.pem")}" }`);
    assert.equal(c.code, 1);
    assert.match(c.stderr, /providers\[1\]\.tls\.ca_file: file not found: .*nope\.pem/);
  });

  it("a file without a PEM certificate is a config error", async () => {
    writeFile(join(dir, "empty.pem"), "not a certificate\n");
    const c = await check(`{ ca_file: "${join(dir, "empty.pem")}" }`);
    assert.equal(c.code, 1);
    assert.match(c.stderr, /providers\[1\]\.tls\.ca_file: no PEM certificate in/);
  });

  it("there is no key that turns verification off", async () => {
    for (const key of ["insecure: true", "verify: false", "reject_unauthorized: false"]) {
      const c = await check(`{ ${key} }`);
      assert.equal(c.code, 1, key);
      assert.match(c.stderr, /providers\[1\]\.tls\.\w+: unknown key/, key);
    }
  });
});
