/**
 * ELF inputs for the property-based tests: valid images synthesized together with what
 * parseElf must return for them, a structure-aware mutator (header fields of any valid image
 * set to boundary values), and the invariants every accepted image must satisfy.
 */
import { deflateRawSync, inflateRawSync } from "node:zlib";
import fc from "fast-check";
import { assert, expect } from "vitest";
import type { ElfImage, ElfSegment, ElfSymbol } from "../../src/guest/elf.ts";
import { type Phdr, writeElfHeaders } from "../scenarios/elf-builder.ts";

export const PAGE = 4096;
const MAX_SEGMENT = 1024 ** 3;
const CANONICAL = 2 ** 47;
const U64_MAX = 2n ** 64n - 1n;
const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

/**
 * `bytes`, printed in a counterexample as `inflate("…")`, the deflated bytes in base64, instead
 * of thousands of numbers; {@link inflate} turns that back into the input.
 */
export function compact(bytes: Uint8Array): Uint8Array {
  const text = () => `inflate("${deflateRawSync(bytes).toString("base64")}") /* ${bytes.length} bytes */`;
  Object.defineProperty(bytes, fc.toStringMethod, { value: text });
  return bytes;
}
export function inflate(base64: string): Uint8Array {
  return new Uint8Array(inflateRawSync(Buffer.from(base64, "base64")));
}

// ------------------------------------------------------------------ invariants of an accepted image

const isAddress = (n: number): boolean => Number.isSafeInteger(n) && n >= 0;
const permsOf = (s: ElfSegment): string => `${s.readable}${s.writable}${s.executable}`;

/**
 * What parseElf promises about every image it returns (src/guest/elf.ts, header comment), for
 * the bytes `input` it was given. `flat` images (flatImage) have no ELF section rules for exports.
 */
export function expectValidImage(img: ElfImage, input: Uint8Array, flat = false): void {
  const segs = img.segments;
  assert(segs.length > 0, "at least one segment");
  for (const [i, s] of segs.entries()) {
    const at = `segment ${i} ${JSON.stringify({ vaddr: s.vaddr, memsz: s.memsz, filesz: s.filesz })}`;
    assert(isAddress(s.vaddr) && isAddress(s.memsz) && isAddress(s.filesz), `${at}: safe non-negative integers`);
    assert(s.memsz > 0 && s.memsz <= MAX_SEGMENT, `${at}: 0 < memsz <= 1 GiB`);
    assert(s.filesz <= s.memsz, `${at}: filesz <= memsz`);
    assert(s.vaddr + s.memsz <= CANONICAL, `${at}: ends at or below 2^47`);
    assert(s.data.length === s.filesz, `${at}: data length ${s.data.length}`);
    // The data is a view of the input, never bytes from outside it.
    assert(s.data.buffer === input.buffer, `${at}: data is a view of the input`);
    const offset = s.data.byteOffset - input.byteOffset;
    assert(offset >= 0 && offset + s.filesz <= input.length, `${at}: data within the input`);
    if (s.filesz > 0 && !flat) assert(s.vaddr % PAGE === offset % PAGE, `${at}: p_vaddr ≡ p_offset (${offset}) mod 4096`);
    assert([s.readable, s.writable, s.executable].every((flag) => typeof flag === "boolean"), `${at}: boolean flags`);
    if (i > 0) {
      const p = segs[i - 1]!;
      assert(p.vaddr + p.memsz <= s.vaddr, `${at}: sorted and not overlapping segment ${i - 1}`);
      if (Math.floor((p.vaddr + p.memsz - 1) / PAGE) === Math.floor(s.vaddr / PAGE)) {
        assert(permsOf(s) === permsOf(p), `${at}: shares a page with segment ${i - 1}, so has the same permissions`);
      }
    }
  }
  expect(img.lowest, "lowest").toBe(Math.floor(segs[0]!.vaddr / PAGE) * PAGE);
  expect(img.highest, "highest").toBe(Math.max(...segs.map((s) => alignUp(s.vaddr + s.memsz, PAGE))));
  assert(img.highest <= CANONICAL, "highest <= 2^47");
  assert(isAddress(img.entry) && img.entry < CANONICAL, `entry ${img.entry} is a lower-half address`);
  if (img.entry !== 0) {
    assert(segs.some((s) => s.executable && img.entry >= s.vaddr && img.entry < s.vaddr + s.memsz), `entry ${img.entry} inside an executable segment`);
  }
  for (const [name, sym] of img.symbols) {
    const at = `symbol ${JSON.stringify(name)}`;
    assert(sym.name === name && name !== "", `${at}: named by its key, not empty`);
    assert(isAddress(sym.value) && isAddress(sym.size), `${at}: value and size are safe non-negative integers`);
    assert(TYPES.has(sym.type) && BINDS.has(sym.bind) && typeof sym.section === "string", `${at}: type, bind, section`);
  }
  expect(img.exports, "exports sorted and unique").toEqual([...new Set(img.exports)].sort());
  for (const name of img.exports) assert(img.symbols.has(name), `export ${name} is a symbol`);
  if (!flat) {
    const exported = [...img.symbols.values()].filter(isExport).map((s) => s.name).sort();
    expect(img.exports, "exports = global/weak functions in .ipre_export").toEqual(exported);
  }
}

