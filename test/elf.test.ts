import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ElfError } from "../src/errors.ts";
import { isElf, parseElf } from "../src/guest/elf.ts";
import { type ElfHeaderOptions, PF_R, PF_W, PF_X, type Phdr, writeElfHeaders } from "./scenarios/elf-builder.ts";

const examples = fileURLToPath(new URL("../guests/examples/", import.meta.url));
const load = (name: string): Uint8Array => new Uint8Array(readFileSync(`${examples}${name}.elf`));

function expectElfError(bytes: Uint8Array, fragment: string | RegExp, options: Parameters<typeof parseElf>[1] = {}): void {
  let caught: unknown;
  try {
    parseElf(bytes, options);
  } catch (err) {
    caught = err;
  }
  expect(caught, "parseElf should throw").toBeInstanceOf(ElfError);
  const message = (caught as Error).message;
  if (typeof fragment === "string") expect(message).toContain(fragment);
  else expect(message).toMatch(fragment);
}

// ------------------------------------------------------------------ a hand-made ELF builder

interface MakeOpts extends ElfHeaderOptions {
  phdrs?: Phdr[];
  size?: number;
}
const R = PF_R, W = PF_W, X = PF_X;

/** An ELF64 file: header, program headers at 64, payload bytes 0xAB from 0x1000, no sections. */
function makeElf(opts: MakeOpts = {}): Uint8Array {
  const phdrs = opts.phdrs ?? [
    { flags: R | X, offset: 0x1000, vaddr: 0x400000, filesz: 0x100, memsz: 0x100 },
    { flags: R | W, offset: 0x2000, vaddr: 0x401000, filesz: 0x10, memsz: 0x2000 },
  ];
  const bytes = new Uint8Array(opts.size ?? 0x3000);
  bytes.fill(0xab, 0x1000);
  return writeElfHeaders(bytes, phdrs, { ...opts, entry: opts.entry ?? 0x400000 });
}

/** A copy of bytes with a little-endian field overwritten. */
function patch(bytes: Uint8Array, offset: number, width: 1 | 2 | 4 | 8, value: number | bigint): Uint8Array {
  const copy = bytes.slice();
  const v = new DataView(copy.buffer);
  if (width === 1) v.setUint8(offset, Number(value));
  else if (width === 2) v.setUint16(offset, Number(value), true);
  else if (width === 4) v.setUint32(offset, Number(value), true);
  else v.setBigUint64(offset, BigInt(value), true);
  return copy;
}

// ------------------------------------------------------------------ the built examples

