// server.max_connections: past it a new request gets 503 server_busy at once (a stream counts until its last
// chunk), /health still answers; and the start-up log names the open-files limit the router runs with, with a
// warning when it is too low for server.max_connections.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import process from "node:process";
import { startOpenAIFake } from "./fakes/openai.ts";
import type { FakeServer } from "./fakes/common.ts";
import { postJson, startRouter, type RunningRouter } from "./helpers/router.ts";
import { rmTemp, startProcess, tempDir, waitFor, writeFile } from "./helpers/process.ts";

const chat = (extra: Record<string, unknown> = {}) => ({ model: "m", messages: [{ role: "user", content: "hi" }], ...extra });

describe("server.max_connections", () => {
  let up: FakeServer, r: RunningRouter;
  before(async () => {
    up = await startOpenAIFake({ reply: "a slow answer in pieces", chunks: 4 });
    up.fault = { chunkDelayMs: 400 };
    r = await startRouter(`server: { max_connections: 2 }
providers:
  - { name: a, type: openai_compatible, endpoint: "${up.url}/v1", default_model: m }
`);
  });
  after(async () => {
    await r?.stop();
    await up?.stop();
  });

  it("answers 503 server_busy past the limit while streams are open, and serves again once they end", async () => {
    const open = [postJson(`${r.url}/v1/chat/completions`, chat({ stream: true })), postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }))];
    const streams = await Promise.all(open);
    for (const s of streams) assert.equal(s.status, 200);
    const busy = await postJson(`${r.url}/v1/chat/completions`, chat());
    assert.equal(busy.status, 503);
    assert.equal(busy.headers.get("retry-after"), "1");
    const body = await busy.json();
    assert.equal(body.error.code, "server_busy");
    assert.equal(body.error.type, "server_error");
    assert.match(body.error.message, /server\.max_connections/);
    assert.equal((await fetch(`${r.url}/health`)).status, 200, "/health still answers");
    await Promise.all(streams.map((s) => s.text()));
    up.fault = null;
    const again = await postJson(`${r.url}/v1/chat/completions`, chat());
    assert.equal(again.status, 200);
    await again.arrayBuffer();
  });
});

describe("the open-files limit at start-up", () => {
  let dir: string;
  before(() => void (dir = tempDir()));
  after(() => rmTemp(dir));

  it("is logged with the listening line, with a warning when server.max_connections needs more", async () => {
    for (const [max, warned] of [[100, false], [100_000_000, true]] as const) {
      writeFile(join(dir, "config.yaml"), `server: { host: 127.0.0.1, port: 0, max_connections: ${max} }
providers: [{ name: m, type: mock }]
`);
      const p = await startProcess(["--config", join(dir, "config.yaml")], { cwd: dir });
      try {
        const listening = await waitFor(() => p.logs().find((l) => /listening on/.test(l.msg)), "the listening line");
        const limit = listening.open_files_limit;
        if (process.platform === "linux") assert.ok(typeof limit === "number" && limit > 0 || limit === "unlimited", JSON.stringify(listening));
        const warning = p.logs().find((l) => l.level === "warn" && /open-files limit/.test(l.msg));
        if (limit === undefined || limit === "unlimited") continue;
        assert.equal(!!warning, warned, p.output());
        if (warned) assert.match(warning.msg, new RegExp(`open-files limit \\(${limit}\\) is below the \\d+ that server\\.max_connections \\(${max}\\) needs`));
      } finally {
        await p.stop();
      }
    }
  });
});