const TYPES = new Set(["func", "object", "notype", "other"]);
const BINDS = new Set(["local", "global", "weak", "other"]);
const isExport = (s: ElfSymbol): boolean => s.type === "func" && s.section === ".ipre_export" && (s.bind === "global" || s.bind === "weak");

/** The image with each segment's data as its place in `input`: comparable with toEqual across two parses. */
export function summary(img: ElfImage, input: Uint8Array): unknown {
  return {
    ...img,
    segments: img.segments.map(({ data, ...s }) => ({ ...s, data: [data.byteOffset - input.byteOffset, data.length] })),
    symbols: [...img.symbols.values()],
  };
}

// ------------------------------------------------------------------ valid images with their expected parse

interface SegPlan {
  /** Start on the previous segment's last page, with its permissions (allowed when they match). */
  sharePage: boolean;
  gapPages: number;
  pageOffset: number;
  memsz: number;
  /** filesz as a fraction of memsz, in 1/8. */
  fileEighths: number;
  flags: number;
}

interface SymPlan {
  name: number;
  type: number;
  bind: number;
  shndx: number;
  value: bigint;
  size: bigint;
}

/** Names that collide on purpose (the global-over-local rule), non-ASCII UTF-8 and "" included. */
const NAMES = ["", "f", "g", "main", "données", "函数", "x.y"];
const SECTION_NAMES = ["", ".text", ".ipre_export", ".data", ".bss", ".symtab", ".strtab", ".shstrtab"];
const SHT = { NULL: 0, PROGBITS: 1, SYMTAB: 2, STRTAB: 3, NOBITS: 8 };

/** Program header types that parseElf must skip (PT_NULL, PT_NOTE, PT_PHDR, GNU_STACK, GNU_RELRO, processor-specific). */
const IGNORED_PT = [0, 4, 6, 0x6474e551, 0x6474e552, 0x70000000];

export interface SynthElf {
  bytes: Uint8Array;
  /** What parseElf returns, or "error" when some symbol's value or size exceeds 2^53 - 1. */
  expected:
    | {
        entry: number;
        segments: Omit<ElfSegment, "data">[];
        /** Where each segment's data starts in the file. */
        dataOffsets: number[];
        lowest: number;
        highest: number;
        symbols: ElfSymbol[];
        exports: string[];
      }
    | "error";
}

const symValue = fc.oneof(
  { weight: 8, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 47n }) },
  { weight: 1, arbitrary: fc.constantFrom(2n ** 53n - 1n, 2n ** 53n, U64_MAX) },
);

const segPlan: fc.Arbitrary<SegPlan> = fc.record({
  sharePage: fc.boolean(),
  gapPages: fc.integer({ min: 0, max: 3 }),
  pageOffset: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: PAGE - 1 })),
  memsz: fc.integer({ min: 1, max: 3 * PAGE }),
  fileEighths: fc.integer({ min: 0, max: 8 }),
  flags: fc.integer({ min: 0, max: 7 }),
});

/** A symbol IPRE exports: a global or weak function in .ipre_export (section 2). */
const exportPlan: fc.Arbitrary<SymPlan> = fc.record({
  name: fc.integer({ min: 1, max: NAMES.length - 1 }),
  type: fc.constant(2),
  bind: fc.constantFrom(1, 2),
  shndx: fc.constant(2),
  value: fc.bigInt({ min: 0n, max: 2n ** 47n }),
  size: fc.bigInt({ min: 0n, max: 4096n }),
});

