// The layer rules of the sources, read from the files under src/: routing/, providers/ and state/ never import
// http/ or middleware/; nothing outside the runtime entrypoints (src/main.bun.ts, src/main.deno.ts) and
// src/runtime/ uses Bun.*, Deno.* or a node:* module.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, posix } from "node:path";
import { ROOT } from "./helpers/process.ts";

/** Where a runtime's own API may appear. */
const RUNTIME_PARTS = /^src\/(main\.bun\.ts|main\.deno\.ts|runtime\/)/;
/** Layers below the HTTP edge, and what they may not import. */
const LOWER_LAYERS = /^src\/(routing|providers|state)\//;
const EDGE = /^src\/(http|middleware)\//;

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...sourceFiles(path));
    else if (/\.[cm]?[jt]sx?$/.test(e.name)) out.push(path);
  }
  return out;
}

/**
 * The text of a source file as two views of the same length: `code` without comments, and `bare` without
 * comments and without the contents of strings, template text and regular expressions (template `${...}`
 * expressions stay: they are code).
 */
function views(text: string): { code: string; bare: string } {
  let code = "", bare = "";
  const keep = (c: string) => ((code += c), (bare += c));
  const hide = (c: string, inCode: boolean) => ((code += inCode ? c : c === "\n" ? "\n" : " "), (bare += c === "\n" ? "\n" : " "));
  const braces: number[] = []; // open braces of each template expression we are inside
  let i = 0;
  let last = ""; // the last significant character of code, to tell a regular expression from a division
  while (i < text.length) {
    const c = text[i], n = text[i + 1];
    if (c === "/" && n === "/") {
      while (i < text.length && text[i] !== "\n") hide(text[i++], false);
    } else if (c === "/" && n === "*") {
      const end = text.indexOf("*/", i + 2);
      const stop = end < 0 ? text.length : end + 2;
      while (i < stop) hide(text[i++], false);
    } else if (c === "'" || c === '"' || c === "`" || (c === "}" && braces.length && braces[braces.length - 1] === 0)) {
      // a string, a template, or the rest of a template after one of its ${...} expressions
      const quote = c === "}" ? "`" : c;
      if (c === "}") braces.pop();
      keep(c);
      i++;
      while (i < text.length && text[i] !== quote) {
        if (text[i] === "\\") hide(text[i++], true);
        else if (quote === "`" && text[i] === "$" && text[i + 1] === "{") break;
        if (i < text.length) hide(text[i++], true);
      }
      if (text[i] === "$") {
        keep("${");
        i += 2;
        braces.push(0);
      } else if (i < text.length) keep(text[i++]);
      last = quote;
    } else if (c === "/" && (last === "" || "(,=:[!&|?{};+-*%<>~^".includes(last) || /\b(return|typeof|case|yield|await|throw)\s*$/.test(code.slice(-12)))) {
      keep(c);
      i++;
      let inClass = false;
      while (i < text.length && text[i] !== "\n" && (inClass || text[i] !== "/")) {
        if (text[i] === "\\") hide(text[i++], true);
        else if (text[i] === "[") inClass = true;
        else if (text[i] === "]") inClass = false;
        if (i < text.length) hide(text[i++], true);
      }
      if (i < text.length) keep(text[i++]);
      last = "/";
    } else {
      if (braces.length && c === "{") braces[braces.length - 1]++;
      if (braces.length && c === "}") braces[braces.length - 1]--;
      keep(c);
      i++;
      if (!/\s/.test(c)) last = c;
    }
  }
  return { code, bare };
}

/** The module specifiers a file imports or re-exports, statically or dynamically. */
function specifiers(code: string): string[] {
  const out: string[] = [];
  for (const re of [/\b(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/g, /\bimport\s*["']([^"']+)["']/g, /\b(?:import|require)\s*\(\s*["']([^"']+)["']/g]) {
    for (const m of code.matchAll(re)) out.push(m[1]);
  }
  return out;
}

/** Every break of the layer rules in one file (`path` relative to the repository, `text` its source). */
function violations(path: string, text: string): string[] {
  const { code, bare } = views(text);
  const out: string[] = [];
  for (const spec of specifiers(code)) {
    if (spec.startsWith("node:") && !RUNTIME_PARTS.test(path)) out.push(`${path} imports ${spec}`);
    if (spec.startsWith(".") && LOWER_LAYERS.test(path)) {
      const target = posix.normalize(posix.join(posix.dirname(path), spec));
      if (EDGE.test(target)) out.push(`${path} imports ${target}`);
    }
  }
  if (!RUNTIME_PARTS.test(path)) {
    for (const m of bare.matchAll(/\b(Bun|Deno)\s*(?:\?\.|\.|\[)/g)) out.push(`${path} uses ${m[1]}`);
  }
  return out;
}

describe("layering", () => {
  it("src/: routing, providers and state never import http or middleware; only the runtime parts use Bun, Deno or node:*", () => {
    const files = sourceFiles("src");
    assert.ok(files.length > 20, `found ${files.length} files under src/`);
    const found = files.flatMap((f) => violations(f, readFileSync(join(ROOT, f), "utf8")));
    assert.deepEqual(found, []);
  });

  it("the check sees through comments, strings and regular expressions, and misses no form of import", () => {
    const cases: [string, string, string[]][] = [
      ["src/routing/x.ts", `import { a } from "../http/errors.ts";`, ["src/routing/x.ts imports src/http/errors.ts"]],
      ["src/providers/openai/x.ts", `import {\n  b,\n} from "../../middleware/auth.ts";`, ["src/providers/openai/x.ts imports src/middleware/auth.ts"]],
      ["src/state/x.ts", `export * from "../http/app.ts";\nconst m = await import("../middleware/env.ts");`, ["src/state/x.ts imports src/http/app.ts", "src/state/x.ts imports src/middleware/env.ts"]],
      ["src/http/x.ts", `import { c } from "../middleware/auth.ts";`, []],
      ["src/reload.ts", `import { readFile } from "node:fs";`, ["src/reload.ts imports node:fs"]],
      ["src/config/x.ts", `const p = Deno.env.get("X");`, ["src/config/x.ts uses Deno"]],
      ["src/x.ts", "const t = `${(globalThis as any).Bun?.version}`;", ["src/x.ts uses Bun"]],
      ["src/x.ts", `// Bun.serve\n/* Deno.exit() */\nconst s = "Bun.serve"; const r = /Deno.env/; const h = "/*";\nif (x) return /Bun.x/.test(y);`, []],
      ["src/runtime/x.ts", `import { connect } from "node:net";\nBun.serve({});`, []],
      ["src/main.deno.ts", `Deno.serve(() => new Response());`, []],
    ];
    for (const [path, text, want] of cases) assert.deepEqual(violations(path, text), want, `${path}: ${text}`);
  });
});
