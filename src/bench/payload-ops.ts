/**
 * The operations `bench payload` runs over a buffer, the same in the guest (kvstore.c) and in JS:
 * FNV-1a (compute-bound) and sum64 (memory-bandwidth-bound), plus their sources for workers and
 * child processes, which run them from inline code.
 */
/** 32-bit FNV-1a, the same function as kvstore.c's checksum(). */
export function fnv1a(p: Uint8Array): number {
  let h = 0x811c9dc5 | 0;
  for (let i = 0; i < p.length; i++) {
    h ^= (p[i] ?? 0);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

export const FNV_SOURCE = `function fnv(p, h) { for (let i = 0; i < p.length; i++) { h ^= p[i]; h = Math.imul(h, 16777619); } return h; }`;

/**
 * What a payload consumer computes over the bytes it gets: `checksum` is FNV-1a (a multiply per
 * byte, about 1 GiB/s: compute-bound); `sum64` adds u64 words (bound by memory bandwidth), so
 * that the cost of moving the bytes is not hidden behind the consumer's own work.
 */
export const PAYLOAD_OPS = ["checksum", "sum64"] as const;
export type PayloadOp = (typeof PAYLOAD_OPS)[number];
/** checksum: a u32 as a number; sum64: a u64 as a bigint. */
export type OpResult = number | bigint;

const TWO32 = 2 ** 32;
/** Words added between two carry folds: every sum stays below 2^52 + 2^32, exact in a double. */
const FOLD_WORDS = 1 << 20;

/**
 * Adds the bytes of `p`, which sit at offsets pos, pos+1, … of a stream, to a running sum64:
 * `acc` holds the sum's low and high 32 bits as doubles (each < 2^32 between calls). Byte k of a
 * word adds b * 2^(8k) to its half, so a stream may be cut anywhere and a last partial word counts
 * as zero-padded. Whole words are read as two u32 halves (x86 is little-endian, like the guest)
 * and added as doubles, folding the carry every FOLD_WORDS: no BigInt in the loop.
 * SUM64_SOURCE is the same code for workers and child processes.
 */
export function sum64Update(acc: Float64Array, p: Uint8Array, pos: number): void {
  let lo = (acc[0] ?? 0);
  let hi = (acc[1] ?? 0);
  const n = p.length;
  let i = 0;
  for (; i < n && (pos + i) % 8 !== 0; i++) {
    const lane = (pos + i) % 8;
    if (lane < 4) lo += (p[i] ?? 0) * 2 ** (8 * lane);
    else hi += (p[i] ?? 0) * 2 ** (8 * (lane - 4));
  }
  const words = Math.floor((n - i) / 8);
  if ((p.byteOffset + i) % 4 === 0) {
    const w = new Uint32Array(p.buffer, p.byteOffset + i, 2 * words);
    // Two words per step into two pairs of sums: each double add waits for the one before it in
    // its chain, so a second chain lets two adds run at once (1.3-2x on Bun and Deno).
    const pairs = w.length - (w.length % 4);
    let j = 0;
    while (j < pairs) {
      const end = Math.min(pairs, j + 2 * FOLD_WORDS);
      let lo1 = 0;
      let hi1 = 0;
      for (; j < end; j += 4) {
        lo += (w[j] ?? 0);
        hi += (w[j + 1] ?? 0);
        lo1 += (w[j + 2] ?? 0);
        hi1 += (w[j + 3] ?? 0);
      }
      lo += lo1;
      hi += hi1;
      hi = (hi + Math.floor(lo / TWO32)) % TWO32;
      lo %= TWO32;
    }
    if (j < w.length) {
      lo += (w[j] ?? 0);
      hi += (w[j + 1] ?? 0);
    }
  } else {
    // A stream chunk at an odd address (a socket read): DataView, slower but the same sum.
    const v = new DataView(p.buffer, p.byteOffset + i, 8 * words);
    for (let j = 0; j < 8 * words; ) {
      const end = Math.min(8 * words, j + 8 * FOLD_WORDS);
      for (; j < end; j += 8) {
        lo += v.getUint32(j, true);
        hi += v.getUint32(j + 4, true);
      }
      hi = (hi + Math.floor(lo / TWO32)) % TWO32;
      lo %= TWO32;
    }
  }
  for (i += 8 * words; i < n; i++) {
    const lane = (pos + i) % 8;
    if (lane < 4) lo += (p[i] ?? 0) * 2 ** (8 * lane);
    else hi += (p[i] ?? 0) * 2 ** (8 * (lane - 4));
  }
  acc[0] = lo % TWO32;
  acc[1] = (hi + Math.floor(lo / TWO32)) % TWO32;
}

/** The u64 that sum64Update() accumulated. */
export function sum64Result(acc: Float64Array): bigint {
  return (BigInt((acc[1] ?? 0)) << 32n) | BigInt((acc[0] ?? 0));
}

/**
 * The wrapping sum of `p` read as little-endian u64 words, the same function as kvstore.c's
 * sum64(): when p.length is not a multiple of 8, the last partial word counts with its missing
 * high bytes as zero.
 */
export function sum64(p: Uint8Array): bigint {
  const acc = new Float64Array(2);
  sum64Update(acc, p, 0);
  return sum64Result(acc);
}

/** sum64Update() and sum64Result() as source for workers and child processes (exported for its test). */
export const SUM64_SOURCE = `function sum64Update(acc, p, pos) {
  const TWO32 = 4294967296, FOLD_WORDS = 1048576;
  let lo = acc[0], hi = acc[1];
  const n = p.length;
  let i = 0;
  for (; i < n && (pos + i) % 8 !== 0; i++) {
    const lane = (pos + i) % 8;
    if (lane < 4) lo += p[i] * 2 ** (8 * lane); else hi += p[i] * 2 ** (8 * (lane - 4));
  }
  const words = Math.floor((n - i) / 8);
  if ((p.byteOffset + i) % 4 === 0) {
    const w = new Uint32Array(p.buffer, p.byteOffset + i, 2 * words);
    const pairs = w.length - (w.length % 4);
    let j = 0;
    while (j < pairs) {
      const end = Math.min(pairs, j + 2 * FOLD_WORDS);
      let lo1 = 0, hi1 = 0;
      for (; j < end; j += 4) { lo += w[j]; hi += w[j + 1]; lo1 += w[j + 2]; hi1 += w[j + 3]; }
      lo += lo1; hi += hi1;
      hi = (hi + Math.floor(lo / TWO32)) % TWO32; lo %= TWO32;
    }
    if (j < w.length) { lo += w[j]; hi += w[j + 1]; }
  } else {
    const v = new DataView(p.buffer, p.byteOffset + i, 8 * words);
    for (let j = 0; j < 8 * words; ) {
      const end = Math.min(8 * words, j + 8 * FOLD_WORDS);
      for (; j < end; j += 8) { lo += v.getUint32(j, true); hi += v.getUint32(j + 4, true); }
      hi = (hi + Math.floor(lo / TWO32)) % TWO32; lo %= TWO32;
    }
  }
  for (i += 8 * words; i < n; i++) {
    const lane = (pos + i) % 8;
    if (lane < 4) lo += p[i] * 2 ** (8 * lane); else hi += p[i] * 2 ** (8 * (lane - 4));
  }
  acc[0] = lo % TWO32;
  acc[1] = (hi + Math.floor(lo / TWO32)) % TWO32;
}
function sum64Result(acc) { return (BigInt(acc[1]) << 32n) | BigInt(acc[0]); }`;