const anySymPlan: fc.Arbitrary<SymPlan> = fc.record({
  name: fc.integer({ min: 0, max: NAMES.length - 1 }),
  type: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 4 }) }, { weight: 1, arbitrary: fc.integer({ min: 5, max: 15 }) }),
  bind: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 2 }) }, { weight: 1, arbitrary: fc.integer({ min: 3, max: 15 }) }),
  shndx: fc.constantFrom(0, 1, 2, 2, 3, 4, 5, 0xfff1, 0xfff2, 200),
  value: symValue,
  size: symValue,
});
const symPlan = fc.oneof({ weight: 3, arbitrary: anySymPlan }, { weight: 1, arbitrary: exportPlan });

/**
 * A valid static ET_EXEC image (built with test/scenarios/elf-builder.ts), its PT_LOADs shuffled
 * among ignored program headers and empty PT_LOADs, optionally with .symtab/.strtab/.shstrtab.
 */
export const synthElf: fc.Arbitrary<SynthElf> = fc
  .record({
    basePage: fc.oneof(fc.integer({ min: 0, max: 4096 }), fc.integer({ min: 0, max: CANONICAL / PAGE - 64 })),
    segs: fc.array(segPlan, { minLength: 1, maxLength: 5 }),
    ignored: fc.array(fc.record({ type: fc.constantFrom(...IGNORED_PT, 1), vaddr: fc.maxSafeNat(), flags: fc.integer({ min: 0, max: 7 }) }), { maxLength: 3 }),
    order: fc.array(fc.nat(), { minLength: 8, maxLength: 8 }),
    entry: fc.option(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), { nil: undefined }),
    symbols: fc.option(fc.array(symPlan, { maxLength: 12 }), { nil: undefined }),
    fill: fc.integer({ min: 1, max: 255 }),
  })
  .map(({ basePage, segs, ignored, order, entry, symbols, fill }): SynthElf => {
    // Segments in address order; data placed in the file at offsets congruent to the address.
    const loads: (Omit<ElfSegment, "data"> & { offset: number; flags: number })[] = [];
    let end = basePage * PAGE;
    let fileEnd = 64 + 56 * (segs.length + ignored.length);
    for (const plan of segs) {
      const prev = loads[loads.length - 1];
      const share = plan.sharePage && prev !== undefined && end % PAGE !== 0;
      const vaddr = share ? end : alignUp(end, PAGE) + plan.gapPages * PAGE + plan.pageOffset;
      const memsz = Math.min(plan.memsz, CANONICAL - vaddr);
      if (memsz <= 0) break;
      const flags = share ? prev!.flags : plan.flags;
      const filesz = Math.floor((memsz * plan.fileEighths) / 8);
      const offset = alignUp(fileEnd, PAGE) + (vaddr % PAGE);
      if (filesz > 0) fileEnd = offset + filesz;
      loads.push({ vaddr, memsz, filesz, offset: filesz > 0 ? offset : 0, flags, readable: (flags & 4) !== 0, writable: (flags & 2) !== 0, executable: (flags & 1) !== 0 });
      end = vaddr + memsz;
    }
    const exec = loads.filter((s) => s.executable);
    const entryAddr = entry === undefined || exec.length === 0 ? 0 : (() => {
      const s = exec[Math.floor(entry * exec.length)]!;
      return s.vaddr + Math.floor(entry * s.memsz);
    })();

    // Sections after the segment data: null, 4 named ones the symbols can point at, .symtab, .strtab, .shstrtab.
    let sectionBytes: { shoff: number; table: Uint8Array } | undefined;
    let expectedSymbols: ElfSymbol[] | "error" = [];
    const encoder = new TextEncoder();
    const strtab: number[] = [0];
    const strOffset = (s: string): number => {
      if (s === "") return 0;
      const at = strtab.length;
      strtab.push(...encoder.encode(s), 0);
      return at;
    };
    const shstrtab: number[] = [0];
    const shName = SECTION_NAMES.map((s) => {
      if (s === "") return 0;
      const at = shstrtab.length;
      shstrtab.push(...encoder.encode(s), 0);
      return at;
    });
    if (symbols) {
      const names = NAMES.map(strOffset);
      const symtab = new Uint8Array(24 * (symbols.length + 1));
      const sv = new DataView(symtab.buffer);
      const chosen = new Map<string, ElfSymbol>();
      let error = false;
      symbols.forEach((p, i) => {
        const st = 24 * (i + 1);
        sv.setUint32(st, names[p.name]!, true);
        sv.setUint8(st + 4, (p.bind << 4) | p.type);
        sv.setUint16(st + 6, p.shndx, true);
        sv.setBigUint64(st + 8, p.value, true);
        sv.setBigUint64(st + 16, p.size, true);
        const name = NAMES[p.name]!;
        if (p.type === 3 || p.type === 4 || name === "") return;
        if (p.value > BigInt(Number.MAX_SAFE_INTEGER) || p.size > BigInt(Number.MAX_SAFE_INTEGER)) error = true;
        const sym: ElfSymbol = {
          name,
          value: Number(p.value),
          size: Number(p.size),
          type: (["notype", "object", "func"] as const)[p.type] ?? "other",
          section: p.shndx > 0 && p.shndx < SECTION_NAMES.length ? SECTION_NAMES[p.shndx]! : "",
          bind: (["local", "global", "weak"] as const)[p.bind] ?? "other",
        };
        const prev = chosen.get(name);
        const rank = (b: string) => (b === "global" || b === "weak" ? 1 : 0);
        if (!prev || rank(sym.bind) > rank(prev.bind)) chosen.set(name, sym);
      });
      expectedSymbols = error ? "error" : [...chosen.values()];
      const symtabOff = alignUp(fileEnd, 8);
      const strtabOff = symtabOff + symtab.length;
      const shstrtabOff = strtabOff + strtab.length;
      const shoff = alignUp(shstrtabOff + shstrtab.length, 8);
      const table = new Uint8Array(shoff + 64 * SECTION_NAMES.length - symtabOff);
      table.set(symtab, 0);
      table.set(strtab, strtabOff - symtabOff);
      table.set(shstrtab, shstrtabOff - symtabOff);
      const tv = new DataView(table.buffer);
      const section = (i: number, type: number, offset: number, size: number, link = 0, entsize = 0) => {
        const sh = shoff - symtabOff + 64 * i;
        tv.setUint32(sh, shName[i]!, true);
        tv.setUint32(sh + 4, type, true);
        tv.setBigUint64(sh + 24, BigInt(offset), true);
        tv.setBigUint64(sh + 32, BigInt(size), true);
        tv.setUint32(sh + 40, link, true);
        tv.setBigUint64(sh + 56, BigInt(entsize), true);
      };
      for (let i = 1; i <= 3; i++) section(i, SHT.PROGBITS, 0, 0);
      section(4, SHT.NOBITS, 1 << 20, 1 << 30); // .bss: NOBITS ranges are not file ranges
      section(5, SHT.SYMTAB, symtabOff, symtab.length, 6, 24);
      section(6, SHT.STRTAB, strtabOff, strtab.length);
      section(7, SHT.STRTAB, shstrtabOff, shstrtab.length);
      sectionBytes = { shoff, table };
      fileEnd = symtabOff + table.length;
    }

    const bytes = new Uint8Array(Math.max(fileEnd, 64 + 56 * (segs.length + ignored.length)));
    loads.forEach((s, i) => bytes.fill((fill + i) & 0xff || 1, s.offset, s.offset + s.filesz));
    const phdrs: Phdr[] = [
      ...loads.map((s) => ({ flags: s.flags, offset: s.offset, vaddr: s.vaddr, filesz: s.filesz, memsz: s.memsz })),
      ...ignored.map((p) => ({ type: p.type, flags: p.flags, offset: 0, vaddr: p.vaddr, filesz: 0, memsz: 0 })),
    ];
    const key = (i: number) => order[i % order.length]! * 16 + i;
    const shuffled = phdrs.map((p, i) => [key(i), p] as const).sort((a, b) => a[0] - b[0]).map(([, p]) => p);
    writeElfHeaders(bytes, shuffled, { entry: entryAddr });
    if (sectionBytes) {
      const v = new DataView(bytes.buffer);
      bytes.set(sectionBytes.table, fileEnd - sectionBytes.table.length);
      v.setBigUint64(40, BigInt(sectionBytes.shoff), true);
      v.setUint16(60, SECTION_NAMES.length, true);
      v.setUint16(62, 7, true);
    }
    compact(bytes);
    if (expectedSymbols === "error") return { bytes, expected: "error" };
    const segments = loads.map(({ offset: _o, flags: _f, ...s }) => s);
    return {
      bytes,
      expected: {
        entry: entryAddr,
        segments,
        dataOffsets: loads.map((s) => s.offset),
        lowest: Math.floor(segments[0]!.vaddr / PAGE) * PAGE,
        highest: alignUp(segments[segments.length - 1]!.vaddr + segments[segments.length - 1]!.memsz, PAGE),
        symbols: expectedSymbols,
        exports: expectedSymbols.filter(isExport).map((s) => s.name).sort(),
      },
    };
  });

