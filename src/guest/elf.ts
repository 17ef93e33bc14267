/**
 * ELF64 parser for ipre guest programs: static, non-PIE x86-64 executables (ET_EXEC), as built
 * by `guests/ipre.ld`, and for Linux programs (`linux`) also static-PIE. Pure data, no FFI: it
 * validates the file and describes what to load; copying the segments into guest memory and
 * applying page permissions is the loader's job.
 *
 * Rules (each violation throws {@link ElfError} with the reason):
 *  - ELFCLASS64, little-endian, EV_CURRENT, EM_X86_64, ET_EXEC; no PT_INTERP / PT_DYNAMIC
 *    (dynamically linked) and no PT_TLS (there is no thread-local storage in a guest).
 *  - With `linux`: PT_TLS is allowed, and so is a static-PIE: ET_DYN with PT_DYNAMIC and no
 *    PT_INTERP (`gcc -static-pie`, rustc with +crt-static), which relocates itself at startup
 *    (glibc's _dl_relocate_static_pie). It is placed at `base` (default ELF_LINK_OFFSET, window
 *    0): segments, entry and defined symbols are shifted by the bias, base - its lowest page,
 *    so the image describes real addresses. An ET_DYN with PT_INTERP or without PT_DYNAMIC is a
 *    shared object or a dynamically linked PIE, and is refused.
 *  - Every PT_LOAD lies inside the file (p_offset + p_filesz), has p_filesz <= p_memsz and
 *    p_memsz <= 1 GiB, lies in the canonical lower half (below 2^47), and, when it has file
 *    bytes, p_vaddr and p_offset are congruent modulo 4096 (as the ELF spec requires).
 *  - PT_LOAD segments must not overlap. Permissions are applied per 4 KiB page, so two segments
 *    may share a page only if they have identical permissions (R/W/X); sharing a page with
 *    different permissions is an error, because one of them would get the wrong permissions.
 *  - PT_LOAD segments with p_memsz = 0 are ignored (they load nothing).
 *  - A non-zero entry point must lie inside an executable PT_LOAD. Entry 0 means "no entry":
 *    the host calls functions by name.
 *  - Addresses and sizes must be below 2^53 so they are exact JS numbers.
 *
 * Symbols come from .symtab (found through the section header table); a stripped file has none.
 * Every table read (.symtab, its string table, the section names) lies inside the file; section 0
 * is never one, since it only carries the extended counts.
 * STT_SECTION and STT_FILE entries are skipped. When two symbols share a name, a global/weak one
 * wins over a local one, otherwise the first one wins.
 */
import { ElfError } from "../errors.ts";
import { ELF_LINK_OFFSET, GiB, PAGE_SIZE } from "./layout.ts";

export interface ElfSegment {
  vaddr: number;
  memsz: number;
  filesz: number;
  /** The segment's file bytes (a subarray of the input, length filesz); the rest of memsz is zero. */
  data: Uint8Array;
  readable: boolean;
  writable: boolean;
  executable: boolean;
}

export interface ElfSymbol {
  name: string;
  value: number;
  size: number;
  type: "func" | "object" | "notype" | "other";
  /** Name of the section the symbol is defined in; "" for undefined, absolute and common symbols. */
  section: string;
  bind: "local" | "global" | "weak" | "other";
}

export interface ElfImage {
  /** Entry point, 0 when the program has none. */
  entry: number;
  /** PT_LOAD segments with p_memsz > 0, sorted by address. */
  segments: ElfSegment[];
  symbols: Map<string, ElfSymbol>;
  /** Global FUNC symbols defined in the output section ".ipre_export" (IPRE_EXPORT), sorted by name. */
  exports: string[];
  /** Page-aligned extent of all segments: [lowest, highest). */
  lowest: number;
  highest: number;
  /** What was added to the file's addresses: 0 for ET_EXEC, the load base for a static-PIE. */
  bias?: number;
}

const PAGE = PAGE_SIZE;
const MAX_SEGMENT = GiB;
const CANONICAL_LIMIT = 1n << 47n;
const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const SHDR_SIZE = 64;
const SYM_SIZE = 24;

const ET_NAMES: Record<number, string> = { 0: "ET_NONE", 1: "ET_REL (relocatable object)", 2: "ET_EXEC", 3: "ET_DYN (PIE or shared object)", 4: "ET_CORE (core dump)" };
const PT_LOAD = 1, PT_DYNAMIC = 2, PT_INTERP = 3, PT_TLS = 7;
const PF_X = 1, PF_W = 2, PF_R = 4;
const SHT_SYMTAB = 2;
const SHT_NOBITS = 8;
const SHN_UNDEF = 0;
const SHN_LORESERVE = 0xff00;
const SHN_ABS = 0xfff1;
const SHN_COMMON = 0xfff2;
const ET_EXEC = 2, ET_DYN = 3;
const SHN_XINDEX = 0xffff;

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

