// A hostile client: what the router answers and sends upstream for requests shaped to abuse it.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startOpenAIFake } from "./fakes/openai.ts";
import type { FakeServer } from "./fakes/common.ts";
import { startRouter, type RunningRouter } from "./helpers/router.ts";
import { rawRequest } from "./helpers/raw.ts";

const chat = { model: "m", messages: [{ role: "user", content: "hi" }] };

describe("a hostile client", () => {
  let fake: FakeServer, r: RunningRouter;
  before(async () => {
    fake = await startOpenAIFake();
    // the defaults: auth off, no admin key (a router on a developer's machine or an internal network)
    r = await startRouter(`
providers:
  - { name: a, type: openai, endpoint: ${fake.url}/v1, default_model: m }
budgets:
  list:
    - { name: monthly, limit_usd: 10, period: month }
`);
  });
  after(async () => {
    await r.stop();
    await fake.stop();
  });

  it("gets its request path and method back in a 404 or 405 message only shortened", async () => {
    const port = Number(new URL(r.url).port);
    const long = "/" + "A".repeat(7000);
    const nf = await rawRequest(port, `GET ${long} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    assert.equal(nf.status, 404);
    const msg = JSON.parse(nf.body).error.message as string;
    assert.ok(msg.startsWith("unknown path /AAAA"), msg.slice(0, 50));
    assert.ok(msg.length < 400, `a 404 message of ${msg.length} characters`);
    const na = await rawRequest(port, `DELETE /v1/models?${"q".repeat(7000)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    assert.equal(na.status, 405);
    assert.ok(JSON.parse(na.body).error.message.length < 400);
  });
});
