#!/usr/bin/env node
// `npm test`: type-checks the code, then runs the whole suite under Bun and under Deno, and prints one
// closing line `tests: N passed, N failed` summed over both runtimes (plus the type-check as one check).
// Usage: node scripts/test.mjs [bun|deno]... [-- extra test-runner args]
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, existsSync, rmSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const bin = (name) => join(root, "node_modules", ".bin", name);
const outDir = join(root, ".test-results");
rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });

const argv = process.argv.slice(2);
const dash = argv.indexOf("--");
const which = (dash >= 0 ? argv.slice(0, dash) : argv).filter(Boolean);
const extra = dash >= 0 ? argv.slice(dash + 1) : [];
const runtimes = which.length ? which : ["typecheck", "bun", "deno"];

function run(cmd, args) {
  console.log(`\n$ ${[cmd, ...args].join(" ")}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit", env: { ...process.env, NO_COLOR: "1" } });
  return r.status ?? 1;
}

/** Counts leaf test cases in a JUnit file (Deno also lists each describe as a case; those are skipped). */
function countJunit(file) {
  if (!existsSync(file)) return null;
  const xml = readFileSync(file, "utf8");
  const cases = [];
  for (const m of xml.matchAll(/<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g)) {
    const name = /name="([^"]*)"/.exec(m[1])?.[1] ?? "";
    const failed = /<(failure|error)\b/.test(m[3] ?? "");
    const skipped = /<skipped\b/.test(m[3] ?? "");
    cases.push({ name, failed, skipped });
  }
  const leaves = cases.filter((c) => !cases.some((o) => o !== c && o.name.startsWith(c.name + " &gt; ")));
  return {
    passed: leaves.filter((c) => !c.failed && !c.skipped).length,
    failed: leaves.filter((c) => c.failed).length,
  };
}

let passed = 0, failed = 0;
const lines = [];
for (const rt of runtimes) {
  if (rt === "typecheck") {
    const code = run("npm", ["run", "-s", "typecheck"]);
    code === 0 ? passed++ : failed++;
    lines.push(`typecheck: ${code === 0 ? "ok" : "FAILED"}`);
    continue;
  }
  const xml = join(outDir, `${rt}.xml`);
  const code = rt === "bun"
    ? run(bin("bun"), ["test", "--timeout", "30000", "--reporter=junit", `--reporter-outfile=${xml}`, ...extra, "tests/"])
    : run(bin("deno"), ["test", "-A", `--junit-path=${xml}`, ...extra, "tests/"]);
  const c = countJunit(xml) ?? { passed: 0, failed: 0 };
  if (code !== 0 && c.failed === 0) c.failed = 1; // the runner failed without a failing case (load error, crash)
  passed += c.passed;
  failed += c.failed;
  lines.push(`${rt}: ${c.passed} passed, ${c.failed} failed`);
}
console.log("\n" + lines.join("\n"));
console.log(`tests: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