// ------------------------------------------------------------------ structure-aware mutation

/** What a header field holds: its kind decides which values a mutation picks for it. */
type Kind = "number" | "ident" | "etype" | "machine" | "entsize" | "count" | "index" | "ptype" | "flags" | "shtype" | "info";

interface Field {
  offset: number;
  width: 1 | 2 | 4 | 8;
  kind: Kind;
}

/** Values that mean something for each kind of field (see parseElf's checks). */
const PICKS: Record<Exclude<Kind, "count" | "index">, readonly number[]> = {
  number: [0, 1, 8, 24, 64, 0x1000],
  ident: [0, 1, 2, 3],
  etype: [0, 1, 2, 3, 4],
  machine: [62, 3, 183, 0],
  entsize: [0, 1, 24, 56, 64],
  ptype: [0, 1, 2, 3, 4, 6, 7, 0x6474e551],
  flags: [0, 1, 2, 3, 4, 5, 6, 7],
  shtype: [0, 1, 2, 3, 8],
  info: [0x00, 0x01, 0x02, 0x03, 0x04, 0x10, 0x11, 0x12, 0x22, 0xf2],
};

interface Layout {
  fields: Field[];
  phoff: number;
  phnum: number;
  shoff: number;
  shnum: number;
}

const layoutCache = new WeakMap<Uint8Array, Layout>();

