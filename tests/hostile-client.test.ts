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

  it("cannot make a visitor's browser post to the router from another site (CSRF): 403, nothing upstream or reset", async () => {
    const before = fake.requests.length;
    // what a page elsewhere can send without a CORS preflight: a body without Content-Type (a Blob), or a
    // form-like POST; the browser adds Sec-Fetch-Site
    for (const [path, init] of [
      ["/v1/chat/completions", { body: JSON.stringify(chat) }],
      ["/v1/responses", { body: JSON.stringify({ model: "m", input: "hi" }) }],
      ["/admin/budgets/monthly/reset", {}],
      ["/admin/circuit/a/reset", {}],
      ["/admin/reload", {}],
    ] as const) {
      for (const site of ["cross-site", "same-site"]) {
        const res = await fetch(r.url + path, { method: "POST", headers: { "sec-fetch-site": site, origin: "https://evil.example" }, ...init });
        const body = await res.json();
        assert.equal(res.status, 403, `${path} ${site}`);
        assert.equal(body.error.type, "permission_error");
        assert.equal(body.error.code, "cross_site_request");
      }
    }
    assert.equal(fake.requests.length, before);
    // the router's own page (same-origin), a direct client (no Sec-Fetch-Site) and cross-site reads are served
    const own = await fetch(r.url + "/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json", "sec-fetch-site": "same-origin" }, body: JSON.stringify(chat) });
    assert.equal(own.status, 200);
    await own.text();
    const direct = await fetch(r.url + "/admin/circuit/a/reset", { method: "POST" });
    assert.equal(direct.status, 200);
    await direct.text();
    const link = await fetch(r.url + "/dashboard", { headers: { "sec-fetch-site": "cross-site" } });
    assert.equal(link.status, 200);
    await link.text();
  });
});
