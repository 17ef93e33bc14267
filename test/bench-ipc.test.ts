/**
 * The payload operations' JS side (src/bench/ipc.ts), without KVM: sum64() and the source the
 * worker and the socket child run (SUM64_SOURCE) against a BigInt reference, on lengths that are
 * not multiples of 8 (the last word is zero-padded, as kvstore.c's sum64() does), at unaligned
 * offsets, and streamed in arbitrary pieces as socket reads arrive.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { sum64, SUM64_SOURCE, sum64Result, sum64Update } from "../src/bench/payload-ops.ts";

/** The definition: little-endian u64 words, the last partial one zero-padded, summed mod 2^64. */
function reference(p: Uint8Array): bigint {
  let s = 0n;
  for (let i = 0; i < p.length; i++) s += BigInt(p[i]!) << BigInt(8 * (i % 8));
  return BigInt.asUintN(64, s);
}

type Update = (acc: Float64Array, p: Uint8Array, pos: number) => void;
type Result = (acc: Float64Array) => bigint;
/** The functions exactly as the worker and the child process get them. */
const source = new Function(`${SUM64_SOURCE}\nreturn { sum64Update, sum64Result };`)() as { sum64Update: Update; sum64Result: Result };

const impls: Array<[string, Update, Result]> = [
  ["sum64Update (TypeScript)", sum64Update, sum64Result],
  ["SUM64_SOURCE (worker, socket child)", source.sum64Update, source.sum64Result],
];

/** Sums `p` fed in pieces that end at `cuts` (offsets into p), each piece at its stream offset. */
function streamed(update: Update, result: Result, p: Uint8Array, cuts: number[]): bigint {
  const acc = new Float64Array(2);
  let pos = 0;
  for (const end of [...cuts.filter((c) => c > 0 && c < p.length).sort((a, b) => a - b), p.length]) {
    if (end < pos) continue;
    update(acc, p.subarray(pos, end), pos);
    pos = end;
  }
  return result(acc);
}

function randomBytes(n: number, seed: number): Uint8Array {
  const p = new Uint8Array(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    p[i] = x & 0xff;
  }
  return p;
}

describe("sum64", () => {
  it("is the zero-padded u64 word sum on every length 0..64", () => {
    const p = randomBytes(64, 7);
    for (let n = 0; n <= 64; n++) expect(sum64(p.subarray(0, n)), `length ${n}`).toBe(reference(p.subarray(0, n)));
  });

  it("wraps at 2^64 and counts a tail byte in its lane", () => {
    const ones = new Uint8Array(24).fill(0xff); // three words of 2^64 - 1
    expect(sum64(ones)).toBe(2n ** 64n - 3n);
    expect(sum64(Uint8Array.of(1, 2, 3))).toBe(0x030201n);
    expect(sum64(Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80))).toBe(0x80n << 32n);
    expect(sum64(new Uint8Array(0))).toBe(0n);
  });

  it.each(impls)("%s: stays exact past 2^21 words of 0xff (without the carry folds a double would round)", (_name, update, result) => {
    const p = new Uint8Array(17 * 1024 * 1024 + 5).fill(0xff);
    const words = BigInt(Math.floor(p.length / 8));
    expect(streamed(update, result, p, [])).toBe(BigInt.asUintN(64, words * (2n ** 64n - 1n) + 0xff_ffff_ffffn));
  });

  it.each(impls)("%s: any bytes, any offset in the buffer, any pieces", (_name, update, result) => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.integer({ min: 0, max: 7 }),
        fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 6 }),
        (bytes, shift, cuts) => {
          // The same bytes at an address that is not 4-aligned: the DataView path.
          const buffer = new Uint8Array(bytes.length + shift);
          buffer.set(bytes, shift);
          const p = buffer.subarray(shift);
          const want = reference(bytes);
          expect(streamed(update, result, p, [])).toBe(want);
          expect(streamed(update, result, p, cuts)).toBe(want);
        },
      ),
      { numRuns: 300 },
    );
  });
});