/** The header fields of a valid image: ELF header, program headers, section headers, symbols. */
function layoutOf(bytes: Uint8Array): Layout {
  const cached = layoutCache.get(bytes);
  if (cached) return cached;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields: Field[] = [];
  const f = (offset: number, width: Field["width"], kind: Kind = "number") => fields.push({ offset, width, kind });
  f(4, 1, "ident"), f(5, 1, "ident"), f(6, 1, "ident"), f(16, 2, "etype"), f(18, 2, "machine"), f(24, 8), f(32, 8), f(40, 8);
  f(54, 2, "entsize"), f(56, 2, "count"), f(58, 2, "entsize"), f(60, 2, "count"), f(62, 2, "index");
  const phoff = Number(v.getBigUint64(32, true));
  const phnum = v.getUint16(56, true);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + 56 * i;
    f(ph, 4, "ptype"), f(ph + 4, 4, "flags"), f(ph + 8, 8), f(ph + 16, 8), f(ph + 32, 8), f(ph + 40, 8);
  }
  const shoff = Number(v.getBigUint64(40, true));
  const shnum = shoff === 0 ? 0 : v.getUint16(60, true);
  for (let i = 0; i < shnum; i++) {
    const sh = shoff + 64 * i;
    f(sh, 4), f(sh + 4, 4, "shtype"), f(sh + 24, 8), f(sh + 32, 8), f(sh + 40, 4, "index"), f(sh + 56, 8, "entsize");
    if (v.getUint32(sh + 4, true) === SHT.SYMTAB) {
      const at = Number(v.getBigUint64(sh + 24, true));
      const count = Math.min(8, Number(v.getBigUint64(sh + 32, true)) / 24);
      for (let s = 1; s < count; s++) {
        const st = at + 24 * s;
        f(st, 4), f(st + 4, 1, "info"), f(st + 6, 2, "index"), f(st + 8, 8), f(st + 16, 8);
      }
    }
  }
  const layout = { fields, phoff, phnum, shoff, shnum };
  layoutCache.set(bytes, layout);
  return layout;
}

/**
 * A field value: one that means something for the field's kind (`pick`), a boundary of what
 * parseElf checks, one relative to the file size or the old value, or anything.
 */
