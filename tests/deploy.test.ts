// scripts/install.sh (staged with DESTDIR: files, modes, never overwriting the config, validating it with the
// keys of the env file) and the systemd unit (systemd-analyze verify, where systemd is installed).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { ROOT, rmTemp, run, sourceCommand, tempDir, writeFile } from "./helpers/process.ts";

const hasSystemdAnalyze = spawnSync("systemd-analyze", ["--version"], { encoding: "utf8" }).status === 0;
const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);

describe("scripts/install.sh and the systemd unit", () => {
  let dir: string, fakeBinary: string;
  before(() => {
    dir = tempDir("fr-install-");
    // a stand-in for dist/failover-router that runs the sources, so these tests do not need a build
    fakeBinary = join(dir, "failover-router");
    writeFile(fakeBinary, `#!/bin/sh\nexec ${sourceCommand().map((a) => `'${a}'`).join(" ")} "$@"\n`);
    chmodSync(fakeBinary, 0o755);
  });
  after(() => rmTemp(dir));

  function install(dest: string, config: string) {
    const cfg = join(dir, `config-${Math.random().toString(36).slice(2)}.yaml`);
    writeFile(cfg, config);
    return run(["bash", join(ROOT, "scripts/install.sh"), "--binary", fakeBinary, "--config", cfg], { cwd: ROOT, env: { DESTDIR: dest } });
  }

  it("stages the binary, the unit, the config and a 0600 key file, and validates the config", async () => {
    const dest = join(dir, "root1");
    const r = await install(dest, `providers: [{ name: first, type: mock }]\n`);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /: OK\n/);
    assert.match(r.stdout, /chain: first/);
    assert.equal(mode(join(dest, "usr/local/bin/failover-router")), "755");
    assert.equal(readFileSync(join(dest, "etc/systemd/system/failover-router.service"), "utf8"), readFileSync(join(ROOT, "scripts/failover-router.service"), "utf8"));
    assert.equal(mode(join(dest, "etc/failover-router/config.yaml")), "644");
    assert.equal(mode(join(dest, "etc/failover-router/env")), "600");

    // a second run keeps the config that is there
    writeFile(join(dest, "etc/failover-router/config.yaml"), `providers: [{ name: edited, type: mock }]\n`);
    const again = await install(dest, `providers: [{ name: other, type: mock }]\n`);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /keeping the existing/);
    assert.match(readFileSync(join(dest, "etc/failover-router/config.yaml"), "utf8"), /edited/);
  });

  it("checks the config with the keys of the env file, and fails on an invalid config", async () => {
    const dest = join(dir, "root2");
    const needsKey = `providers: [{ name: a, type: openai, api_key: "\${FR_INSTALL_TEST_KEY}", default_model: m }]\n`;
    const r1 = await install(dest, needsKey);
    assert.equal(r1.code, 1);
    assert.match(r1.stderr, /providers\[0\]\.api_key: environment variable FR_INSTALL_TEST_KEY is not set/);
    assert.match(r1.stderr, /config\.yaml is invalid/);

    writeFile(join(dest, "etc/failover-router/env"), `# keys\nFR_INSTALL_TEST_KEY="sk-install-test"\n`);
    const r2 = await install(dest, needsKey);
    assert.equal(r2.code, 0, r2.stderr);
    assert.ok(!(r2.stdout + r2.stderr).includes("sk-install-test"), "the key is not printed");
  });

  it("refuses to run without a binary", async () => {
    const r = await run(["bash", join(ROOT, "scripts/install.sh"), "--binary", join(dir, "nope")], { cwd: ROOT, env: { DESTDIR: join(dir, "root3") } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not found or not executable: build it first with scripts\/build/);
  });

  it("the unit passes systemd-analyze verify", { skip: !hasSystemdAnalyze }, async () => {
    const unit = join(dir, "failover-router.service");
    // verify checks that the ExecStart binary exists: point it at the stand-in
    writeFile(unit, readFileSync(join(ROOT, "scripts/failover-router.service"), "utf8").replaceAll("/usr/local/bin/failover-router", fakeBinary));
    const r = await run(["systemd-analyze", "verify", unit], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.trim(), "", "no warnings");
  });
});
