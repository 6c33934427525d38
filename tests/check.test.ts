// `failover-router check`: validates a config file without serving; every problem with its path, exit 1
// on any error, exit 0 with the resolved chain and strategy. Runs the CLI as a process (source entrypoint
// of the runtime running the tests).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { rmTemp, run, sourceCommand, tempDir, writeFile } from "./helpers/process.ts";

describe("check command", () => {
  let dir: string;
  before(() => {
    dir = tempDir();
  });
  after(() => rmTemp(dir));

  let n = 0;
  async function check(yaml: string, env: Record<string, string> = {}) {
    const path = join(dir, `c${++n}.yaml`);
    writeFile(path, yaml);
    const r = await run([...sourceCommand(), "check", "--config", path], { cwd: dir, env });
    return { ...r, path };
  }

  it("exits 0 for a valid config and prints the resolved chain and strategy", async () => {
    const r = await check(`
providers:
  - { name: first, type: mock }
  - { name: second, type: openai_compatible, endpoint: "http://127.0.0.1:9/v1", default_model: m, api_key: "\${CHECK_KEY}" }
routing: { strategy: priority, fallback_chain: [second, first] }
`, { CHECK_KEY: "sk-check-secret" });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${r.path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: OK`));
    assert.match(r.stdout, /^strategy: priority$/m);
    assert.match(r.stdout, /^chain: second -> first$/m);
    assert.ok(!r.stdout.includes("sk-check-secret") && !r.stderr.includes("sk-check-secret"), "no key in the output");
  });

  it("validates the state block: the redis backend shown without its password; a bad URL or backend refused by key", async () => {
    const ok = await check(`providers: [{ name: a, type: mock }]\nstate: { backend: redis, redis: { url: "\${REDIS_URL}" } }\n`, { REDIS_URL: "rediss://router:s3cret-pa55@cache.internal:6380/1" });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^state: redis rediss:\/\/cache\.internal:6380\/1 \(key prefix "failover-router:", command timeout 100 ms\)$/m);
    assert.ok(!ok.stdout.includes("s3cret-pa55"));
    const bad = await check(`providers: [{ name: a, type: mock }]\nstate: { backend: redis, redis: { url: "http://u:s3cret-pa55@cache:6379" } }\n`);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /state\.redis\.url: must be a redis:\/\/ or rediss:\/\/ URL/);
    assert.ok(!bad.stderr.includes("s3cret-pa55"));
    const unknown = await check(`providers: [{ name: a, type: mock }]\nstate: { backend: etcd }\n`);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /state\.backend: must be one of "memory", "redis"/);
  });

  it("defaults the chain to the providers in order", async () => {
    const r = await check(`providers: [{ name: x, type: mock }, { name: y, type: mock }]\nrouting: { strategy: latency }\n`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^strategy: latency$/m);
    assert.match(r.stdout, /^chain: x -> y$/m);
  });

  it("exits 1 on an unknown key, naming its path", async () => {
    const r = await check(`server: { prot: 8000 }\nproviders: [{ name: a, type: mock }]\n`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /invalid config \(1 problem\)/);
    assert.match(r.stderr, /server\.prot: unknown key/);
    assert.equal(r.stdout, "");
  });

  it("exits 1 on a bad URL, naming the provider's endpoint", async () => {
    const r = await check(`providers:\n  - { name: a, type: mock }\n  - { name: b, type: openai, endpoint: "not a url", default_model: m }\n`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /providers\[1\]\.endpoint: invalid URL/);
  });

  it("exits 1 on an unset environment variable, naming the variable and where it is used", async () => {
    const r = await check(`providers:\n  - { name: a, type: openai, api_key: "\${FR_CHECK_UNSET_VAR}", default_model: m }\n`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /providers\[0\]\.api_key: environment variable FR_CHECK_UNSET_VAR is not set/);
  });

  it("exits 1 on a duplicate provider name", async () => {
    const r = await check(`providers:\n  - { name: a, type: mock }\n  - { name: a, type: mock }\n`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /providers\[1\]\.name: duplicate provider name "a" \(also providers\[0\]\)/);
  });

  it("exits 1 on an unknown chain entry", async () => {
    const r = await check(`providers: [{ name: a, type: mock }]\nrouting: { fallback_chain: [a, nope] }\n`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /routing\.fallback_chain\[1\]: unknown provider "nope"/);
  });

  it("prints every problem at once, each with its path", async () => {
    const r = await check(`
server: { port: "eighty" }
providers:
  - { name: a, type: mock }
  - { name: b, type: openai, endpoint: "ftp://x", default_model: m, colour: blue }
`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /invalid config \(3 problems\)/);
    for (const re of [/server\.port: Invalid input: expected number, received string/, /providers\[1\]\.endpoint: invalid URL/, /providers\[1\]\.colour: unknown key/]) {
      assert.match(r.stderr, re);
    }
  });

  it("exits 1 when the file does not exist", async () => {
    const r = await run([...sourceCommand(), "check", "--config", join(dir, "missing.yaml")], { cwd: dir });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /config file not found: .*missing\.yaml/);
  });

  it("uses ./config.yaml, then $ROUTER_CONFIG, when no --config is given", async () => {
    const sub = tempDir();
    try {
      writeFile(join(sub, "config.yaml"), `providers: [{ name: local, type: mock }]\n`);
      writeFile(join(sub, "other.yaml"), `providers: [{ name: fromenv, type: mock }]\n`);
      const r1 = await run([...sourceCommand(), "check"], { cwd: sub });
      assert.equal(r1.code, 0, r1.stderr);
      assert.match(r1.stdout, /^chain: local$/m);
      const r2 = await run([...sourceCommand(), "check"], { cwd: sub, env: { ROUTER_CONFIG: join(sub, "other.yaml") } });
      assert.equal(r2.code, 0, r2.stderr);
      assert.match(r2.stdout, /^chain: fromenv$/m);
    } finally {
      rmTemp(sub);
    }
  });

  it("exits 2 on a bad command line", async () => {
    const r = await run([...sourceCommand(), "check", "--frobnicate"], { cwd: dir });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown option "--frobnicate"/);
  });
});
