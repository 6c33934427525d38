import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { sha256, sha256Hex } from "../src/middleware/sha256.ts";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

describe("sha256 (synchronous, for idempotency fingerprints and key_sha256)", () => {
  it("matches the FIPS 180-4 examples", () => {
    const enc = new TextEncoder();
    assert.equal(hex(sha256(enc.encode(""))), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert.equal(hex(sha256(enc.encode("abc"))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert.equal(hex(sha256(enc.encode("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  });

  it("matches crypto.subtle for every length across block boundaries and for a large body", async () => {
    const lengths = [...Array(200).keys(), 1000, 4095, 4096, 65537, 1 << 20];
    for (const n of lengths) {
      const data = new Uint8Array(n);
      for (let i = 0; i < n; i++) data[i] = (i * 31 + n) & 0xff;
      const want = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
      assert.equal(hex(sha256(data)), hex(want), `length ${n}`);
      assert.equal(sha256Hex(data, "/v1/x "), `/v1/x ${hex(want)}`, `hex, length ${n}`);
    }
  });
});
