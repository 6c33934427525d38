// The dashboard in a real browser: Debian's chromium driven by playwright-core (no browser download), against
// a router process with three mock providers. It watches a breaker trip and count down, is refused a wrong
// admin key, resets the breaker with the right one, sees a broken config's reload error, and checks the page
// with axe-core in light and dark mode, with no console error throughout.
// chromium missing: skipped with a message locally, a failure under CI=true (.ci/run installs it).
// DASHBOARD_SCREENSHOTS=1 also writes docs/dashboard.png and docs/dashboard-dark.png (one breaker open).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { chromium, type Browser, type Page } from "playwright-core";
import { postJson } from "./helpers/router.ts";
import { freePort, ROOT, rmTemp, signalProcess, startProcess, tempDir, waitFor, writeFile, type RouterProcess } from "./helpers/process.ts";

const IN_CI = !!process.env.CI && process.env.CI !== "false" && process.env.CI !== "0";
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const INSTALL = "install Debian's chromium package: apt-get update && apt-get install -y chromium";
const ADMIN = "the-admin-key-for-the-dashboard";

const CONFIG = `server: { host: 127.0.0.1, port: 0 }
auth: { enabled: true, api_keys: ["a-client-key-000"], admin_api_key: "${ADMIN}" }
providers:
  - name: flaky
    type: mock
    default_model: m
    fail_rate: 1
    max_retries: 0
    circuit_breaker: { failure_threshold: 3, cooldown_seconds: 45 }
    pricing: { "*": { input: 3, output: 15 } }
  - { name: steady, type: mock, default_model: m, latency_ms: 30, pricing: { "*": { input: 0.5, output: 1.5 } } }
  - { name: spare, type: mock, default_model: m, latency_ms: 60 }
routing: { fallback_chain: [flaky, steady, spare] }
`;

/** chromium's path; null (skip, with a message) when absent outside CI; a failure when absent in CI. */
function requireChromium(): string | null {
  if (existsSync(CHROMIUM)) return CHROMIUM;
  if (IN_CI) assert.fail(`${CHROMIUM} not found (CI=true): ${INSTALL}`);
  console.log(`SKIP: ${CHROMIUM} not found; ${INSTALL} (this test fails instead of skipping when CI=true)`);
  return null;
}

const card = (name: string) => `#cards [data-provider="${name}"]`;

