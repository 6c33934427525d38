// Unit tests of the circuit breaker state machine and its registry, with an injected clock.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { BreakerRegistry, CircuitBreaker, shortError, type Permit } from "../src/routing/breaker.ts";
import { parseConfig } from "../src/config/load.ts";

function clock(start = Date.UTC(2030, 0, 1)) {
  const c = { t: start, now: () => c.t, advance: (ms: number) => void (c.t += ms) };
  return c;
}

const settings = { failure_threshold: 3, cooldown_seconds: 10, half_open_max_requests: 1 };

function fail(b: CircuitBreaker, n = 1, msg = "HTTP 500: boom", retryAfter?: number) {
  for (let i = 0; i < n; i++) {
    const p = b.acquire();
    assert.ok(p, "a permit while failing");
    b.failure(p, msg, retryAfter);
  }
}

describe("CircuitBreaker", () => {
  it("starts closed and trips after failure_threshold consecutive failures", () => {
    const c = clock();
    const b = new CircuitBreaker(settings, c.now);
    assert.equal(b.state, "closed");
    fail(b, 2);
    assert.equal(b.state, "closed");
    assert.equal(b.consecutiveFailures, 2);
    fail(b, 1);
    assert.equal(b.state, "open");
    assert.equal(b.acquire(), null, "open: no permit");
    const s = b.snapshot();
    assert.equal(s.state, "open");
    assert.equal(s.consecutive_failures, 3);
    assert.equal(s.last_error, "HTTP 500: boom");
    assert.equal(s.opened_at, new Date(c.t).toISOString());
    assert.equal(s.retry_at, new Date(c.t + 10_000).toISOString());
  });

  it("a success resets the consecutive failure count", () => {
    const b = new CircuitBreaker(settings, clock().now);
    fail(b, 2);
    b.success(b.acquire()!);
    assert.equal(b.consecutiveFailures, 0);
    fail(b, 2);
    assert.equal(b.state, "closed", "2 + 2 failures split by a success do not trip a threshold of 3");
  });

  it("turns half-open when the cool-off ends and reports the time left until then", () => {
    const c = clock();
    const b = new CircuitBreaker(settings, c.now);
    fail(b, 3);
    assert.equal(b.retryInMs(), 10_000);
    c.advance(9_999);
    assert.equal(b.state, "open");
    assert.equal(b.retryInMs(), 1);
    c.advance(1);
    assert.equal(b.state, "half_open");
    assert.equal(b.retryInMs(), 0);
    const s = b.snapshot();
    assert.equal(s.retry_at, null);
    assert.notEqual(s.opened_at, null);
  });

  it("half-open: a probe success closes the breaker", () => {
    const c = clock();
    const b = new CircuitBreaker(settings, c.now);
    fail(b, 3);
    c.advance(10_000);
    const p = b.acquire()!;
    assert.equal(p.probe, true);
    assert.equal(b.acquire(), null, "the only probe slot is taken");
    b.success(p);
    assert.equal(b.state, "closed");
    assert.deepEqual(b.snapshot(), { state: "closed", consecutive_failures: 0, last_error: "HTTP 500: boom", opened_at: null, retry_at: null });
    assert.equal(b.acquire()!.probe, false);
  });

  it("half-open: a probe failure reopens with a fresh cool-off", () => {
    const c = clock();
    const b = new CircuitBreaker(settings, c.now);
    fail(b, 3);
    c.advance(15_000);
    const p = b.acquire()!;
    b.failure(p, "timeout: upstream timed out");
    assert.equal(b.state, "open");
    const s = b.snapshot();
    assert.equal(s.opened_at, new Date(c.t).toISOString());
    assert.equal(s.retry_at, new Date(c.t + 10_000).toISOString());
    assert.equal(s.last_error, "timeout: upstream timed out");
    assert.equal(s.consecutive_failures, 4);
  });

  it("hands out exactly half_open_max_requests probes however many ask at once", () => {
    const c = clock();
    const b = new CircuitBreaker({ ...settings, half_open_max_requests: 2 }, c.now);
    fail(b, 3);
    c.advance(10_000);
    const permits = Array.from({ length: 20 }, () => b.acquire()).filter((p): p is Permit => p !== null);
    assert.equal(permits.length, 2);
    assert.ok(permits.every((p) => p.probe));
    // a released probe (a client error, say) frees its slot without closing the breaker
    b.release(permits[0]);
    assert.equal(b.state, "half_open");
    const again = b.acquire();
    assert.ok(again?.probe);
    assert.equal(b.acquire(), null);
  });

  it("a released probe slot is not freed twice, and a settled permit cannot be settled again", () => {
    const c = clock();
    const b = new CircuitBreaker(settings, c.now);
    fail(b, 3);
    c.advance(10_000);
    const p = b.acquire()!;
    b.release(p);
    b.release(p);
    b.failure(p, "late");
    assert.equal(b.state, "half_open", "a settled permit changes nothing");
    const q = b.acquire()!;
    assert.equal(b.acquire(), null, "still exactly one slot");
    b.success(q);
    assert.equal(b.state, "closed");
  });

  it("late results from before a transition do not move the state", () => {
    const c = clock();
    const b = new CircuitBreaker(settings, c.now);
    const early = Array.from({ length: 6 }, () => b.acquire()!);
    for (const p of early.slice(0, 3)) b.failure(p, "boom");
    assert.equal(b.state, "open");
    const retryAt = b.snapshot().retry_at;
    b.failure(early[3], "boom");
    assert.equal(b.snapshot().retry_at, retryAt, "a late failure does not restart the cool-off");
    b.success(early[4]);
    assert.equal(b.state, "open", "a late success does not close an open breaker");
    c.advance(10_000);
    const probe = b.acquire()!;
    b.success(early[5]);
    assert.equal(b.state, "half_open", "only the probe decides");
    b.success(probe);
    assert.equal(b.state, "closed");
  });

  it("Retry-After keeps a tripped breaker open at least that long", () => {
    const c = clock();
    const b = new CircuitBreaker(settings, c.now);
    fail(b, 2);
    fail(b, 1, "HTTP 429: slow down", 60);
    assert.equal(b.retryInMs(), 60_000);
    c.advance(30_000);
    assert.equal(b.state, "open", "past cooldown_seconds but within Retry-After");
    c.advance(30_000);
    assert.equal(b.state, "half_open");
  });

  it("a shorter Retry-After does not shorten the cool-off; a late one extends an open breaker", () => {
    const c = clock();
    const b = new CircuitBreaker(settings, c.now);
    const late = b.acquire()!;
    fail(b, 3, "HTTP 429", 2);
    assert.equal(b.retryInMs(), 10_000);
    b.failure(late, "HTTP 429", 20);
    assert.equal(b.retryInMs(), 20_000);
  });

  it("reset closes the breaker and clears counters and the last error", () => {
    const c = clock();
    const b = new CircuitBreaker(settings, c.now);
    fail(b, 3);
    const stale = b.acquire();
    assert.equal(stale, null);
    b.reset();
    assert.deepEqual(b.snapshot(), { state: "closed", consecutive_failures: 0, last_error: null, opened_at: null, retry_at: null });
    fail(b, 2);
    assert.equal(b.state, "closed");
  });
});

