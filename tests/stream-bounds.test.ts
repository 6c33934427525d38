// Bounds on upstream streams, through HTTP against upstreams that misbehave on purpose: one SSE event (or
// NDJSON line) larger than routing.stream_max_event_bytes, a committed stream that runs past
// routing.stream_max_duration_seconds, and keep-alive comments that must not hold a stream open past
// routing.stream_idle_timeout_seconds.
import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startOpenAIFake } from "./fakes/openai.ts";
import { sleep, type FakeServer } from "./fakes/common.ts";
import { every, openaiChunk, pour, startScriptedFake, streamHead, type ScriptedFake } from "./fakes/scripted.ts";
import { postJson, readSse, startRouter, type RunningRouter } from "./helpers/router.ts";
import { rmTemp, startProcess, tempDir, waitFor, writeFile, type RouterProcess } from "./helpers/process.ts";

const MiB = 1024 * 1024;
const X = "x".repeat(64 * 1024);
/** what a fake sends at most of a line that never ends: an unbounded router would hold all of it */
const POUR_MAX = 32 * MiB;
const chat = (model = "m") => ({ model, messages: [{ role: "user", content: "hi" }], stream: true });
const ROLE = `data: ${JSON.stringify({ id: "chatcmpl-s", object: "chat.completion.chunk", created: 1700000000, model: "m", choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] })}\n\n`;
const FINISH = `data: ${JSON.stringify({ id: "chatcmpl-s", object: "chat.completion.chunk", created: 1700000000, model: "m", choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })}\n\ndata: [DONE]\n\n`;
const OPENAI_LINE = 'data: {"choices":[{"index":0,"delta":{"content":"';

