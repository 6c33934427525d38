// https upstreams signed by a private CA (providers[].tls.ca_file): trusted for the provider that names the CA,
// streamed and not, over reused connections; a provider without it fails over with the certificate problem as
// the reason; a missing or wrong file is a config error naming the key; nothing turns verification off. The
// router runs as a process from source under the runtime running the tests (tests/binary.test.ts: the binary).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startOpenAIFake } from "./fakes/openai.ts";
import type { FakeServer } from "./fakes/common.ts";
import { postJson } from "./helpers/router.ts";
import { rmTemp, run, sourceCommand, sseText, startProcess, tempDir, writeFile, type RouterProcess } from "./helpers/process.ts";
import { makeTestCa, type TestCa } from "./helpers/tls.ts";

const chat = (extra: Record<string, unknown> = {}) => ({ model: "m", messages: [{ role: "user", content: "hi" }], ...extra });
const CERT_PROBLEM = /certificate|UnknownIssuer/i;

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
