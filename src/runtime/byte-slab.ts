// Why: on Deno every ArrayBuffer is work for each young GC, and a stream would need two per chunk (docs/decisions/0004).
// Stream chunk bytes cut from shared slabs (the Deno entrypoint's socket reads and SSE chunks). Web-standard only.
const encoder = new TextEncoder();

const SLAB_BYTES = 64 * 1024;

/**
 * Bytes for the chunks of streams, cut from 64 KiB slabs: one ArrayBuffer per slab instead of one per chunk.
 * Every chunk gets a region of its own, never reused, so it can be kept and read like any other chunk; a slab
 * is freed once no chunk cut from it is referenced. On Deno each ArrayBuffer costs an allocation outside the JS
 * heap and work for every young-generation GC, and a stream chunk is a few hundred bytes; on Bun the slab costs
 * more CPU than an ArrayBuffer per chunk, so only the Deno entrypoint uses it
 * (docs/decisions/0004-deno-byte-slabs.md). Chunks bigger than a quarter slab get an ArrayBuffer of their own.
 */
export class ByteSlab {
  #slab = new Uint8Array(SLAB_BYTES);
  #at = 0;

  /** A copy of `bytes`. */
  copy(bytes: Uint8Array): Uint8Array {
    const n = bytes.length;
    if (n > SLAB_BYTES / 4) return bytes.slice();
    const out = this.#take(n);
    out.set(bytes);
    return out;
  }

  /** `text` encoded as UTF-8. */
  encode(text: string): Uint8Array {
    const max = text.length * 3; // UTF-8 bytes per UTF-16 code unit, at most
    if (max > SLAB_BYTES / 4) return encoder.encode(text);
    if (this.#at + max > SLAB_BYTES) this.#fresh();
    const { written } = encoder.encodeInto(text, this.#slab.subarray(this.#at));
    const out = this.#slab.subarray(this.#at, this.#at + written);
    this.#at += written;
    return out;
  }

  #take(n: number): Uint8Array {
    if (this.#at + n > SLAB_BYTES) this.#fresh();
    const out = this.#slab.subarray(this.#at, this.#at + n);
    this.#at += n;
    return out;
  }

  #fresh(): void {
    this.#slab = new Uint8Array(SLAB_BYTES);
    this.#at = 0;
  }
}

/** The process's slab for stream chunks (one JS thread: nothing else cuts from it meanwhile). */
export const chunkBytes = new ByteSlab();

/** An SSE chunk's text as bytes cut from the shared slab (the Deno entrypoint's Platform.encodeChunk). */
export const encodeChunk = (text: string): Uint8Array => chunkBytes.encode(text);