/** The Anthropic event stream up to a first text delta of `text`. */
const anthropicStart = (text: string) =>
  [
    { type: "message_start", message: { id: "msg_s", model: "m", usage: { input_tokens: 3, output_tokens: 0 } } },
    { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
    { type: "content_block_delta", index: 0, delta: { type: "text_delta", text } },
  ].map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`).join("");

/** The delta contents of parsed SSE events. */
const contentOf = (events: any[]) => events.map((e) => e?.choices?.[0]?.delta?.content ?? "").join("");

async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(20);
  }
  return cond();
}

describe("upstream stream bounds", () => {
  let h: ScriptedFake, b: FakeServer;
  let r: RunningRouter | undefined;

  before(async () => {
    h = await startScriptedFake(() => {});
    b = await startOpenAIFake({ reply: "from B" });
  });
  after(async () => {
    await h.stop();
    await b.stop();
  });
  afterEach(async () => {
    await r?.stop();
    r = undefined;
  });

  /** A router over the scripted fake `h` (as `type`) -> b; `routing` goes into the routing block. */
  async function start(type: "openai_compatible" | "anthropic" | "ollama", routing = ""): Promise<RunningRouter> {
    h.reset();
    b.reset();
    const endpoint = type === "openai_compatible" ? `${h.url}/v1` : h.url;
    r = await startRouter(`
providers:
  - { name: h, type: ${type}, endpoint: "${endpoint}", api_key: k, default_model: m, timeout_seconds: 8 }
  - { name: b, type: openai, endpoint: "${b.url}/v1", default_model: m }
routing: { fallback_chain: [h, b]${routing ? ", " + routing : ""} }
circuit_breaker: { failure_threshold: 100 }
`);
    return r;
  }
  const requestLog = () => r!.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === "request");

  describe("routing.stream_max_event_bytes", () => {
    it("a line that never ends before the first content chunk: the router fails over to the next provider (OpenAI passthrough)", async () => {
      await start("openai_compatible");
      h.script = (res) => {
        streamHead(res);
        res.write(ROLE + OPENAI_LINE);
        return pour(res, X, POUR_MAX);
      };
      const t0 = Date.now();
      const res = await postJson(`${r!.url}/v1/chat/completions`, chat());
      assert.equal(res.headers.get("x-router-provider"), "b");
      const events = await readSse(res);
      assert.equal(contentOf(events), "from B");
      assert.equal(events.at(-1), "[DONE]");
      assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
      assert.ok(await until(() => h.aborted === 1), "the upstream request is aborted");
      const [line] = requestLog();
      assert.deepEqual(line.attempts.map((a: any) => [a.provider, a.outcome, a.status]), [["h", "error", 502], ["b", "success", 200]]);
      assert.equal(line.attempts[0].reason, "upstream stream event larger than 1048576 bytes");
    });

    it("a line that never ends after the first content chunk: the stream ends with an error event (OpenAI passthrough)", async () => {
      await start("openai_compatible");
      h.script = (res) => {
        streamHead(res);
        res.write(ROLE + openaiChunk("before the flood") + OPENAI_LINE);
        return pour(res, X, POUR_MAX);
      };
      const res = await postJson(`${r!.url}/v1/chat/completions`, chat());
      assert.equal(res.headers.get("x-router-provider"), "h");
      const events = await readSse(res);
      assert.equal(contentOf(events), "before the flood");
      assert.deepEqual(events.at(-1).error, { message: "upstream stream event larger than 1048576 bytes", type: "upstream_error", param: null, code: "upstream_stream_error" });
      assert.ok(await until(() => h.aborted === 1), "the upstream request is aborted");
      assert.equal(b.requests.length, 0, "committed: no failover");
    });

    it("a line that never ends after the first content chunk: the stream ends with an error event (Anthropic)", async () => {
      await start("anthropic");
      h.script = (res) => {
        streamHead(res);
        res.write(anthropicStart("before the flood") + 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"');
        return pour(res, X, POUR_MAX);
      };
      const res = await postJson(`${r!.url}/v1/chat/completions`, chat());
      assert.equal(res.headers.get("x-router-provider"), "h");
      const events = await readSse(res);
      assert.equal(contentOf(events), "before the flood");
      assert.equal(events.at(-1).error.message, "upstream stream event larger than 1048576 bytes");
      assert.ok(await until(() => h.aborted === 1), "the upstream request is aborted");
    });

    it("an NDJSON line that never ends before the first content: the router fails over (Ollama)", async () => {
      await start("ollama");
      h.script = (res) => {
        streamHead(res, "application/x-ndjson");
        res.write('{"model":"m","message":{"role":"assistant","content":"');
        return pour(res, X, POUR_MAX);
      };
      const res = await postJson(`${r!.url}/v1/chat/completions`, chat());
      assert.equal(res.headers.get("x-router-provider"), "b");
      assert.equal(contentOf(await readSse(res)), "from B");
      assert.ok(await until(() => h.aborted === 1), "the upstream request is aborted");
      assert.equal(requestLog()[0].attempts[0].reason, "upstream stream event larger than 1048576 bytes");
    });

    it("counts the data lines of one event together, and takes its limit from the config", async () => {
      await start("openai_compatible", "stream_max_event_bytes: 4096");
      // 100 short data: lines and no blank line: one event of 10,000 bytes
      h.script = (res) => {
        streamHead(res);
        res.write(ROLE + openaiChunk("first"));
        for (let i = 0; i < 100; i++) res.write(`data: ${"y".repeat(100)}\n`);
        return every(res, 200, () => ": still here\n\n");
      };
      const events = await readSse(await postJson(`${r!.url}/v1/chat/completions`, chat()));
      assert.equal(contentOf(events), "first");
      assert.equal(events.at(-1).error.message, "upstream stream event larger than 4096 bytes");
    });

    it("an event cut into 1-byte reads, and one just under the limit cut into many reads, arrive intact", async () => {
      await start("openai_compatible");
      const small = "héllo wörld ✓ 😀 ".repeat(20);
      const large = "z".repeat(MiB - 200); // the whole data: line stays under 1 MiB
      h.script = async (res) => {
        streamHead(res);
        res.write(ROLE);
        for (const byte of Buffer.from(openaiChunk(small))) {
          res.write(Buffer.of(byte));
          await sleep(1); // its own TCP segment, so its own read in the router
        }
        const big = Buffer.from(openaiChunk(large));
        for (let i = 0; i < big.length; i += 1000) res.write(big.subarray(i, i + 1000));
        res.end(FINISH);
      };
      const events = await readSse(await postJson(`${r!.url}/v1/chat/completions`, chat()));
      assert.equal(events.at(-1), "[DONE]");
      assert.equal(contentOf(events), small + large);
    });

    it("a long line in many reads costs time linear in its length: a 24 MB event under a 64 MiB limit", async () => {
      await start("openai_compatible", `stream_max_event_bytes: ${64 * MiB}`);
      const content = "w".repeat(24 * 1000 * 1000);
      h.script = async (res) => {
        streamHead(res);
        res.write(ROLE);
        const big = Buffer.from(openaiChunk(content));
        for (let i = 0; i < big.length && !res.destroyed; i += 16 * 1024) {
          if (!res.write(big.subarray(i, i + 16 * 1024))) await new Promise((ok) => res.once("drain", ok));
        }
        res.end(FINISH);
      };
      const t0 = Date.now();
      const events = await readSse(await postJson(`${r!.url}/v1/chat/completions`, chat()));
      const took = Date.now() - t0;
      assert.equal(events.at(-1), "[DONE]");
      assert.equal(contentOf(events).length, content.length);
      assert.ok(took < 8000, `took ${took} ms`);
    });
  });

  describe("routing.stream_max_duration_seconds", () => {
    it("ends a committed stream that never stops with an error event, and aborts the upstream request", async () => {
      await start("openai_compatible", "stream_max_duration_seconds: 2");
      h.script = (res) => {
        streamHead(res);
        res.write(ROLE);
        return every(res, 100, (i) => openaiChunk(`${i} `));
      };
      const t0 = Date.now();
      const res = await postJson(`${r!.url}/v1/chat/completions`, chat());
      assert.equal(res.headers.get("x-router-provider"), "h");
      const events = await readSse(res);
      const took = Date.now() - t0;
      assert.ok(took >= 1900 && took < 6000, `took ${took} ms`);
      assert.match(contentOf(events), /^0 1 2 3 4 5 /, "the content flowed until then");
      assert.deepEqual(events.at(-1).error, {
        message: "the stream ran longer than routing.stream_max_duration_seconds (2s)", type: "upstream_error", param: null, code: "stream_max_duration",
      });
      assert.ok(await until(() => h.aborted === 1), "the upstream request is aborted");
      const [line] = requestLog();
      assert.equal(line.status, 502);
      assert.match(line.attempts[0].reason, /stream_max_duration_seconds/);
    });
  });

  describe("routing.stream_idle_timeout_seconds", () => {
    it("SSE comments are not activity: a stream of keep-alives only ends as stalled", async () => {
      await start("openai_compatible", "stream_idle_timeout_seconds: 1");
      h.script = (res) => {
        streamHead(res);
        res.write(ROLE + openaiChunk("hello"));
        return every(res, 200, () => ": ping\n\n");
      };
      const t0 = Date.now();
      const res = await fetch(`${r!.url}/v1/chat/completions`, {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(chat()), signal: AbortSignal.timeout(10000),
      });
      const events = await readSse(res);
      const took = Date.now() - t0;
      assert.equal(contentOf(events), "hello");
      assert.equal(events.at(-1).error.code, "stream_timeout");
      assert.match(events.at(-1).error.message, /stalled for more than 1s/);
      assert.ok(took >= 900 && took < 5000, `took ${took} ms`);
      assert.ok(await until(() => h.aborted === 1), "the upstream request is aborted");
    });
  });
});

/** VmHWM (peak resident set) of a process, in bytes. */
function peakRss(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

describe("a router process fed lines that never end", () => {
  let h: ScriptedFake, dir: string, p: RouterProcess;
  before(async () => {
    h = await startScriptedFake(() => {});
    dir = tempDir();
    writeFile(join(dir, "config.yaml"), `server: { host: 127.0.0.1, port: 0 }
providers:
  - { name: h, type: openai_compatible, endpoint: "${h.url}/v1", default_model: m }
`);
    p = await startProcess(["--config", join(dir, "config.yaml")], { cwd: dir });
  });
  after(async () => {
    await p?.stop();
    await h.stop();
    rmTemp(dir);
  });

  it("holds its memory and keeps answering /health quickly", async () => {
    // warm up on a normal stream, then measure the peak from there
    h.script = (res) => {
      streamHead(res);
      res.end(ROLE + openaiChunk("warm") + FINISH);
    };
    assert.equal(contentOf(await readSse(await postJson(`${p.url}/v1/chat/completions`, chat()))), "warm");
    const base = peakRss(p.child.pid!);

    h.script = (res) => {
      streamHead(res);
      res.write(ROLE + openaiChunk("before the flood") + OPENAI_LINE);
      return pour(res, X, POUR_MAX);
    };
    let slowest = 0, polling = true;
    const poller = (async () => {
      while (polling) {
        const t = Date.now();
        assert.equal((await fetch(`${p.url}/health`)).status, 200);
        slowest = Math.max(slowest, Date.now() - t);
        await sleep(50);
      }
    })();
    try {
      for (let i = 0; i < 3; i++) {
        const events = await readSse(await postJson(`${p.url}/v1/chat/completions`, chat()));
        assert.equal(events.at(-1).error?.message, "upstream stream event larger than 1048576 bytes", `stream ${i}`);
      }
      await waitFor(() => h.aborted === 3, "the upstream requests to be aborted");
    } finally {
      polling = false;
      await poller;
    }
    const grew = peakRss(p.child.pid!) - base;
    assert.ok(grew < 64 * MiB, `the peak RSS grew by ${(grew / MiB).toFixed(1)} MiB`);
    assert.ok(slowest < 1000, `/health took up to ${slowest} ms`);
  });
});