describe("parseElf on the built examples", () => {
  it("add.elf: one R X segment at 0x400000, symbols, no exports, no entry", () => {
    const bytes = load("add");
    expect(isElf(bytes)).toBe(true);
    const img = parseElf(bytes);
    expect(img.entry).toBe(0);
    expect(img.segments).toHaveLength(1);
    const [text] = img.segments;
    expect(text).toMatchObject({ vaddr: 0x400000, readable: true, writable: false, executable: true });
    expect(text!.data.length).toBe(text!.filesz);
    expect(img.lowest).toBe(0x400000);
    expect(img.highest).toBe(0x401000);
    for (const name of ["add", "mul", "sum_bytes", "str_len", "memcpy", "memset"]) {
      const sym = img.symbols.get(name);
      expect(sym, name).toBeDefined();
      expect(sym).toMatchObject({ type: "func", section: ".text", bind: "global" });
      expect(sym!.value).toBeGreaterThanOrEqual(0x400000);
      expect(sym!.value + sym!.size).toBeLessThanOrEqual(text!.vaddr + text!.memsz);
    }
    expect(img.symbols.get("__ipre_gates")).toMatchObject({ value: 0x3fe00000, section: "", type: "notype" });
    expect(img.symbols.has("add.c")).toBe(false); // STT_FILE entries are skipped
    expect(img.exports).toEqual([]);
    // `add` is `lea (%rdi,%rsi,1),%rax; ret`
    const add = img.symbols.get("add")!;
    const code = text!.data.subarray(add.value - text!.vaddr, add.value - text!.vaddr + add.size);
    expect(Array.from(code)).toEqual([0x48, 0x8d, 0x04, 0x37, 0xc3]);
  });

  it("hostcall.elf: a separate read-only segment holds the string literal", () => {
    const img = parseElf(load("hostcall"));
    expect(img.segments.map((s) => [s.readable, s.writable, s.executable])).toEqual([
      [true, false, true],
      [true, false, false],
    ]);
    const ro = img.segments[1]!;
    expect(ro.vaddr % 4096).toBe(0);
    expect(new TextDecoder().decode(ro.data)).toContain("hello from guest\n");
  });

  it("kvstore.elf: window 1, exports only IPRE_EXPORT functions, .bss beyond the file bytes", () => {
    const img = parseElf(load("kvstore"));
    expect(img.exports).toEqual([
      "call_back", "checksum", "kv_count", "kv_insert", "kv_lookup", "remote_fault", "remote_fsbase", "remote_hostcall",
      "remote_spin", "sum64", "vec_scale",
    ]);
    expect(img.symbols.get("kv_secret")).toMatchObject({ type: "func", section: ".text", bind: "global" });
    expect(img.symbols.get("kv_lookup")).toMatchObject({ type: "func", section: ".ipre_export" });
    expect(img.symbols.get("kv_data_marker")).toMatchObject({ type: "object", section: ".data", size: 8 });
    expect(img.lowest).toBeGreaterThanOrEqual(0x40000000);
    expect(img.highest).toBeLessThanOrEqual(0x80000000);
    const rw = img.segments.find((s) => s.writable)!;
    expect(rw.executable).toBe(false);
    expect(rw.memsz).toBeGreaterThan(rw.filesz);
    const marker = img.symbols.get("kv_data_marker")!;
    const view = new DataView(rw.data.buffer, rw.data.byteOffset, rw.data.byteLength);
    expect(view.getBigInt64(marker.value - rw.vaddr, true)).toBe(0x1234n);
  });

  it("kvcaller.elf: remote symbols are absolute", () => {
    const img = parseElf(load("kvcaller"));
    expect(img.symbols.get("serve")).toMatchObject({ type: "func", section: ".text" });
    expect(img.symbols.get("kv_lookup")).toMatchObject({ section: "", type: "notype" });
    expect(img.symbols.get("kv_lookup")!.value).toBe(parseElf(load("kvstore")).symbols.get("kv_lookup")!.value);
    expect(img.exports).toEqual([]);
  });

  it("a stripped file (no section headers) has no symbols", () => {
    const bytes = patch(patch(load("add"), 40, 8, 0), 60, 2, 0);
    const img = parseElf(bytes);
    expect(img.symbols.size).toBe(0);
    expect(img.exports).toEqual([]);
    expect(img.segments).toHaveLength(1);
  });

  it("works on a Uint8Array that is a view into a larger buffer", () => {
    const bytes = load("kvstore");
    const big = new Uint8Array(bytes.length + 13);
    big.set(bytes, 13);
    const img = parseElf(big.subarray(13));
    expect(img.exports).toContain("kv_insert");
    expect(img.segments[0]!.data[0]).toBe(bytes[0x1000]);
  });
});

// ------------------------------------------------------------------ hand-made images