type Value = { pick: number } | { abs: bigint } | { rel: "size" | "old"; delta: number };
const value: fc.Arbitrary<Value> = fc.oneof(
  { weight: 4, arbitrary: fc.nat().map((pick) => ({ pick })) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      0n, 1n, 2n, 3n, 7n, 24n, 56n, 64n, 0xfffn, 0x1000n, 0xff00n, 0xfff1n, 0xffffn, 2n ** 30n, 2n ** 30n + 1n,
      2n ** 47n - 4096n, 2n ** 47n - 1n, 2n ** 47n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n, U64_MAX,
    ).map((abs) => ({ abs })),
  },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: U64_MAX }).map((abs) => ({ abs })) },
  { weight: 3, arbitrary: fc.record({ rel: fc.constantFrom("size" as const, "old" as const), delta: fc.integer({ min: -80, max: 80 }) }) },
);

function pick(kind: Kind, n: number, shnum: number): bigint {
  if (kind === "count") return BigInt([0, 1, 2, shnum, shnum + 1, 0xffff][n % 6]!);
  if (kind === "index") return BigInt([0xfff1, 0xffff][n % (shnum + 3)] ?? n % (shnum + 3) - 2);
  const values = PICKS[kind];
  return BigInt(values[n % values.length]!);
}

type Mutation =
  | { kind: "field"; field: number; value: Value }
  /** Several fields of one section header at once: e.g. section 0 turned into a .symtab past the end of the file. */
  | { kind: "section"; index: number; type?: number; offset?: Value; size?: Value; link?: number }
  /** Several fields of one program header at once. */
  | { kind: "segment"; index: number; type?: number; offset?: Value; vaddr?: Value; filesz?: Value; memsz?: Value }
  | { kind: "byte"; at: number; value: number }
  | { kind: "truncate"; at: number }
  | { kind: "extend"; by: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant("field" as const), field: fc.nat(), value }) },
  {
    weight: 3,
    arbitrary: fc.record(
      { kind: fc.constant("section" as const), index: fc.nat(), type: fc.nat(), offset: value, size: value, link: fc.nat() },
      { requiredKeys: ["kind", "index"] },
    ),
  },
  {
    weight: 2,
    arbitrary: fc.record(
      { kind: fc.constant("segment" as const), index: fc.nat(), type: fc.nat(), offset: value, vaddr: value, filesz: value, memsz: value },
      { requiredKeys: ["kind", "index"] },
    ),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("byte" as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("extend" as const), by: fc.integer({ min: 1, max: 2 * PAGE }) }) },
);

/** Set the field at `offset` to `v` (a pick for its `kind`, a boundary, or relative to the file or the old value). */
function setField(bytes: Uint8Array, { offset, width, kind }: Field, v: Value, shnum: number): void {
  if (offset + width > bytes.length) return;
  const view = new DataView(bytes.buffer);
  const old = width === 8 ? view.getBigUint64(offset, true) : BigInt(width === 4 ? view.getUint32(offset, true) : width === 2 ? view.getUint16(offset, true) : view.getUint8(offset));
  const raw = "pick" in v ? pick(kind, v.pick, shnum) : "abs" in v ? v.abs : (v.rel === "size" ? BigInt(bytes.length) : old) + BigInt(v.delta);
  const x = BigInt.asUintN(width * 8, raw);
  if (width === 8) view.setBigUint64(offset, x, true);
  else if (width === 4) view.setUint32(offset, Number(x), true);
  else if (width === 2) view.setUint16(offset, Number(x), true);
  else view.setUint8(offset, Number(x));
}