describe("shortError", () => {
  it("keeps an error message on one line and short", () => {
    const long = shortError("x".repeat(5000));
    assert.equal(long.length, 200);
    assert.ok(long.endsWith("…"));
    assert.equal(shortError("line one\n  line two"), "line one line two");
  });
});

describe("BreakerRegistry", () => {
  const yaml = (providers: string, cb = "") => `
providers:
${providers}
${cb}`;
  it("creates one breaker per provider with the global settings overridden per provider", () => {
    const cfg = parseConfig(yaml(`  - { name: a, type: mock }
  - { name: b, type: mock, circuit_breaker: { failure_threshold: 1 } }`, "circuit_breaker: { failure_threshold: 4, cooldown_seconds: 7 }"));
    const reg = new BreakerRegistry(cfg, clock().now);
    assert.deepEqual(reg.get("a")!.settings, { failure_threshold: 4, cooldown_seconds: 7, half_open_max_requests: 1 });
    assert.deepEqual(reg.get("b")!.settings, { failure_threshold: 1, cooldown_seconds: 7, half_open_max_requests: 1 });
    assert.equal(reg.get("a")!.state, "closed");
    assert.equal(reg.get("nope"), undefined);
  });

  it("sync keeps the state of unchanged names, applies new settings, adds and drops providers", () => {
    const c = clock();
    const reg = new BreakerRegistry(parseConfig(yaml(`  - { name: a, type: mock }
  - { name: b, type: mock }`, "circuit_breaker: { failure_threshold: 2, cooldown_seconds: 5 }")), c.now);
    const a = reg.get("a")!;
    fail(a, 2);
    fail(reg.get("b")!, 1);
    assert.equal(a.state, "open");
    reg.sync(parseConfig(yaml(`  - { name: a, type: mock }
  - { name: c, type: mock }`, "circuit_breaker: { failure_threshold: 9, cooldown_seconds: 60 }")));
    assert.equal(reg.get("a"), a, "same breaker object");
    assert.equal(a.state, "open", "state carried over");
    assert.equal(a.settings.failure_threshold, 9);
    assert.equal(reg.get("b"), undefined);
    assert.equal(reg.get("c")!.state, "closed");
    // re-adding b starts it fresh
    reg.sync(parseConfig(yaml(`  - { name: a, type: mock }
  - { name: b, type: mock }`)));
    assert.equal(reg.get("b")!.consecutiveFailures, 0);
    assert.equal(reg.get("c"), undefined);
  });
});
