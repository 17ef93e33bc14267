/** Hand-made ELF64 images for the parser and bad-input tests (runs on Node, Bun and Deno). */

/** A program header. flags: PF_R 4 | PF_W 2 | PF_X 1. */
export interface Phdr {
  type?: number;
  flags: number;
  offset: number;
  vaddr: number;
  filesz: number;
  memsz: number;
}

export interface ElfHeaderOptions {
  entry?: number | bigint;
  type?: number;
  machine?: number;
  cls?: number;
  data?: number;
}

export const PF_R = 4, PF_W = 2, PF_X = 1;

/**
 * Write an ELF64 header (no sections) and program headers at offset 64 into `bytes`, which must
 * already hold the segments' file bytes. Defaults: ELFCLASS64, little-endian, ET_EXEC, EM_X86_64.
 */
export function writeElfHeaders(bytes: Uint8Array, phdrs: readonly Phdr[], o: ElfHeaderOptions = {}): Uint8Array {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  bytes.set([0x7f, 0x45, 0x4c, 0x46, o.cls ?? 2, o.data ?? 1, 1], 0);
  v.setUint16(16, o.type ?? 2, true);
  v.setUint16(18, o.machine ?? 62, true);
  v.setUint32(20, 1, true);
  v.setBigUint64(24, BigInt(o.entry ?? 0), true);
  v.setBigUint64(32, 64n, true); // e_phoff
  v.setBigUint64(40, 0n, true); // e_shoff
  v.setUint16(52, 64, true);
  v.setUint16(54, 56, true);
  v.setUint16(56, phdrs.length, true);
  v.setUint16(58, 64, true);
  phdrs.forEach((p, i) => {
    const off = 64 + i * 56;
    v.setUint32(off, p.type ?? 1, true);
    v.setUint32(off + 4, p.flags, true);
    v.setBigUint64(off + 8, BigInt(p.offset), true);
    v.setBigUint64(off + 16, BigInt(p.vaddr), true);
    v.setBigUint64(off + 24, BigInt(p.vaddr), true);
    v.setBigUint64(off + 32, BigInt(p.filesz), true);
    v.setBigUint64(off + 40, BigInt(p.memsz), true);
    v.setBigUint64(off + 48, 0x1000n, true);
  });
  return bytes;
}
