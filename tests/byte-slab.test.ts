// The Deno entrypoint's byte slabs (src/runtime/byte-slab.ts): every copy and every encoded text gets a region
// of its own that nothing later overwrites, across slab boundaries; big pieces get a buffer of their own.
// tests/upstream-client.test.ts checks the same end to end (concurrent streams with chunks of every size).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ByteSlab } from "../src/runtime/byte-slab.ts";

const dec = new TextDecoder();

describe("ByteSlab", () => {
  it("copies and encodings keep their bytes while many more are cut after them, across several slabs", () => {
    const slab = new ByteSlab();
    const kept: { out: Uint8Array; want: string }[] = [];
    for (let i = 0; i < 3000; i++) {
      const text = `${i}:` + "é😀x".repeat(i % 50);
      const out = i % 2 ? slab.encode(text) : slab.copy(new TextEncoder().encode(text));
      kept.push({ out, want: text });
    }
    kept.forEach(({ out, want }, i) => assert.equal(dec.decode(out), want, `piece ${i}`));
  });

  it("a copy is independent of its source; a piece over a quarter slab gets a buffer of its own", () => {
    const slab = new ByteSlab();
    const src = new Uint8Array([1, 2, 3]);
    const a = slab.copy(src);
    src[0] = 9;
    assert.deepEqual([...a], [1, 2, 3]);
    const big = slab.copy(new Uint8Array(16 * 1024 + 1).fill(7));
    assert.equal(big.byteOffset, 0);
    assert.equal(big.buffer.byteLength, 16 * 1024 + 1);
    const small = slab.copy(new Uint8Array(10));
    assert.equal(small.buffer, a.buffer, "small pieces share the slab");
    const text = "x".repeat(6000); // up to 18,000 bytes as UTF-8: over a quarter slab
    assert.equal(dec.decode(slab.encode(text)), text);
    assert.notEqual(slab.encode(text).buffer, a.buffer);
  });
});
