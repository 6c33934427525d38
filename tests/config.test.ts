import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { ConfigError, parseConfig } from "../src/config/load.ts";
import { ROOT } from "./helpers/process.ts";

function problems(yaml: string, env: Record<string, string> = {}): string[] {
  try {
    parseConfig(yaml, env);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

describe("config.yaml", () => {
  it("the shipped config.yaml is valid: chain ollama -> deepseek -> anthropic, priority", () => {
    const c = parseConfig(readFileSync(`${ROOT}/config.yaml`, "utf8"), {});
    assert.deepEqual(c.routing.fallback_chain, ["ollama", "deepseek", "anthropic"]);
    assert.equal(c.routing.strategy, "priority");
    assert.equal(c.server.port, 8000);
    assert.equal(c.providers[2].endpoint, "https://api.anthropic.com");
    assert.equal(c.providers[1].api_key, undefined, "an empty ${VAR:-} key means no key");
  });

  it("examples/demo.yaml is valid", () => {
    const c = parseConfig(readFileSync(`${ROOT}/examples/demo.yaml`, "utf8"), {});
    assert.equal(c.providers.every((p) => p.type === "mock"), true);
  });

  it("expands ${VAR} and ${VAR:-default}, typing whole-value numbers", () => {
    const c = parseConfig(`server: { port: "\${P:-9001}" }\nproviders:\n  - { name: a, type: openai, api_key: "\${KEY}", default_model: m, headers: { x-org: "org-\${ORG:-none}" } }\n`, { KEY: "sk-1" });
    assert.equal(c.server.port, 9001);
    assert.equal(c.providers[0].api_key, "sk-1");
    assert.equal(c.providers[0].headers?.["x-org"], "org-none");
  });

  it("defaults endpoints by type, chain to provider order, breaker from the global block", () => {
    const c = parseConfig(`providers:\n  - { name: o, type: openai, default_model: m }\n  - { name: d, type: deepseek, default_model: m, circuit_breaker: { failure_threshold: 2 } }\n  - { name: l, type: ollama, models: [llama3] }\ncircuit_breaker: { cooldown_seconds: 5 }\n`);
    assert.deepEqual(c.providers.map((p) => p.endpoint), ["https://api.openai.com/v1", "https://api.deepseek.com/v1", "http://localhost:11434"]);
    assert.deepEqual(c.routing.fallback_chain, ["o", "d", "l"]);
    assert.equal(c.providers[2].default_model, "llama3");
    assert.deepEqual(c.providers[1].circuit_breaker, { failure_threshold: 2, cooldown_seconds: 5, half_open_max_requests: 1 });
    assert.equal(c.providers[0].timeout_seconds, 30);
  });

  const cases: [string, string, RegExp][] = [
    ["unknown key", `providers:\n  - { name: a, type: mock, colour: red }\n`, /^providers\[0\]\.colour: unknown key$/],
    ["unknown top-level key", `provders: []\nproviders:\n  - { name: a, type: mock }\n`, /^provders: unknown key$/],
    ["bad URL", `providers:\n  - { name: a, type: openai, endpoint: "ftp//x", default_model: m }\n`, /^providers\[0\]\.endpoint: invalid URL$/],
    ["unset variable", `providers:\n  - { name: a, type: openai, api_key: "\${SECRET_NOT_SET}", default_model: m }\n`, /^providers\[0\]\.api_key: environment variable SECRET_NOT_SET is not set/],
    ["duplicate name", `providers:\n  - { name: a, type: mock }\n  - { name: a, type: mock }\n`, /^providers\[1\]\.name: duplicate provider name "a"/],
    ["unknown chain entry", `providers:\n  - { name: a, type: mock }\nrouting: { fallback_chain: [a, b] }\n`, /^routing\.fallback_chain\[1\]: unknown provider "b"$/],
    ["bad type", `providers:\n  - { name: a, type: gemini }\n`, /^providers\[0\]\.type: must be one of/],
    ["bad strategy", `providers:\n  - { name: a, type: mock }\nrouting: { strategy: random }\n`, /^routing\.strategy: must be one of/],
    ["no model", `providers:\n  - { name: a, type: openai }\n`, /^providers\[0\]\.default_model: required/],
    ["no providers", `server: { port: 1 }\n`, /^providers: required$/],
    ["slash in a name", `providers:\n  - { name: "a/b", type: mock }\n`, /^providers\[0\]\.name: must be/],
    ["a bad header name", `providers:\n  - { name: a, type: mock, headers: { "x org": v } }\n`, /^providers\[0\]\.headers\.x org: header names are/],
    ["a line break in a header value", `providers:\n  - { name: a, type: mock, headers: { x-org: "a\\r\\nx-evil: 1" } }\n`, /^providers\[0\]\.headers\.x-org: a header value cannot/],
    // the position ends the line: the excerpt of the file that follows it in the YAML library's message is left out
    ["invalid YAML", `providers: [\n`, /^invalid YAML: .+ at line 2, column 1$/],
    ["a stream event cap that is not a whole number", `providers:\n  - { name: a, type: mock }\nrouting: { stream_max_event_bytes: 1.5 }\n`, /^routing\.stream_max_event_bytes:/],
    ["a stream duration past a day", `providers:\n  - { name: a, type: mock }\nrouting: { stream_max_duration_seconds: 100000 }\n`, /^routing\.stream_max_duration_seconds:/],
    ["reserved block validated", `providers:\n  - { name: a, type: mock }\nrate_limit: { burst: -1 }\n`, /^rate_limit\.burst:/],
  ];
  for (const [name, yaml, re] of cases) {
    it(`reports ${name} with its path`, () => {
      const p = problems(yaml);
      assert.ok(p.some((x) => re.test(x)), `got: ${JSON.stringify(p)}`);
    });
  }

  it("reports every problem, not just the first", () => {
    const p = problems(`providers:\n  - { name: a, type: openai, endpoint: nope, default_model: m, extra: 1 }\nrouting: { fallback_chain: [zz] }\n`);
    assert.ok(p.length >= 2, JSON.stringify(p));
  });
});