function mutate(base: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  const { fields, phoff, phnum, shoff, shnum } = layoutOf(base);
  let bytes = base.slice();
  for (const m of mutations) {
    if (m.kind === "truncate") bytes = bytes.slice(0, m.at % (bytes.length + 1));
    else if (m.kind === "extend") {
      const longer = new Uint8Array(bytes.length + m.by);
      longer.set(bytes);
      bytes = longer;
    } else if (m.kind === "byte") {
      if (bytes.length > 0) bytes[m.at % bytes.length] = m.value;
    } else if (m.kind === "field") {
      setField(bytes, fields[m.field % fields.length]!, m.value, shnum);
    } else if (m.kind === "section") {
      if (shnum === 0) continue;
      const sh = shoff + 64 * (m.index % shnum);
      if (m.type !== undefined) setField(bytes, { offset: sh + 4, width: 4, kind: "shtype" }, { pick: m.type }, shnum);
      if (m.offset) setField(bytes, { offset: sh + 24, width: 8, kind: "number" }, m.offset, shnum);
      if (m.size) setField(bytes, { offset: sh + 32, width: 8, kind: "number" }, m.size, shnum);
      if (m.link !== undefined) setField(bytes, { offset: sh + 40, width: 4, kind: "index" }, { pick: m.link }, shnum);
    } else {
      const ph = phoff + 56 * (m.index % phnum);
      if (m.type !== undefined) setField(bytes, { offset: ph, width: 4, kind: "ptype" }, { pick: m.type }, shnum);
      if (m.offset) setField(bytes, { offset: ph + 8, width: 8, kind: "number" }, m.offset, shnum);
      if (m.vaddr) setField(bytes, { offset: ph + 16, width: 8, kind: "number" }, m.vaddr, shnum);
      if (m.filesz) setField(bytes, { offset: ph + 32, width: 8, kind: "number" }, m.filesz, shnum);
      if (m.memsz) setField(bytes, { offset: ph + 40, width: 8, kind: "number" }, m.memsz, shnum);
    }
  }
  return bytes;
}

/** 1 to 6 mutations of one of the valid images from `bases`. */
export function mutatedElf(bases: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc.tuple(bases, fc.array(mutation, { minLength: 1, maxLength: 6 })).map(([base, ms]) => compact(mutate(base, ms)));
}

/** Random bytes, half of them behind a valid ELF64 x86-64 ET_EXEC identification so they reach the program headers. */
export const randomElfLike: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 400 }).map(compact),
  fc.uint8Array({ minLength: 64, maxLength: 600 }).map((random) => {
    const b = random.slice();
    b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0);
    b.set([2, 0, 62, 0], 16);
    return compact(b);
  }),
);

/** A copy of `bytes` inside a larger buffer, surrounded by non-zero bytes: a read past the view changes the result. */
export function embedded(bytes: Uint8Array): Uint8Array {
  const buffer = new Uint8Array(bytes.length + 2 * 64).fill(0x41);
  buffer.set(bytes, 64);
  return buffer.subarray(64, 64 + bytes.length);
}

// ------------------------------------------------------------------ section tables drawn field by field

/** Where a section header's offset points: at one of the tables, at the file's end, or far off. */
const place = (farWeight: number) =>
  fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom("symtab" as const, "strtab" as const, "headers" as const, "end" as const) },
    { weight: farWeight, arbitrary: fc.constantFrom(0, 24, 2 ** 30, 2 ** 47, 2 ** 53 - 1) },
  );
/** Its size: the table's length, the rest of the file (± delta), or a number. */
const extent = (farWeight: number) =>
  fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom("fit" as const, "rest" as const) },
    { weight: farWeight, arbitrary: fc.constantFrom(0, 24, 48, 2 ** 30, 2 ** 47, 2 ** 53 - 1) },
  );
/** A third of the time `arb`, otherwise undefined: the field keeps its sane default. */
const sometimes = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.oneof({ weight: 2, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });

interface RawSection {
  type?: number;
  offset?: "symtab" | "strtab" | "headers" | "end" | number;
  size?: "fit" | "rest" | number;
  delta: number;
  link?: number;
  entsize?: number;
  name: number;
}

/** A section header drawn field by field; `wild` draws every field, otherwise each field overrides a sane default a third of the time. */
const rawSection = (wild: boolean): fc.Arbitrary<RawSection> => {
  const maybe = wild ? <T>(arb: fc.Arbitrary<T>) => arb : sometimes;
  return fc.record({
    type: maybe(fc.constantFrom(...PICKS.shtype)),
    offset: maybe(place(wild ? 8 : 1)),
    size: maybe(extent(wild ? 8 : 1)),
    delta: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -30, max: 30 }) }),
    link: maybe(fc.nat({ max: 8 })),
    entsize: maybe(fc.constantFrom(0, 24, 24, 64)),
    name: fc.nat({ max: 40 }),
  });
};

