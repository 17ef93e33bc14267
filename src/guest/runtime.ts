/** The assembled guest runtime (guests/runtime/runtime.S) as bytes and symbol offsets. */
import { RUNTIME_BYTES_BASE64, RUNTIME_SYMBOLS } from "./runtime.generated.ts";

export type RuntimeSymbol = keyof typeof RUNTIME_SYMBOLS;

let bytes: Uint8Array | undefined;

/** The flat runtime image, linked at offset 0. */
export function runtimeBytes(): Uint8Array {
  if (!bytes) {
    const bin = atob(RUNTIME_BYTES_BASE64);
    bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  }
  return bytes;
}

/** Offset of a runtime symbol from the start of the image. */
export function runtimeSymbol(name: RuntimeSymbol): number {
  return RUNTIME_SYMBOLS[name];
}

/** Offset of the stub of exception vector `v` (0-31). */
export function stubOffset(vector: number): number {
  const off = (RUNTIME_SYMBOLS as Record<string, number>)[`stub_${vector}`];
  if (off === undefined) throw new RangeError(`no runtime stub for vector ${vector}`);
  return off;
}

/**
 * Page-table writes the mailbox carries per service run: the size of `mb_pt_writes` in the
 * assembled runtime, in (address, value) pairs of 16 bytes.
 */
export const MAILBOX_PT_WRITES = (RUNTIME_SYMBOLS.mb_pt_writes_end - RUNTIME_SYMBOLS.mb_pt_writes) / 16;