/** True if the bytes start with the ELF magic "\x7fELF". */
export function isElf(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46;
}

interface Section {
  name: string;
  type: number;
  offset: number;
  size: number;
  link: number;
  entsize: number;
}

function fail(reason: string): never {
  throw new ElfError(`invalid ELF: ${reason}`);
}

/**
 * Parses and validates an ELF64 x86-64 static executable. Throws ElfError with the reason.
 * `linux`: a static Linux program (src/linux/): PT_TLS is allowed (its libc sets up TLS itself),
 * and a static-PIE is placed at `base` (page aligned; default ELF_LINK_OFFSET, window 0).
 */
export function parseElf(bytes: Uint8Array, options: { linux?: boolean; base?: number } = {}): ElfImage {
  const size = bytes.length;
  if (size < EHDR_SIZE) fail(`truncated: file is ${size} bytes, smaller than the 64-byte ELF header`);
  if (!isElf(bytes)) {
    const first = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join(" ");
    fail(`bad magic: expected 7f 45 4c 46 ("\\x7fELF"), found ${first}`);
  }
  const cls = bytes[4];
  if (cls !== 2) fail(`not ELFCLASS64: EI_CLASS is ${cls}${cls === 1 ? " (ELFCLASS32, a 32-bit file)" : ""}; ipre loads only 64-bit x86-64 executables`);
  const data = bytes[5];
  if (data !== 1) fail(`not little-endian: EI_DATA is ${data}${data === 2 ? " (ELFDATA2MSB, big-endian)" : ""}`);
  if (bytes[6] !== 1) fail(`unsupported ELF version: EI_VERSION is ${bytes[6]}, expected 1 (EV_CURRENT)`);

  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (off: number) => view.getUint16(off, true);
  const u32 = (off: number) => view.getUint32(off, true);
  /** A 64-bit field that must fit a JS number exactly. */
  const u64 = (off: number, what: string): number => {
    const v = view.getBigUint64(off, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} ${hex(v)} is too large (must be below 2^53)`);
    return Number(v);
  };

  const type = u16(16);
  const pie = type === ET_DYN && options.linux === true;
  if (type !== ET_EXEC && !pie) {
    const what = ET_NAMES[type] ?? `unknown type ${type}`;
    fail(
      options.linux
        ? `e_type is ${what}: ipre runs static executables (ET_EXEC) and static-PIE (ET_DYN)`
        : `e_type is ${what}, not ET_EXEC: ipre loads only static non-PIE executables (link with -static -no-pie, see guests/ipre.ld)`,
    );
  }
  const base = options.base ?? ELF_LINK_OFFSET;
  if (pie && !(Number.isSafeInteger(base) && base >= 0 && base % PAGE === 0 && base < Number(CANONICAL_LIMIT))) {
    throw new RangeError(`parseElf: base ${base} is not a page-aligned lower-half address`);
  }
  const machine = u16(18);
  if (machine !== 62) fail(`e_machine is ${machine}${machine === 3 ? " (EM_386)" : machine === 183 ? " (EM_AARCH64)" : ""}, not EM_X86_64 (62)`);

  const entryBig = view.getBigUint64(24, true);
  if (entryBig >= CANONICAL_LIMIT) fail(`entry point ${hex(entryBig)} is not a canonical lower-half address (must be below 2^47)`);
  const entryFile = Number(entryBig);
  const phoff = u64(32, "e_phoff");
  const shoff = u64(40, "e_shoff");
  const phentsize = u16(54);
  const phnum = u16(56);
  const shentsize = u16(58);
  let shnum = u16(60);
  let shstrndx = u16(62);

  // ---------------------------------------------------------------- program headers
  if (phnum === 0) fail("no program headers (e_phnum = 0): nothing to load");
  if (phnum === 0xffff) fail("too many program headers (e_phnum = PN_XNUM is not supported)");
  if (phentsize !== PHDR_SIZE) fail(`e_phentsize is ${phentsize}, expected ${PHDR_SIZE}`);
  if (phoff < EHDR_SIZE || phoff + phnum * PHDR_SIZE > size) {
    fail(`program headers out of file bounds: ${phnum} x ${PHDR_SIZE} bytes at offset ${hex(phoff)}, file is ${size} bytes`);
  }

  interface Load extends ElfSegment {
    index: number;
    offset: number;
  }
  const loads: Load[] = [];
  let dynamic = false;
  const needed = options.linux ? "-static or -static-pie" : "-static -nostdlib";
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * PHDR_SIZE;
    const ptype = u32(ph);
    if (ptype === PT_INTERP) fail(`program header #${i} is PT_INTERP: the file is dynamically linked; ipre needs a static executable (${needed})`);
    if (ptype === PT_DYNAMIC && !pie) fail(`program header #${i} is PT_DYNAMIC: the file is dynamically linked; ipre needs a static executable (${needed})`);
    if (ptype === PT_DYNAMIC) dynamic = true;
    if (ptype === PT_TLS && !options.linux) fail(`program header #${i} is PT_TLS: thread-local storage is not supported in ipre guests`);
    if (ptype !== PT_LOAD) continue;
    const flags = u32(ph + 4);
    const where = `PT_LOAD #${i}`;
    const vaddrBig = view.getBigUint64(ph + 16, true);
    const memszBig = view.getBigUint64(ph + 40, true);
    const fileszBig = view.getBigUint64(ph + 32, true);
    const offsetBig = view.getBigUint64(ph + 8, true);
    if (fileszBig > memszBig) fail(`${where}: p_filesz (${hex(fileszBig)}) > p_memsz (${hex(memszBig)})`);
    if (memszBig > BigInt(MAX_SEGMENT)) fail(`${where}: p_memsz ${hex(memszBig)} is absurd (more than 1 GiB)`);
    if (memszBig === 0n) continue;
    if (vaddrBig >= CANONICAL_LIMIT || vaddrBig + memszBig > CANONICAL_LIMIT) {
      fail(`${where}: p_vaddr ${hex(vaddrBig)} + p_memsz ${hex(memszBig)} is not a canonical lower-half address range (must end at or below 2^47)`);
    }
    if (offsetBig + fileszBig > BigInt(size)) {
      fail(`${where}: file range [${hex(offsetBig)}, ${hex(offsetBig + fileszBig)}) is outside the file (${size} bytes)`);
    }
    const vaddr = Number(vaddrBig), memsz = Number(memszBig), filesz = Number(fileszBig), offset = Number(offsetBig);
    if (filesz > 0 && vaddr % PAGE !== offset % PAGE) {
      fail(`${where}: p_vaddr ${hex(vaddr)} and p_offset ${hex(offset)} are not congruent modulo 4096`);
    }
    loads.push({
      index: i,
      offset,
      vaddr,
      memsz,
      filesz,
      data: bytes.subarray(offset, offset + filesz),
      readable: (flags & PF_R) !== 0,
      writable: (flags & PF_W) !== 0,
      executable: (flags & PF_X) !== 0,
    });
  }
  if (loads.length === 0) fail("no PT_LOAD segment with p_memsz > 0: nothing to load");
  if (pie && !dynamic) fail("ET_DYN without PT_DYNAMIC: not a self-relocating static-PIE (link with -static-pie)");

  loads.sort((a, b) => a.vaddr - b.vaddr);
  const firstLoad = loads[0];
  const lastLoad = loads[loads.length - 1];
  if (firstLoad === undefined || lastLoad === undefined) return fail("no PT_LOAD segment"); // (checked above)
  // A static-PIE moves as a whole: its lowest page to `base` (page aligned, so congruence holds).
  const bias = pie ? base - Math.floor(firstLoad.vaddr / PAGE) * PAGE : 0;
  if (bias !== 0) {
    for (const s of loads) s.vaddr += bias;
    const end = lastLoad;
    if (end.vaddr + end.memsz > Number(CANONICAL_LIMIT)) fail(`static-PIE at ${hex(base)}: its segments end at ${hex(end.vaddr + end.memsz)}, above 2^47`);
  }
  const entry = entryFile === 0 ? 0 : entryFile + bias;
  const perms = (s: ElfSegment) => `${s.readable ? "R" : "-"}${s.writable ? "W" : "-"}${s.executable ? "X" : "-"}`;
  const range = (s: Load) => `[${hex(s.vaddr)}, ${hex(s.vaddr + s.memsz)})`;
  for (let i = 1; i < loads.length; i++) {
    const a = loads[i - 1], b = loads[i];
    if (a === undefined || b === undefined) break;
    if (b.vaddr < a.vaddr + a.memsz) {
      fail(`overlapping PT_LOAD segments: #${a.index} ${range(a)} and #${b.index} ${range(b)}`);
    }
    const lastPageOfA = Math.floor((a.vaddr + a.memsz - 1) / PAGE);
    const firstPageOfB = Math.floor(b.vaddr / PAGE);
    if (lastPageOfA === firstPageOfB && perms(a) !== perms(b)) {
      fail(
        `PT_LOAD #${a.index} ${range(a)} (${perms(a)}) and #${b.index} ${range(b)} (${perms(b)}) share the page ` +
          `${hex(firstPageOfB * PAGE)} with different permissions; permissions apply per 4 KiB page, ` +
          `so segments must be page aligned (see guests/ipre.ld)`,
      );
    }
  }
  if (entry !== 0 && !loads.some((s) => s.executable && entry >= s.vaddr && entry < s.vaddr + s.memsz)) {
    fail(`entry point ${hex(entry)} is not inside an executable PT_LOAD segment`);
  }
  const lowest = Math.floor(firstLoad.vaddr / PAGE) * PAGE;
  // Sorted and disjoint: the last segment ends highest (no Math.max(...) over up to 65534 arguments).
  const last = lastLoad;
  const highest = Math.ceil((last.vaddr + last.memsz) / PAGE) * PAGE;

  // ---------------------------------------------------------------- sections and symbols
  const symbols = new Map<string, ElfSymbol>();
  const exports: string[] = [];
  if (shoff !== 0) {
    if (shentsize !== SHDR_SIZE) fail(`e_shentsize is ${shentsize}, expected ${SHDR_SIZE}`);
    if (shoff + SHDR_SIZE > size) fail(`section headers out of file bounds: offset ${hex(shoff)}, file is ${size} bytes`);
    // Extended numbering: the real counts live in section header 0.
    if (shnum === 0) shnum = u64(shoff + 32, "section count (sh_size of section 0)");
    if (shstrndx === SHN_XINDEX) shstrndx = u32(shoff + 40);
    if (shoff + shnum * SHDR_SIZE > size) {
      fail(`section headers out of file bounds: ${shnum} x ${SHDR_SIZE} bytes at offset ${hex(shoff)}, file is ${size} bytes`);
    }
    const sections: Section[] = [];
    const nameOffsets: number[] = [];
    for (let i = 0; i < shnum; i++) {
      const sh = shoff + i * SHDR_SIZE;
      const s: Section = {
        name: "",
        type: u32(sh + 4),
        offset: u64(sh + 24, `section #${i} sh_offset`),
        size: u64(sh + 32, `section #${i} sh_size`),
        link: u32(sh + 40),
        entsize: u64(sh + 56, `section #${i} sh_entsize`),
      };
      if (i > 0 && s.type !== SHT_NOBITS && s.offset + s.size > size) {
        fail(`section #${i} file range [${hex(s.offset)}, ${hex(s.offset + s.size)}) is outside the file (${size} bytes)`);
      }
      nameOffsets.push(u32(sh));
      sections.push(s);
    }
    const decoder = new TextDecoder("utf-8");
    const cstring = (table: Section | undefined, off: number, what: string): string => {
      if (!table || table.type === SHT_NOBITS) return "";
      if (off >= table.size) fail(`${what}: name offset ${off} is outside its string table (${table.size} bytes)`);
      const start = table.offset + off;
      const end = table.offset + table.size;
      let p = start;
      while (p < end && bytes[p] !== 0) p++;
      return decoder.decode(bytes.subarray(start, p));
    };
    if (shstrndx !== SHN_UNDEF) {
      if (shstrndx >= shnum) fail(`e_shstrndx ${shstrndx} is not a valid section index (${shnum} sections)`);
      const shstrtab = sections[shstrndx];
      sections.forEach((s, i) => (s.name = cstring(shstrtab, nameOffsets[i] ?? 0, `section #${i}`)));
    }
    // Section 0 (SHN_UNDEF) is not a section: its fields may hold the extended counts, so its
    // range is not checked above and it must never be read as a symbol or string table.
    const symtab = sections.find((s, i) => i !== SHN_UNDEF && s.type === SHT_SYMTAB);
    if (symtab) {
      if (symtab.entsize !== SYM_SIZE) fail(`.symtab sh_entsize is ${symtab.entsize}, expected ${SYM_SIZE}`);
      if (symtab.link === SHN_UNDEF || symtab.link >= shnum) fail(`.symtab sh_link ${symtab.link} is not a valid string table index`);
      const strtab = sections[symtab.link];
      const count = Math.floor(symtab.size / SYM_SIZE);
      const bindRank = (b: ElfSymbol["bind"]) => (b === "global" || b === "weak" ? 1 : 0);
      for (let i = 1; i < count; i++) {
        const st = symtab.offset + i * SYM_SIZE;
        const info = bytes[st + 4] ?? 0;
        const stType = info & 0xf;
        if (stType === 3 /* STT_SECTION */ || stType === 4 /* STT_FILE */) continue;
        const name = cstring(strtab, u32(st), `symbol #${i}`);
        if (name === "") continue;
        const shndx = u16(st + 6);
        const stBind = info >> 4;
        const moves = shndx !== SHN_UNDEF && shndx !== SHN_ABS && shndx !== SHN_COMMON;
        const value = u64(st + 8, `symbol ${name} value`) + (moves ? bias : 0);
        if (value > Number.MAX_SAFE_INTEGER) fail(`symbol ${name} value ${hex(value - bias)} + bias ${hex(bias)} is too large (must be below 2^53)`);
        const sym: ElfSymbol = {
          name,
          value,
          size: u64(st + 16, `symbol ${name} size`),
          type: stType === 2 ? "func" : stType === 1 ? "object" : stType === 0 ? "notype" : "other",
          section: shndx !== SHN_UNDEF && shndx < SHN_LORESERVE && shndx < shnum ? (sections[shndx]?.name ?? "") : "",
          bind: stBind === 0 ? "local" : stBind === 1 ? "global" : stBind === 2 ? "weak" : "other",
        };
        const prev = symbols.get(name);
        if (!prev || bindRank(sym.bind) > bindRank(prev.bind)) symbols.set(name, sym);
      }
      for (const sym of symbols.values()) {
        if (sym.type === "func" && sym.section === ".ipre_export" && (sym.bind === "global" || sym.bind === "weak")) {
          exports.push(sym.name);
        }
      }
      exports.sort();
    }
  }

  return {
    entry,
    segments: loads.map(({ vaddr, memsz, filesz, data, readable, writable, executable }) => ({
      vaddr,
      memsz,
      filesz,
      data,
      readable,
      writable,
      executable,
    })),
    symbols,
    exports,
    lowest,
    highest,
    bias,
  };
}

