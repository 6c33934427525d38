import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ROOT, run, runtime, sourceCommand, startProcess, tempDir as emptyDir, writeFile } from "./helpers/process.ts";

// The router's own entrypoint for the runtime running the tests: bun runs main.bun.ts, deno main.deno.ts.
const runCli = (args: string[], opts: { cwd?: string } = {}) => run([...sourceCommand(), ...args], { cwd: opts.cwd ?? ROOT });
const startServer = (args: string[], opts: { cwd: string; env?: Record<string, string> }) => startProcess(args, opts);
function tempDir(files: Record<string, string>): string {
  const dir = emptyDir();
  for (const [name, text] of Object.entries(files)) writeFile(join(dir, name), text);
  return dir;
}

const MOCK = `providers:\n  - { name: m, type: mock, default_model: mock-1, reply: "pong" }\n`;

describe("CLI", () => {
  it("--help prints usage and exits 0", async () => {
    const r = await runCli(["--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage:/);
    assert.match(r.stdout, /--config PATH/);
  });

  it("--version prints version, runtime and commit", async () => {
    const r = await runCli(["--version"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, new RegExp(`^failover-router \\d+\\.\\d+\\.\\d+ \\(${runtime} [\\d.]+, commit \\S+\\)`));
  });

  it("an unknown option exits 2 with a message", async () => {
    const r = await runCli(["--bogus"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown option "--bogus"/);
  });

  it("an invalid config exits 1 naming the path, without a stack trace", async () => {
    const dir = tempDir({ "bad.yaml": `providers:\n  - { name: a, type: openai, endpoint: "not a url", default_model: m }\n` });
    const r = await runCli(["--config", `${dir}/bad.yaml`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /providers\[0\]\.endpoint: invalid URL/);
    assert.doesNotMatch(r.stderr, /\bat .*\.ts:\d+/);
  });

  it("an unset ${VAR} is a config error naming the variable", async () => {
    const dir = tempDir({ "c.yaml": `providers:\n  - { name: a, type: openai, api_key: "\${NOPE_KEY_XYZ}", default_model: m }\n` });
    const r = await runCli(["--config", `${dir}/c.yaml`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /NOPE_KEY_XYZ/);
  });

  it("a missing config file exits 1", async () => {
    const r = await runCli(["--config", "/nonexistent/x.yaml"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not found/);
  });

  it("a config path that cannot be read (a directory) exits 1 naming the path and the reason, without a stack trace", async () => {
    const dir = tempDir({});
    for (const args of [["check", "--config", dir], ["--config", dir]]) {
      const r = await runCli(args);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`^${dir}: cannot read the config file: .*(EISDIR|[Dd]irector)`, "m"));
      assert.doesNotMatch(r.stderr, /not found/);
      assert.doesNotMatch(r.stderr, /\bat |^\d+ \| /m);
    }
  });

  it("a ./.env that cannot be read (a directory) exits 1 saying so, without a stack trace", async () => {
    const dir = tempDir({ "config.yaml": MOCK });
    mkdirSync(join(dir, ".env"));
    const r = await runCli(["check"], { cwd: dir });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /^\.env: cannot read the file: .*(EISDIR|[Dd]irector)/m);
    assert.doesNotMatch(r.stderr, /\bat |^\d+ \| /m);
  });

  it("a port already in use exits 1 with a one-line error, without a stack trace", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      const dir = tempDir({ "config.yaml": MOCK });
      const r = await runCli(["--config", `${dir}/config.yaml`, "--host", "127.0.0.1", "--port", String(port)]);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stderr, new RegExp(`^error: cannot listen on 127\\.0\\.0\\.1:${port}: `, "m"));
      assert.doesNotMatch(r.stderr, /\bat |^\d+ \| /m);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it("a PORT that is not a port exits 2 naming PORT, for serve, check and healthcheck", async () => {
    const dir = tempDir({ "config.yaml": `server: { host: 127.0.0.1, port: 0 }\n${MOCK}` });
    for (const [cmd, value] of [["serve", "abc"], ["serve", "99999"], ["check", "8o80"], ["healthcheck", "-1"]]) {
      const r = await run([...sourceCommand(), cmd], { cwd: dir, env: { PORT: value }, timeoutMs: 15000 });
      assert.equal(r.code, 2, `${cmd} PORT=${value}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, new RegExp(`PORT must be a number from 0 to 65535, got "${value}"`));
    }
    // --port wins over $PORT, which is then not looked at
    const s = await startServer(["--port", "0"], { cwd: dir, env: { PORT: "abc" } });
    await s.stop();
  });

  it("takes the config from ROUTER_CONFIG, the port from PORT, and loads .env without overriding", async () => {
    const dir = tempDir({
      "router.yaml": `server: { port: 1 }\nproviders:\n  - { name: m, type: mock, default_model: mock-1, reply: "\${REPLY_TEXT}" }\n`,
      ".env": "REPLY_TEXT=from-dotenv\nPORT=0\n",
    });
    const s = await startServer([], { cwd: dir, env: { ROUTER_CONFIG: `${dir}/router.yaml`, HOST: "127.0.0.1" } });
    try {
      const res = await fetch(`${s.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "x", messages: [{ role: "user", content: "hi" }] }),
      });
      assert.equal((await res.json()).choices[0].message.content, "from-dotenv");
    } finally {
      await s.stop();
    }
    // a variable already set wins over .env
    const s2 = await startServer([], { cwd: dir, env: { ROUTER_CONFIG: `${dir}/router.yaml`, HOST: "127.0.0.1", REPLY_TEXT: "from-env" } });
    try {
      const res = await fetch(`${s2.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "x", messages: [{ role: "user", content: "hi" }] }),
      });
      assert.equal((await res.json()).choices[0].message.content, "from-env");
    } finally {
      await s2.stop();
    }
  });

  it("--port and --host override the environment and the config", async () => {
    const dir = tempDir({ "config.yaml": `server: { port: 1, host: 0.0.0.0 }\n${MOCK}` });
    const s = await startServer(["serve", "--port", "0", "--host", "127.0.0.1"], { cwd: dir, env: { PORT: "2" } });
    try {
      assert.match(s.output(), /listening on http:\/\/127\.0\.0\.1:\d+/);
      const r = await fetch(`${s.url}/v1/models`);
      const ids = (await r.json()).data.map((m: any) => m.id);
      assert.deepEqual(ids, ["mock-1", "m/mock-1"]);
    } finally {
      await s.stop();
    }
  });
});
