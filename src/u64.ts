/**
 * 64-bit words as JS numbers, stored as two little-endian u32 halves: the one place that splits
 * and joins them (guest memory, kvm_run registers, memslot structs). Exact for values below
 * 2^53, which covers every address and length ipre handles; callers that need all 64 bits use
 * bigint views instead.
 */
export const TWO32 = 2 ** 32;

/** The unsigned 64-bit word at u32 index `i`. */
export function getU64(u32: Uint32Array, i: number): number {
  return u32[i]! + u32[i + 1]! * TWO32;
}

/** The signed 64-bit word at u32 index `i` (an upper-half address stays exact as a negative number). */
export function getI64(u32: Uint32Array, i: number): number {
  return u32[i]! + (u32[i + 1]! | 0) * TWO32;
}

/** Store a non-negative integer below 2^64 (exact below 2^53) at u32 index `i`. */
export function setU64(u32: Uint32Array, i: number, value: number): void {
  const hi = Math.floor(value / TWO32);
  u32[i] = value - hi * TWO32;
  u32[i + 1] = hi;
}

/** The same for a DataView at a byte offset. */
export function setU64View(dv: DataView, offset: number, value: number): void {
  dv.setUint32(offset, value % TWO32, true);
  dv.setUint32(offset + 4, Math.floor(value / TWO32), true);
}
