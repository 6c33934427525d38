// SHA-256 (FIPS 180-4) in plain TypeScript, synchronous. crypto.subtle.digest is asynchronous and, for the
// few hundred bytes of a request body, costs far more in scheduling than the hashing itself
// (docs/decisions/0007-synchronous-sha256.md). Used for idempotency fingerprints, key_sha256 auth and API-key
// identities.
const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

const W = new Uint32Array(64);

function block(h: Uint32Array, p: Uint8Array, off: number): void {
  for (let i = 0; i < 16; i++, off += 4) W[i] = (p[off] << 24) | (p[off + 1] << 16) | (p[off + 2] << 8) | p[off + 3];
  for (let i = 16; i < 64; i++) {
    const a = W[i - 15], b = W[i - 2];
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
    W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
  }
  let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (hh + S1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    hh = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
  h[5] += f;
  h[6] += g;
  h[7] += hh;
}

const H0 = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
// scratch state, reused: hashing is synchronous, so no two digests ever interleave
const H = new Uint32Array(8);
const TAIL = new Uint8Array(128);

/** Runs the hash over `data`, leaving the digest in H. */
function digestInto(data: Uint8Array): void {
  H.set(H0);
  const n = data.length;
  const full = n - (n % 64);
  for (let off = 0; off < full; off += 64) block(H, data, off);
  // the last partial block, the 0x80 byte, zeros, and the bit length (big-endian, 64 bits)
  const end = n % 64 < 56 ? 64 : 128;
  const tail = TAIL.subarray(0, end);
  tail.fill(0);
  tail.set(data.subarray(full));
  tail[n - full] = 0x80;
  const bits = n * 8;
  tail[end - 5] = Math.floor(bits / 0x100000000) & 0xff; // lengths up to 2^40 bits
  tail[end - 4] = (bits >>> 24) & 0xff;
  tail[end - 3] = (bits >>> 16) & 0xff;
  tail[end - 2] = (bits >>> 8) & 0xff;
  tail[end - 1] = bits & 0xff;
  for (let off = 0; off < end; off += 64) block(H, tail, off);
}

/** The SHA-256 digest (32 bytes) of `data`. */
export function sha256(data: Uint8Array): Uint8Array {
  digestInto(data);
  const out = new Uint8Array(32);
  for (let i = 0; i < 8; i++) {
    out[i * 4] = H[i] >>> 24;
    out[i * 4 + 1] = (H[i] >>> 16) & 0xff;
    out[i * 4 + 2] = (H[i] >>> 8) & 0xff;
    out[i * 4 + 3] = H[i] & 0xff;
  }
  return out;
}

const HEX = "0123456789abcdef";
const codes: number[] = [];

/**
 * `prefix` followed by the lowercase hex SHA-256 of `data`, built as one flat string (one String.fromCharCode
 * call; a string grown with `+=` is a rope of small pieces on JavaScriptCore).
 */
export function sha256Hex(data: Uint8Array, prefix = ""): string {
  digestInto(data);
  const p = prefix.length;
  codes.length = p + 64;
  for (let i = 0; i < p; i++) codes[i] = prefix.charCodeAt(i);
  for (let i = 0; i < 8; i++) {
    const w = H[i];
    for (let j = 0; j < 8; j++) codes[p + i * 8 + j] = HEX.charCodeAt((w >>> (28 - 4 * j)) & 15);
  }
  return String.fromCharCode.apply(null, codes);
}