describe("dashboard in a real browser", () => {
  let dir: string, path: string, router: RouterProcess | undefined, browser: Browser | undefined;
  before(async () => {
    dir = tempDir();
    path = join(dir, "config.yaml");
    writeFile(path, CONFIG);
  });
  after(async () => {
    await browser?.close();
    await router?.stop();
    rmTemp(dir);
  });

  it("shows a breaker trip and its countdown, refuses a wrong key, resets, shows a reload error; accessible, no console errors", { timeout: 120_000 }, async () => {
    const exe = requireChromium();
    if (!exe) return;
    router = await startProcess(["--config", path], { cwd: dir });
    const url = router.url;
    // as root (CI containers) chromium runs only without its sandbox
    browser = await chromium.launch({ executablePath: exe, args: process.getuid?.() === 0 ? ["--no-sandbox"] : [] });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const problems: string[] = [];
    // the browser itself logs the HTTP error of a request refused on purpose (the wrong key's 401, the broken
    // config's 400) as "Failed to load resource"; only that one, during that step, is not a problem
    let expectedStatus: number | null = null;
    page.on("console", (m) => {
      if (m.type() !== "error") return;
      if (expectedStatus !== null && m.text().includes(`the server responded with a status of ${expectedStatus}`)) return;
      problems.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));

    // the page loads without a key, and asks for one
    const res = await page.goto(`${url}/dashboard`);
    assert.equal(res?.status(), 200);
    await page.getByLabel("Admin API key").waitFor();
    await unlock(page, ADMIN);

    // every provider closed, in chain order
    await page.waitForSelector(`${card("spare")} .badge`);
    assert.deepEqual(await page.$$eval("#cards > li", (els) => els.map((e) => (e as any).dataset.provider)), ["flaky", "steady", "spare"]);
    for (const name of ["flaky", "steady", "spare"]) {
      assert.match(await page.textContent(`${card(name)} .badge`) ?? "", /closed/);
    }

    // flaky fails until its breaker opens: the card turns open within 2 s, with a countdown
    for (let i = 0; i < 3; i++) {
      const r = await postJson(`${url}/v1/chat/completions`, { model: "m", messages: [{ role: "user", content: "hi" }] }, { authorization: "Bearer a-client-key-000" });
      assert.equal(r.headers.get("x-router-provider"), "steady");
      await r.arrayBuffer();
    }
    await page.waitForSelector(`${card("flaky")}[data-state="open"]`, { timeout: 2000 });
    assert.match(await page.textContent(`${card("flaky")} .badge`) ?? "", /open/);
    const probe = await page.textContent(`${card("flaky")} .probe`);
    const secs = Number(/Next probe in (\d+) s/.exec(probe ?? "")?.[1]);
    assert.ok(secs > 30 && secs <= 45, `countdown: ${probe}`);
    await page.waitForFunction(([sel, s]) => {
      const m = /Next probe in (\d+) s/.exec((globalThis as any).document.querySelector(sel as string)?.textContent ?? "");
      return m !== null && Number(m[1]) < (s as number);
    }, [`${card("flaky")} .probe`, secs], { timeout: 5000 });
    assert.match(await page.textContent(`${card("flaky")} .redirect`) ?? "", /steady instead/);
    assert.match(await page.textContent("#failovers") ?? "", /flaky → steady/);

    if (process.env.DASHBOARD_SCREENSHOTS) await screenshots(page);
    await axeCheck(page, "light");

    // a phone's width (320 CSS px): no sideways scrolling, with the key form, the cards and the failovers
    await page.setViewportSize({ width: 320, height: 700 });
    await noSideScroll(page, "cards and failovers at 320 px");

    // a wrong key gets a clear message; then the right one, and reset closes the breaker
    await page.getByRole("button", { name: "Forget key" }).click();
    await noSideScroll(page, "the key form at 320 px");
    await page.setViewportSize({ width: 1280, height: 900 });
    expectedStatus = 401;
    await unlock(page, "not-the-admin-key");
    await page.waitForFunction(() => /refused that key/.test((globalThis as any).document.getElementById("login-msg")?.textContent ?? ""));
    assert.match(await page.textContent("#login-msg") ?? "", /invalid API key/);
    expectedStatus = null;
    await unlock(page, ADMIN);
    await page.waitForSelector(`${card("flaky")}[data-state="open"]`);
    await page.getByRole("button", { name: "Reset breaker of flaky" }).click();
    await page.waitForSelector(`${card("flaky")}[data-state="closed"]`, { timeout: 2000 });
    assert.match(await page.textContent(`${card("flaky")} .badge`) ?? "", /closed/);
    assert.equal(await page.textContent(`${card("flaky")} .probe`), "");

    // a broken config file: reload shows the error, and the old config stays in force
    writeFile(path, CONFIG.replace("fallback_chain: [flaky, steady, spare]", "fallback_chain: [flaky, missing]"));
    expectedStatus = 400;
    await page.getByRole("button", { name: "Reload config" }).click();
    await page.waitForFunction(() => /Reload failed/.test((globalThis as any).document.getElementById("reload-msg")?.textContent ?? ""));
    assert.match(await page.textContent("#reload-msg") ?? "", /missing/);
    await page.waitForFunction(() => /previous config is still in force/.test((globalThis as any).document.getElementById("reload-error")?.textContent ?? ""));
    expectedStatus = null;

    await page.emulateMedia({ colorScheme: "dark" });
    await axeCheck(page, "dark");
    assert.deepEqual(problems, []);
  });
});

describe("dashboard in a real browser, when the router goes away", () => {
  let dir: string, router: RouterProcess | undefined, browser: Browser | undefined;
  after(async () => {
    if (router) signalProcess(router.child, "SIGCONT");
    await browser?.close();
    await router?.stop();
    if (dir) rmTemp(dir);
  });

  it("says it is disconnected while the router is frozen or restarting, and reconnects by itself", { timeout: 120_000 }, async () => {
    const exe = requireChromium();
    if (!exe) return;
    dir = tempDir();
    const path = join(dir, "config.yaml");
    // a fixed port, so that the restarted router is where the page reconnects to
    writeFile(path, `server: { host: 127.0.0.1, port: ${await freePort()} }
providers:
  - { name: flaky, type: mock, default_model: m, fail_rate: 1, max_retries: 0, circuit_breaker: { failure_threshold: 1, cooldown_seconds: 60 } }
  - { name: steady, type: mock, default_model: m }
routing: { fallback_chain: [flaky, steady] }
`);
    router = await startProcess(["--config", path], { cwd: dir });
    const url = router.url;
    browser = await chromium.launch({ executablePath: exe, args: process.getuid?.() === 0 ? ["--no-sandbox"] : [] });
    const page = await browser.newPage();
    const status = (re: RegExp, timeout: number) =>
      page.waitForFunction((src) => new RegExp(src).test((globalThis as any).document.getElementById("status")?.textContent ?? ""), re.source, { timeout });
    await page.goto(`${url}/dashboard`);
    await status(/^Live$/, 5000);
    const r = await postJson(`${url}/v1/chat/completions`, { model: "m", messages: [{ role: "user", content: "hi" }] });
    await r.arrayBuffer();
    await page.waitForSelector(`${card("flaky")}[data-state="open"]`, { timeout: 3000 });

    // frozen: the connection stays open and nothing comes; the page must not go on saying "Live"
    signalProcess(router.child, "SIGSTOP");
    await status(/Disconnected/, 12_000);
    signalProcess(router.child, "SIGCONT");
    await status(/^Live$/, 12_000);

    // restarted: disconnected meanwhile, then live again with the new process's state (the breaker closed)
    await router.stop();
    await status(/Disconnected/, 5000);
    router = await startProcess(["--config", path], { cwd: dir });
    await status(/^Live$/, 12_000);
    await page.waitForSelector(`${card("flaky")}[data-state="closed"]`, { timeout: 3000 });
  });
});