/**
 * A flat binary (raw machine code, no headers) as a one-segment image at `address`: executable
 * (read-only) or, with `writable`, read-write data. `symbols` names offsets into it, e.g.
 * `{ inc: 0 }`, so call("inc") and allow-lists work as for an ELF. It keeps an ELF image's
 * rules: the segment lies below 2^47, symbols are named integer addresses inside it, the entry
 * point (the address) is inside an executable segment, so a writable image has entry 0 (none).
 */
export function flatImage(
  bytes: Uint8Array,
  address: number,
  options: { writable?: boolean; symbols?: Record<string, number>; exports?: string[] } = {},
): ElfImage {
  if (!(Number.isSafeInteger(address) && address >= 0 && address % PAGE === 0)) throw new ElfError(`flat binary: address ${hex(address)} is not a page-aligned lower-half address`);
  if (bytes.length === 0 || bytes.length > MAX_SEGMENT) throw new ElfError(`flat binary: size ${bytes.length} is out of range`);
  if (BigInt(address) + BigInt(bytes.length) > CANONICAL_LIMIT) throw new ElfError(`flat binary: ${hex(address)}+${hex(bytes.length)} does not end at or below 2^47`);
  const symbols = new Map<string, ElfSymbol>();
  for (const [name, offset] of Object.entries(options.symbols ?? {})) {
    if (name === "") throw new ElfError("flat binary: a symbol needs a name");
    if (!(Number.isInteger(offset) && offset >= 0 && offset < bytes.length)) throw new ElfError(`flat binary: symbol ${name} at offset ${offset} is not a byte of the ${bytes.length} bytes`);
    symbols.set(name, { name, value: address + offset, size: 0, type: "func", section: ".text", bind: "global" });
  }
  const exports = [...new Set(options.exports ?? [])].sort();
  for (const name of exports) if (!symbols.has(name)) throw new ElfError(`flat binary: exported ${name} is not a symbol`);
  return {
    entry: options.writable ? 0 : address,
    segments: [{ vaddr: address, memsz: bytes.length, filesz: bytes.length, data: bytes, readable: true, writable: !!options.writable, executable: !options.writable }],
    symbols,
    exports,
    lowest: address,
    highest: address + Math.ceil(bytes.length / PAGE) * PAGE,
  };
}