/** The sane section i: 1 is .symtab (linked to 2), 2 is its .strtab, the rest are PROGBITS over the headers. */
const saneSection = (i: number): Required<Omit<RawSection, "delta" | "name">> =>
  i === 1
    ? { type: SHT.SYMTAB, offset: "symtab", size: "fit", link: 2, entsize: 24 }
    : i === 2
      ? { type: SHT.STRTAB, offset: "strtab", size: "fit", link: 0, entsize: 0 }
      : { type: SHT.PROGBITS, offset: "headers", size: "fit", link: 0, entsize: 0 };

/** A string table: "", "f", "gg", "main", "x" at offsets 0, 1, 3, 6, 11. */
const NAME_TABLE = new TextEncoder().encode("\0f\0gg\0main\0x\0");

/**
 * One valid PT_LOAD, a real symbol table and string table, and 1 to 7 section headers whose
 * type, offset, size, link and entsize are drawn independently (section 0 included): the
 * combinations a mutation of a valid file hardly ever reaches.
 */
export const wildSectionsElf: fc.Arbitrary<Uint8Array> = fc
  .record({
    // Section 0 is never range-checked (its fields may carry extended counts): anything goes there.
    sections: fc.tuple(rawSection(true), fc.array(rawSection(false), { maxLength: 6 })).map(([first, rest]) => [first, ...rest]),
    symbols: fc.array(
      fc.record({
        // Mostly the start of a name in NAME_TABLE, sometimes anywhere (or past its end).
        name: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(1, 3, 6, 11) }, { weight: 1, arbitrary: fc.nat({ max: 40 }) }),
        info: fc.constantFrom(...PICKS.info),
        shndx: fc.nat({ max: 9 }),
        value: fc.nat({ max: 0x10000 }),
      }),
      { maxLength: 6 },
    ),
    shstrndx: fc.oneof(fc.constant(0), fc.nat({ max: 8 })),
    names: fc.oneof(fc.constant(NAME_TABLE), fc.uint8Array({ minLength: 1, maxLength: 40 })),
  })
  .map(({ sections, symbols, shstrndx, names }) => {
    const symtabAt = PAGE + 16, strtabAt = symtabAt + 24 * (symbols.length + 1), headersAt = alignUp(strtabAt + names.length, 8);
    const size = headersAt + 64 * sections.length;
    const bytes = new Uint8Array(size);
    bytes.fill(0x90, PAGE, PAGE + 16);
    writeElfHeaders(bytes, [{ flags: 5, offset: PAGE, vaddr: 0x400000, filesz: 16, memsz: 16 }]);
    const v = new DataView(bytes.buffer);
    symbols.forEach((s, i) => {
      const st = symtabAt + 24 * (i + 1);
      v.setUint32(st, s.name, true);
      v.setUint8(st + 4, s.info);
      v.setUint16(st + 6, s.shndx, true);
      v.setBigUint64(st + 8, BigInt(0x400000 + s.value), true);
    });
    bytes.set(names, strtabAt);
    const tables = { symtab: [symtabAt, strtabAt - symtabAt], strtab: [strtabAt, names.length], headers: [headersAt, 64 * sections.length], end: [size, 0] } as const;
    sections.forEach((raw, i) => {
      const sane = saneSection(i);
      const s = { type: raw.type ?? sane.type, offset: raw.offset ?? sane.offset, size: raw.size ?? sane.size, link: raw.link ?? sane.link, entsize: raw.entsize ?? sane.entsize, name: raw.name, delta: raw.delta };
      const sh = headersAt + 64 * i;
      const offset = typeof s.offset === "number" ? s.offset : tables[s.offset][0] + (s.offset === "end" ? s.delta : 0);
      const length = typeof s.size === "number" ? s.size : s.size === "fit" && typeof s.offset !== "number" ? tables[s.offset][1] : size - offset + s.delta;
      v.setUint32(sh, s.name, true);
      v.setUint32(sh + 4, s.type, true);
      v.setBigUint64(sh + 24, BigInt(Math.max(0, offset)), true);
      v.setBigUint64(sh + 32, BigInt(Math.max(0, length)), true);
      v.setUint32(sh + 40, s.link, true);
      v.setBigUint64(sh + 56, BigInt(s.entsize), true);
    });
    v.setBigUint64(40, BigInt(headersAt), true);
    v.setUint16(60, sections.length, true);
    v.setUint16(62, shstrndx, true);
    return compact(bytes);
  });