describe("parseElf on hand-made images", () => {
  it("accepts the builder's default image", () => {
    const img = parseElf(makeElf());
    expect(img.entry).toBe(0x400000);
    expect(img.segments).toHaveLength(2);
    expect(img.segments[1]).toMatchObject({ vaddr: 0x401000, filesz: 0x10, memsz: 0x2000, writable: true });
    expect(img.lowest).toBe(0x400000);
    expect(img.highest).toBe(0x403000);
    expect(img.symbols.size).toBe(0);
  });

  it("isElf", () => {
    expect(isElf(makeElf())).toBe(true);
    expect(isElf(new Uint8Array([0x7f, 0x45, 0x4c]))).toBe(false);
    expect(isElf(new TextEncoder().encode("#!/bin/sh\n"))).toBe(false);
  });

  it("rejects a truncated file", () => {
    expectElfError(new Uint8Array(0), "truncated: file is 0 bytes");
    expectElfError(load("add").subarray(0, 40), "truncated: file is 40 bytes, smaller than the 64-byte ELF header");
  });

  it("rejects program headers cut off by truncation", () => {
    expectElfError(load("add").subarray(0, 100), "program headers out of file bounds");
  });

  it("rejects a segment whose file bytes are cut off by truncation", () => {
    expectElfError(load("add").subarray(0, 0x1010), /PT_LOAD #0: file range \[0x1000, 0x1131\) is outside the file \(4112 bytes\)/);
  });

  it("rejects bad magic", () => {
    expectElfError(patch(makeElf(), 0, 1, 0x7e), "bad magic");
    expectElfError(new Uint8Array(64).fill(0x41), "found 41 41 41 41");
  });

  it("rejects ELFCLASS32", () => {
    expectElfError(makeElf({ cls: 1 }), "not ELFCLASS64: EI_CLASS is 1 (ELFCLASS32");
  });

  it("rejects big-endian", () => {
    expectElfError(makeElf({ data: 2 }), "not little-endian");
  });

  it("rejects a bad EI_VERSION", () => {
    expectElfError(patch(makeElf(), 6, 1, 0), "unsupported ELF version");
  });

  it("rejects machines other than x86-64", () => {
    expectElfError(makeElf({ machine: 3 }), "e_machine is 3 (EM_386), not EM_X86_64 (62)");
    expectElfError(makeElf({ machine: 183 }), "EM_AARCH64");
  });

  it("rejects ET_DYN (PIE) and ET_REL", () => {
    expectElfError(makeElf({ type: 3 }), /ET_DYN.*not ET_EXEC: ipre loads only static non-PIE executables/);
    expectElfError(makeElf({ type: 1 }), "ET_REL (relocatable object), not ET_EXEC");
    expectElfError(patch(load("add"), 16, 2, 3), "static non-PIE");
  });

  it("rejects program headers outside the file", () => {
    expectElfError(patch(makeElf(), 32, 8, 0x2ff0), "program headers out of file bounds: 2 x 56 bytes at offset 0x2ff0");
    expectElfError(patch(makeElf(), 56, 2, 300), "program headers out of file bounds: 300 x 56 bytes at offset 0x40, file is 12288 bytes");
    expectElfError(patch(makeElf(), 32, 8, 8), "program headers out of file bounds");
  });

  it("rejects a missing or odd program header table", () => {
    expectElfError(patch(makeElf(), 56, 2, 0), "no program headers");
    expectElfError(patch(makeElf(), 54, 2, 32), "e_phentsize is 32, expected 56");
  });

  it("rejects 64-bit fields that do not fit a JS number", () => {
    expectElfError(patch(makeElf(), 32, 8, 1n << 60n), "e_phoff 0x1000000000000000 is too large");
  });

  it("rejects p_filesz > p_memsz", () => {
    const phdrs = [{ flags: R | X, offset: 0x1000, vaddr: 0x400000, filesz: 0x200, memsz: 0x100 }];
    expectElfError(makeElf({ phdrs }), "PT_LOAD #0: p_filesz (0x200) > p_memsz (0x100)");
  });

  it("rejects a segment file range outside the file", () => {
    const phdrs = [{ flags: R | X, offset: 0x2800, vaddr: 0x400800, filesz: 0x1000, memsz: 0x1000 }];
    expectElfError(makeElf({ phdrs }), "PT_LOAD #0: file range [0x2800, 0x3800) is outside the file (12288 bytes)");
  });

  it("rejects absurd sizes", () => {
    const phdrs = [{ flags: R | W, offset: 0x1000, vaddr: 0x400000, filesz: 0, memsz: 0x40000001 }];
    expectElfError(makeElf({ phdrs, entry: 0 }), "p_memsz 0x40000001 is absurd (more than 1 GiB)");
  });

  it("rejects overlapping segments", () => {
    const phdrs = [
      { flags: R | X, offset: 0x1000, vaddr: 0x400000, filesz: 0x1000, memsz: 0x1000 },
      { flags: R | X, offset: 0x1800, vaddr: 0x400800, filesz: 0x100, memsz: 0x100 },
    ];
    expectElfError(makeElf({ phdrs }), "overlapping PT_LOAD segments: #0 [0x400000, 0x401000) and #1 [0x400800, 0x400900)");
  });

  it("rejects segments sharing a page with different permissions", () => {
    const phdrs = [
      { flags: R | X, offset: 0x1000, vaddr: 0x400000, filesz: 0x100, memsz: 0x100 },
      { flags: R | W, offset: 0x1200, vaddr: 0x400200, filesz: 0x10, memsz: 0x10 },
    ];
    expectElfError(makeElf({ phdrs }), "share the page 0x400000 with different permissions");
  });

  it("accepts segments sharing a page with the same permissions", () => {
    const phdrs = [
      { flags: R, offset: 0x1000, vaddr: 0x400000, filesz: 0x100, memsz: 0x100 },
      { flags: R | X, offset: 0x2000, vaddr: 0x401000, filesz: 0x100, memsz: 0x100 },
      { flags: R, offset: 0x1200, vaddr: 0x400200, filesz: 0x10, memsz: 0x10 },
    ];
    const img = parseElf(makeElf({ phdrs, entry: 0x401000 }));
    expect(img.segments.map((s) => s.vaddr)).toEqual([0x400000, 0x400200, 0x401000]); // sorted
  });

  it("rejects non-canonical addresses", () => {
    const phdrs = [{ flags: R | X, offset: 0x1000, vaddr: 0x800000000000, filesz: 0x100, memsz: 0x100 }];
    expectElfError(makeElf({ phdrs, entry: 0 }), "is not a canonical lower-half address range");
    const high = [{ flags: R | X, offset: 0x1000, vaddr: 0x7ffffffff000, filesz: 0x100, memsz: 0x2000 }];
    expectElfError(makeElf({ phdrs: high, entry: 0 }), "canonical");
    expectElfError(makeElf({ entry: 0xffffffff80000000n }), "entry point 0xffffffff80000000 is not a canonical");
  });

  it("rejects p_vaddr and p_offset that are not congruent modulo 4096", () => {
    const phdrs = [{ flags: R | X, offset: 0x1010, vaddr: 0x400000, filesz: 0x100, memsz: 0x100 }];
    expectElfError(makeElf({ phdrs }), "p_vaddr 0x400000 and p_offset 0x1010 are not congruent modulo 4096");
    // Without file bytes (pure .bss) the offset does not matter.
    const bss = [{ flags: R | W, offset: 0x1010, vaddr: 0x400000, filesz: 0, memsz: 0x100 }];
    expect(parseElf(makeElf({ phdrs: bss, entry: 0 })).segments[0]!.data.length).toBe(0);
  });

  it("checks the entry point only when it is not 0", () => {
    expectElfError(makeElf({ entry: 0x500000 }), "entry point 0x500000 is not inside an executable PT_LOAD segment");
    expectElfError(makeElf({ entry: 0x401000 }), "entry point 0x401000 is not inside an executable PT_LOAD"); // RW
    expect(parseElf(makeElf({ entry: 0 })).entry).toBe(0);
    expect(parseElf(makeElf({ entry: 0x4000ff })).entry).toBe(0x4000ff);
  });

  it("rejects dynamically linked files and TLS", () => {
    const base = { flags: R | X, offset: 0x1000, vaddr: 0x400000, filesz: 0x100, memsz: 0x100 };
    expectElfError(makeElf({ phdrs: [base, { ...base, type: 3 }] }), "PT_INTERP: the file is dynamically linked");
    expectElfError(makeElf({ phdrs: [base, { ...base, type: 2 }] }), "PT_DYNAMIC");
    expectElfError(makeElf({ phdrs: [base, { ...base, type: 7 }] }), "PT_TLS: thread-local storage is not supported");
  });

  it("ignores empty PT_LOADs and other program header types, but needs one non-empty PT_LOAD", () => {
    const base = { flags: R | X, offset: 0x1000, vaddr: 0x400000, filesz: 0x100, memsz: 0x100 };
    const empty = { flags: R, offset: 0, vaddr: 0, filesz: 0, memsz: 0 };
    const stack = { type: 0x6474e551, flags: R | W, offset: 0, vaddr: 0, filesz: 0, memsz: 0 }; // PT_GNU_STACK
    expect(parseElf(makeElf({ phdrs: [base, empty, stack] })).segments).toHaveLength(1);
    expectElfError(makeElf({ phdrs: [empty, stack], entry: 0 }), "no PT_LOAD segment with p_memsz > 0");
  });

  it("rejects section headers outside the file", () => {
    const add = load("add");
    expectElfError(patch(add, 40, 8, add.length - 10), "section headers out of file bounds");
    expectElfError(patch(add, 60, 2, 500), "section headers out of file bounds: 500 x 64 bytes");
  });

  it("rejects a bad section string table index", () => {
    expectElfError(patch(load("add"), 62, 2, 999), "e_shstrndx 999 is not a valid section index");
  });

  it("every error is an ElfError with an 'invalid ELF' message", () => {
    expect(() => parseElf(makeElf({ machine: 40 }))).toThrow(ElfError);
    expect(() => parseElf(makeElf({ machine: 40 }))).toThrow(/^invalid ELF: /);
  });
});

// ------------------------------------------------------------------ static-PIE (Linux programs)

describe("parseElf of a static-PIE (linux: true)", () => {
  const linuxDir = fileURLToPath(new URL("../guests/linux/", import.meta.url));
  const linux = (name: string): Uint8Array => new Uint8Array(readFileSync(`${linuxDir}${name}.elf`));
  const WINDOW2 = 2 * 0x40000000 + 0x400000;

  it.each(["hello-pie", "hello-rs"])("%s: placed at window 0 + 4 MiB by default, or at any base; entry, segments and symbols move together", (name) => {
    const bytes = linux(name);
    expectElfError(bytes, /ET_DYN.*not ET_EXEC/); // freestanding rules: ET_EXEC only
    const file = parseElf(bytes, { linux: true, base: 0 }); // the file's own addresses
    expect(file.bias).toBe(0);
    expect(file.lowest).toBe(0);
    const w0 = parseElf(bytes, { linux: true });
    const w2 = parseElf(bytes, { linux: true, base: WINDOW2 });
    for (const [img, base] of [[w0, 0x400000], [w2, WINDOW2]] as const) {
      expect(img.bias).toBe(base);
      expect(img.lowest).toBe(base);
      expect(img.highest).toBe(file.highest + base);
      expect(img.entry).toBe(file.entry + base);
      expect(img.segments.map((s) => s.vaddr)).toEqual(file.segments.map((s) => s.vaddr + base));
      expect(img.segments.map((s) => [s.data.byteOffset, s.data.length])).toEqual(file.segments.map((s) => [s.data.byteOffset, s.data.length]));
      const main = img.symbols.get("main")!;
      expect(main).toMatchObject({ type: "func", section: ".text" });
      expect(main.value).toBe(file.symbols.get("main")!.value + base);
      const text = img.segments.find((s) => s.executable)!;
      expect(main.value).toBeGreaterThanOrEqual(text.vaddr);
      expect(main.value).toBeLessThan(text.vaddr + text.memsz);
    }
  });

  it("a static ET_EXEC of any toolchain keeps its addresses (bias 0), with or without linux", () => {
    for (const name of ["hello", "hello-musl", "hello-cpp"]) {
      const img = parseElf(linux(name), { linux: true, base: WINDOW2 });
      expect(img.bias, name).toBe(0);
      expect(img.lowest, name).toBe(0x400000);
    }
    expectElfError(linux("hello"), "PT_TLS"); // freestanding rules
  });

  const text = { flags: R | X, offset: 0x1000, vaddr: 0x1000, filesz: 0x100, memsz: 0x100 };
  const dynamic = { type: 2, flags: R | W, offset: 0x2000, vaddr: 0x2000, filesz: 0x10, memsz: 0x10 };
  const data = { flags: R | W, offset: 0x2000, vaddr: 0x2000, filesz: 0x10, memsz: 0x2000 };

  it("moves a hand-made static-PIE by base - its lowest page", () => {
    const img = parseElf(makeElf({ type: 3, phdrs: [text, data, dynamic], entry: 0x1010 }), { linux: true, base: 0x80400000 });
    expect(img.bias).toBe(0x80400000 - 0x1000);
    expect(img.entry).toBe(0x80400010);
    expect(img.segments.map((s) => [s.vaddr, s.memsz])).toEqual([[0x80400000, 0x100], [0x80401000, 0x2000]]);
    expect([img.lowest, img.highest]).toEqual([0x80400000, 0x80403000]);
  });

  it("refuses ET_DYN that is not a static-PIE, and what no Linux program is", () => {
    expectElfError(makeElf({ type: 3, phdrs: [text, data], entry: 0x1010 }), "ET_DYN without PT_DYNAMIC: not a self-relocating static-PIE", { linux: true });
    const interp = { ...dynamic, type: 3 };
    expectElfError(makeElf({ type: 3, phdrs: [text, data, interp, dynamic], entry: 0x1010 }), "PT_INTERP: the file is dynamically linked", { linux: true });
    expectElfError(makeElf({ type: 3, phdrs: [text, data, dynamic], entry: 0x1010 }), /ET_DYN.*not ET_EXEC/); // not linux
    expectElfError(makeElf({ type: 1 }), "e_type is ET_REL (relocatable object): ipre runs static executables (ET_EXEC) and static-PIE (ET_DYN)", { linux: true });
    const exec = { flags: R | X, offset: 0x1000, vaddr: 0x400000, filesz: 0x100, memsz: 0x100 };
    expectElfError(makeElf({ phdrs: [exec, dynamic] }), "PT_DYNAMIC: the file is dynamically linked", { linux: true }); // ET_EXEC + PT_DYNAMIC
    expectElfError(makeElf({ type: 3, phdrs: [text, dynamic], entry: 0x2000 }), "entry point 0x7ffffff01000 is not inside an executable PT_LOAD", { linux: true, base: 2 ** 47 - 0x100000 });
    expectElfError(makeElf({ type: 3, phdrs: [text, { ...data, memsz: 0x100000 }, dynamic], entry: 0x1010 }), "above 2^47", { linux: true, base: 2 ** 47 - 0x100000 });
    expect(() => parseElf(makeElf({ type: 3, phdrs: [text, dynamic] }), { linux: true, base: 0x400123 })).toThrow(RangeError);
  });
});