describe("dashboard in a real browser, when a budget runs out", () => {
  let dir: string, router: RouterProcess | undefined, browser: Browser | undefined;
  after(async () => {
    await browser?.close();
    await router?.stop();
    if (dir) rmTemp(dir);
  });

  it("does not send an open breaker's traffic to a provider whose budget is spent", { timeout: 120_000 }, async () => {
    const exe = requireChromium();
    if (!exe) return;
    dir = tempDir();
    const path = join(dir, "config.yaml");
    writeFile(path, `server: { host: 127.0.0.1, port: 0 }
providers:
  - { name: flaky, type: mock, default_model: m, fail_rate: 1, max_retries: 0, circuit_breaker: { failure_threshold: 1, cooldown_seconds: 60 } }
  - { name: pricey, type: mock, default_model: m, pricing: { "*": { input: 1000, output: 1000 } } }
  - { name: spare, type: mock, default_model: m }
routing: { fallback_chain: [flaky, pricey, spare] }
budgets:
  list:
    - { name: pricey-day, scope: { provider: pricey }, limit_usd: 0.01, period: day, max_reservation_usd: 0.001 }
`);
    router = await startProcess(["--config", path], { cwd: dir });
    browser = await chromium.launch({ executablePath: exe, args: process.getuid?.() === 0 ? ["--no-sandbox"] : [] });
    const page = await browser.newPage();
    await page.goto(`${router.url}/dashboard`);
    await page.waitForSelector(`${card("spare")} .badge`);
    const served: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await postJson(`${router.url}/v1/chat/completions`, { model: "m", messages: [{ role: "user", content: "hi" }] });
      served.push(r.headers.get("x-router-provider") ?? String(r.status));
      await r.arrayBuffer();
    }
    // the first request spends pricey's budget; flaky's breaker is open; what is left goes to spare
    assert.deepEqual(served, ["pricey", "spare", "spare"]);
    await page.waitForSelector(`${card("flaky")}[data-state="open"]`, { timeout: 3000 });
    await page.waitForFunction((sel) => /100%/.test((globalThis as any).document.querySelector(sel)?.textContent ?? ""), `${card("pricey")} .budgets`, { timeout: 3000 });
    assert.match(await page.textContent(`${card("flaky")} .redirect`) ?? "", /spare instead/);
    await page.waitForFunction(() => /pricey-day: exhausted/.test((globalThis as any).document.getElementById("activity")?.textContent ?? ""), null, { timeout: 3000 });
  });
});

async function unlock(page: Page, key: string): Promise<void> {
  const input = page.getByLabel("Admin API key");
  await input.waitFor();
  await input.fill(key);
  await input.press("Enter"); // by keyboard
}

/** The page fits the window's width (nothing to scroll sideways to). */
async function noSideScroll(page: Page, what: string): Promise<void> {
  const [scroll, client] = await page.evaluate(() => {
    const d = (globalThis as any).document.documentElement;
    return [d.scrollWidth, d.clientWidth];
  });
  assert.ok(scroll <= client, `${what}: the page is ${scroll} px wide in a ${client} px window`);
}

/** axe-core's checks (WCAG 2 A/AA); no serious or critical violation. */
async function axeCheck(page: Page, mode: string): Promise<void> {
  // page.evaluate is not subject to the page's content security policy
  await page.evaluate(readFileSync(join(ROOT, "node_modules/axe-core/axe.min.js"), "utf8"));
  const violations = await page.evaluate(async () => {
    const r = await (globalThis as any).axe.run((globalThis as any).document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] } });
    return r.violations.map((v: any) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n: any) => n.target.join(" ")).slice(0, 3) }));
  });
  const bad = violations.filter((v: any) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(bad, [], `axe (${mode} mode): ${JSON.stringify(bad, null, 2)}`);
}

async function screenshots(page: Page): Promise<void> {
  await page.emulateMedia({ colorScheme: "light" });
  await page.screenshot({ path: join(ROOT, "docs/dashboard.png"), fullPage: true });
  await page.emulateMedia({ colorScheme: "dark" });
  await page.screenshot({ path: join(ROOT, "docs/dashboard-dark.png"), fullPage: true });
  await page.emulateMedia({ colorScheme: "light" });
}
