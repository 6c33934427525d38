// A client's per-key state (rate-limit bucket, idempotency scope) belongs to its key, not to the key's place in
// auth.api_keys: inserting a key at the top of the list and reloading (SIGHUP, POST /admin/reload) must not hand
// one client's state to another, and a key rewritten as its key_sha256 keeps its own state.
import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import type { FakeServer } from "./fakes/common.ts";
import { startOpenAIFake } from "./fakes/openai.ts";
import { runMain } from "./helpers/platform.ts";
import { rmTemp, startProcess, tempDir, waitFor, writeFile } from "./helpers/process.ts";
import { postJson } from "./helpers/router.ts";

const A = "rk-client-A-7c1e9a3f5b0d2468";
const B = "rk-client-B-2d4f6a8c0e1b3579";
const ADMIN = "rk-admin-key-5e7a9c1b3d0f2468";

async function sha256Hex(s: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));
  return [...d].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function configYaml(fake: FakeServer, apiKeys: string, extra: string): string {
  return `server: { host: 127.0.0.1, port: 0 }
providers:
  - { name: p, type: openai_compatible, endpoint: "${fake.url}/v1", default_model: m }
auth: { enabled: true, api_keys: ${apiKeys}, admin_api_key: ${ADMIN} }
${extra}
`;
}

interface Running {
  url: string;
  /** swaps in `yaml` and returns once the router runs on it */
  reload(yaml: string): Promise<void>;
  stop(): Promise<void>;
}

const triggers: Record<string, (yaml: string) => Promise<Running>> = {
  async "SIGHUP (router process)"(yaml) {
    const dir = tempDir();
    const path = join(dir, "config.yaml");
    writeFile(path, yaml);
    const r = await startProcess(["--config", path], { cwd: dir });
    const loadedAt = async () => (await (await fetch(`${r.url}/health`)).json()).config.loaded_at;
    return {
      url: r.url,
      async reload(next) {
        const before = await loadedAt();
        writeFile(path, next);
        r.kill("SIGHUP");
        await waitFor(async () => (await loadedAt()) !== before, "the SIGHUP reload");
      },
      async stop() {
        await r.stop();
        rmTemp(dir);
      },
    };
  },
  async "POST /admin/reload (in-process)"(yaml) {
    const files = { "config.yaml": yaml };
    const r = await runMain({ args: ["serve", "--config", "config.yaml"], files, env: {} });
    return {
      url: r.url,
      async reload(next) {
        files["config.yaml"] = next;
        const res = await fetch(`${r.url}/admin/reload`, { method: "POST", headers: { authorization: `Bearer ${ADMIN}` } });
        assert.equal(res.status, 200, await res.text());
      },
      stop: () => r.stop(),
    };
  },
};

const chat = { model: "m", messages: [{ role: "user", content: "hi" }] };
const as = (key: string, headers: Record<string, string> = {}) => ({ authorization: `Bearer ${key}`, ...headers });

for (const [how, start] of Object.entries(triggers)) {
  describe(`a key inserted at the top of auth.api_keys, reloaded by ${how}`, () => {
    let fake: FakeServer, r: Running | undefined;
    before(async () => {
      fake = await startOpenAIFake({ idPerRequest: true });
    });
    afterEach(async () => {
      await r?.stop();
      r = undefined;
    });
    after(async () => {
      await fake.stop();
    });

    it("gets a rate-limit bucket of its own: not the exhausted one of the key that was first", async () => {
      const limits = "rate_limit: { enabled: true, requests_per_minute: 1, burst: 2 }";
      r = await start(configYaml(fake, `[${A}]`, limits));
      const send = async (key: string) => {
        const res = await postJson(`${r!.url}/v1/chat/completions`, chat, as(key));
        await res.arrayBuffer();
        return res.status;
      };
      assert.deepEqual([await send(A), await send(A), await send(A)], [200, 200, 429], "A used up its burst");

      // B on top, and A now written as its sha256: the same key, so the same identity
      await r.reload(configYaml(fake, `[${B}, { key_sha256: ${await sha256Hex(A)} }]`, limits));
      assert.equal(await send(B), 200, "B's first request ever is not refused with A's bucket");
      assert.equal(await send(A), 429, "A is still limited: its bucket followed its key");
    });

    it("gets an idempotency scope of its own: the same Idempotency-Key is a fresh call, not A's stored answer", async () => {
      r = await start(configYaml(fake, `[${A}]`, "idempotency: { enabled: true }"));
      const send = async (key: string) => {
        const res = await postJson(`${r!.url}/v1/chat/completions`, chat, as(key, { "idempotency-key": "K" }));
        assert.equal(res.status, 200);
        return { id: (await res.json()).id as string, replayed: res.headers.get("idempotent-replayed") === "true" };
      };
      const first = await send(A);
      assert.deepEqual(await send(A), { id: first.id, replayed: true }, "A's answer is stored under K");
      const calls = fake.requests.length;

      await r.reload(configYaml(fake, `[${B}, { key_sha256: ${await sha256Hex(A)} }]`, "idempotency: { enabled: true }"));
      const b = await send(B);
      assert.equal(b.replayed, false, "B is not served A's stored answer");
      assert.notEqual(b.id, first.id);
      assert.equal(fake.requests.length, calls + 1, "B's request reached the provider");
      assert.deepEqual(await send(A), { id: first.id, replayed: true }, "A still gets its own stored answer");
    });
  });
}
