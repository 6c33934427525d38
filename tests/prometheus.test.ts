// /metrics against the real Prometheus tools (Debian's `prometheus` package): `promtool check metrics` on a
// live scrape, and a real Prometheus server scraping the router on 127.0.0.1 and answering a PromQL query.
// In CI (CI=true) missing binaries fail the tests; locally they are skipped with a message.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { startOpenAIFake } from "./fakes/openai.ts";
import type { FakeServer } from "./fakes/common.ts";
import { postJson, readSse, runtime, startRouter, type RunningRouter } from "./helpers/router.ts";
import { freePort } from "./helpers/process.ts";

const IN_CI = !!process.env.CI && process.env.CI !== "false" && process.env.CI !== "0";
const INSTALL = "install Debian's prometheus package: apt-get update && apt-get install -y prometheus";

function findBin(name: string): string | null {
  for (const dir of [...(process.env.PATH ?? "").split(":"), "/usr/bin", "/usr/local/bin"]) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return null;
}

/** The binary's path; null (skip, with a message) when absent outside CI; a failure when absent in CI. */
function requireBin(name: string): string | null {
  const bin = findBin(name);
  if (bin) return bin;
  if (IN_CI) assert.fail(`${name} not found on PATH (CI=true): ${INSTALL}`);
  console.log(`SKIP: ${name} not found on PATH; ${INSTALL} (this test fails instead of skipping when CI=true)`);
  return null;
}

function run(cmd: string, args: string[], input: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    p.stdout!.on("data", (d) => (output += d));
    p.stderr!.on("data", (d) => (output += d));
    p.on("error", reject);
    p.on("close", (code) => resolve({ code, output }));
    p.stdin!.end(input);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("Prometheus tooling against a live /metrics", () => {
  let d: FakeServer, f: FakeServer, r: RunningRouter;
  before(async () => {
    d = await startOpenAIFake({ usage: { prompt_tokens: 12, completion_tokens: 34 } });
    f = await startOpenAIFake({ usage: { prompt_tokens: 12, completion_tokens: 34 } });
    r = await startRouter(`
logging: { level: silent }
providers:
  - { name: down, type: openai, endpoint: "${d.url}/v1", default_model: "weird \\"model\\" \\\\ name", pricing: { "*": { input: 3, output: 15 } } }
  - { name: f, type: openai, endpoint: "${f.url}/v1", default_model: gpt-test, pricing: { "*": { input: 3, output: 15 } } }
`);
    // traffic of every kind: success, failover, stream, client error, 404
    d.fault = { status: 500, times: 1 };
    for (const stream of [false, false, true]) {
      const res = await postJson(`${r.url}/v1/chat/completions`, { model: "x", stream, messages: [{ role: "user", content: "hi" }] });
      assert.equal(res.status, 200);
      if (stream) await readSse(res);
      else await res.text();
    }
    await (await postJson(`${r.url}/v1/chat/completions`, { model: "x" })).text();
    await (await fetch(`${r.url}/nope`)).text();
  });
  after(async () => {
    await r.stop();
    await d.stop();
    await f.stop();
  });

  it("passes `promtool check metrics`", async () => {
    const promtool = requireBin("promtool");
    if (!promtool) return;
    const text = await (await fetch(`${r.url}/metrics`)).text();
    assert.ok(text.includes('model="weird \\"model\\" \\\\ name"'), "an escaped label value is part of the check");
    assert.ok(text.includes("failover_router_failovers_total"));
    const { code, output } = await run(promtool, ["check", "metrics"], text);
    assert.equal(output.trim(), "", `promtool reported:\n${output}`);
    assert.equal(code, 0);
  });

  it("is scraped by a real Prometheus server and answers a PromQL query", { timeout: 90_000 }, async () => {
    const prometheus = requireBin("prometheus");
    if (!prometheus) return;
    const dir = mkdtempSync(join(tmpdir(), "router-prom-"));
    const target = new URL(r.url).host;
    writeFileSync(join(dir, "prometheus.yml"), [
      "global:",
      "  scrape_interval: 1s",
      "  evaluation_interval: 1s",
      "scrape_configs:",
      "  - job_name: failover-router",
      "    scrape_interval: 1s",
      "    scrape_timeout: 1s",
      "    metrics_path: /metrics",
      "    static_configs:",
      `      - targets: ["${target}"]`,
      "",
    ].join("\n"));
    const port = await freePort();
    let log = "";
    let proc: ChildProcess | undefined;
    try {
      proc = spawn(prometheus, [
        `--config.file=${join(dir, "prometheus.yml")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        "--log.level=warn",
      ], { stdio: ["ignore", "pipe", "pipe"] });
      proc.stdout!.on("data", (d) => (log = (log + d).slice(-4000)));
      proc.stderr!.on("data", (d) => (log = (log + d).slice(-4000)));
      let exited: number | null | undefined;
      proc.on("exit", (code) => (exited = code));

      const api = `http://127.0.0.1:${port}/api/v1`;
      const query = async (q: string): Promise<any[] | null> => {
        try {
          const res = await fetch(`${api}/query?query=${encodeURIComponent(q)}`);
          if (res.status !== 200) return null;
          const body = await res.json();
          return body.status === "success" ? body.data.result : null;
        } catch {
          return null; // not listening yet
        }
      };
      const deadline = Date.now() + 60_000;
      let result: any[] | null = null;
      while (Date.now() < deadline && exited === undefined) {
        result = await query('failover_router_requests_total{endpoint="/v1/chat/completions",status="200"}');
        if (result && result.length > 0) break;
        await sleep(500);
      }
      assert.equal(exited, undefined, `prometheus exited early (code ${exited}):\n${log}`);
      assert.ok(result && result.length === 1, `no failover_router_requests_total in Prometheus within 60s:\n${log}`);
      assert.equal(result![0].metric.job, "failover-router");
      assert.equal(result![0].metric.instance, target);
      assert.equal(Number(result![0].value[1]), 3, "3 successful chat requests");

      const all = await query("sum(failover_router_requests_total)");
      assert.equal(Number(all![0].value[1]), 5, "every client request, including the 400 and the 404");
      const failovers = await query('failover_router_failovers_total{provider="down"}');
      assert.equal(Number(failovers![0].value[1]), 1);
      const tokens = await query("sum by (direction) (failover_router_tokens_total)");
      const byDir = Object.fromEntries(tokens!.map((s: any) => [s.metric.direction, Number(s.value[1])]));
      assert.deepEqual(byDir, { input: 36, output: 102 });
      const info = await query("failover_router_build_info");
      assert.equal(info![0].metric.runtime, runtime);
      const up = await query('up{job="failover-router"}');
      assert.equal(up![0].value[1], "1");
      const targets = await (await fetch(`${api}/targets`)).json();
      const t = targets.data.activeTargets.find((x: any) => x.labels.job === "failover-router");
      assert.equal(t.health, "up", `scrape error: ${t.lastError}`);
      assert.equal(t.lastError, "");
    } finally {
      if (proc && proc.exitCode === null) {
        const done = new Promise((ok) => proc!.once("exit", ok));
        proc.kill("SIGTERM");
        const timer = setTimeout(() => proc!.kill("SIGKILL"), 10_000);
        await done;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
