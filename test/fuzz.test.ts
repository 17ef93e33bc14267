/**
 * Property-based tests (fast-check) of the pure parsers and builders: the ELF loader, the page
 * tables, the GDT/TSS/IDT builders and the CLI's argument parsing. A fixed seed and a bounded
 * number of cases per property keep CI reproducible and short; docs/TESTING.md says how to run
 * more. Nothing here opens /dev/kvm.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseIntArg, UsageError } from "../src/cli.ts";
import { numberOption, parseFlags } from "../src/flags.ts";
import { ElfError, IpreError } from "../src/errors.ts";
import { flatImage, type ElfImage, type ElfSegment, parseElf } from "../src/guest/elf.ts";
import { MAX_MEMORY, MAX_WINDOW, MiB, PAGE_SIZE, RT, USER_OFFSET, WINDOW_SIZE, windowBase } from "../src/guest/layout.ts";
import { buildGdt, buildIdt, buildTss, GDT_ENTRIES, type GateSpec, idtGate, SELECTOR, segmentDescriptor, type SegmentSpec, starMsr, TSS_SIZE, type TssSpec } from "../src/x86/descriptors.ts";
import { ADDR_MASK, indices, loanEntry, type PagePerm, PERM, PTE, tableEntry, userPte, WindowTables, type WindowTablesSpec, writeRoot } from "../src/x86/paging.ts";
import { exampleElf } from "./scenarios/common.ts";
import { PF_R, PF_X, writeElfHeaders } from "./scenarios/elf-builder.ts";
import { embedded, expectValidImage, mutatedElf, PAGE, randomElfLike, summary, synthElf, wildSectionsElf } from "./fuzz/elf.ts";
import { ArrayPtMemory, mapPtMemory, walk } from "./fuzz/paging.ts";
import { withDeadline } from "./fuzz/deadline.ts";
import { CASE_LIMIT_MS, describeRun, params, propertyLimitMs } from "./fuzz/params.ts";

/** Cases per property in CI: a few seconds natively for the whole file (docs/TESTING.md). */
const RUNS = {
  elfValid: 250,
  elfMutated: 1500,
  elfRandom: 1000,
  elfWindow: 400,
  flatImage: 500,
  pagingInit: 24,
  pagingEdit: 100,
  pagingEntry: 600,
  descriptors: 600,
  cli: 600,
};
console.log(describeRun(RUNS));

const REAL_ELFS = ["add", "bench", "faults", "hostcall", "kvcaller", "kvstore", "spin"].map(exampleElf);
const validElf = fc.oneof(fc.constantFrom(...REAL_ELFS), synthElf.map((s) => s.bytes));

type Outcome = { image: ElfImage } | { error: string };

/** The input parseElf is working on: what a property that runs past its deadline reports. */
let parsing: Uint8Array | undefined;

/** parseElf's result, or the message of the ElfError it threw; any other exception, or a slow parse, fails the property. */
function parseOutcome(bytes: Uint8Array): Outcome {
  parsing = bytes;
  const start = performance.now();
  let outcome: Outcome;
  try {
    outcome = { image: parseElf(bytes) };
  } catch (e) {
    if (!(e instanceof ElfError)) throw e; // RangeError, TypeError, ...: a parser bug
    expect(e.message).toMatch(/^invalid ELF: /);
    outcome = { error: e.message };
  }
  const ms = performance.now() - start;
  expect(ms, `parseElf of ${bytes.length} bytes took ${ms.toFixed(1)} ms`).toBeLessThan(CASE_LIMIT_MS);
  return outcome;
}

// ------------------------------------------------------------------ Machine.load's window rule, mirrored

interface Geometry {
  userStart: number;
  stackGuard: number;
  tables: WindowTables;
}

/** A machine's user memory as Machine's constructor derives it (src/machine.ts). */
function geometry(window: number, memory: number, stackSize: number): Geometry {
  const base = windowBase(window);
  const tables = new WindowTables({ base, memory, pml4: base + RT.PML4, pdpt: base + RT.PDPT, pd: base + RT.PD, ptBase: base + RT.PT_BASE });
  return { userStart: base + USER_OFFSET, stackGuard: base + memory - stackSize - PAGE_SIZE, tables };
}

/**
 * Machine.load()'s test, written the same way (src/machine.ts): a segment is refused when it
 * starts below userStart or ends past stackGuard. It is mirrored rather than imported because
 * the Machine needs /dev/kvm; like the original, it would let NaN through, which is why
 * parseElf's outputs must be exact integers.
 */
function refusedByLoad(seg: ElfSegment, m: Geometry): boolean {
  const end = seg.vaddr + seg.memsz;
  return seg.vaddr < m.userStart || end > m.stackGuard;
}

const geometryArb = fc.record({
  linkedWindow: fc.boolean(),
  window: fc.integer({ min: 0, max: MAX_WINDOW }),
  memory: fc.integer({ min: 2, max: MAX_MEMORY / (2 * MiB) }).map((n) => n * 2 * MiB),
  stackPages: fc.nat(),
});

/** fc.assert of an ELF property under a deadline: a parse that never ends fails with its input instead of hanging. */
function assertElf<T>(property: fc.IProperty<T>, runs: number): void {
  withDeadline(propertyLimitMs(runs), () => fc.assert(property, params(runs)), () => fc.stringify(parsing));
}

const permOf = (s: ElfSegment): PagePerm => (s.executable ? PERM.RX : s.writable ? PERM.RW : PERM.R);

describe("fuzz: parseElf", () => {
  it("accepts every valid synthesized image and returns exactly its segments, entry, extent, symbols and exports", () => {
    assertElf(
      fc.property(synthElf, ({ bytes, expected }) => {
        const outcome = parseOutcome(bytes);
        if (expected === "error") {
          expect(outcome).toEqual({ error: expect.stringMatching(/symbol .* (value|size) 0x[0-9a-f]+ is too large/) });
          return;
        }
        if (!("image" in outcome)) throw new Error(`rejected a valid image: ${outcome.error}`);
        const img = outcome.image;
        expectValidImage(img, bytes);
        expect(img.entry).toBe(expected.entry);
        expect(img.segments.map(({ data: _, ...s }) => s)).toEqual(expected.segments);
        expect(img.segments.map((s) => s.data.byteOffset - bytes.byteOffset), "each segment's bytes come from its p_offset").toEqual(expected.dataOffsets);
        expect([img.lowest, img.highest]).toEqual([expected.lowest, expected.highest]);
        expect([...img.symbols.values()]).toEqual(expected.symbols);
        expect(img.exports).toEqual(expected.exports);
      }),
      RUNS.elfValid,
    );
  });

  it("mutated real and synthesized images, and wild section tables: only ElfError, in bounded time; what it accepts keeps every promised invariant", () => {
    assertElf(
      fc.property(fc.oneof({ weight: 3, arbitrary: mutatedElf(validElf) }, { weight: 1, arbitrary: wildSectionsElf }), (bytes) => {
        const outcome = parseOutcome(bytes);
        if ("image" in outcome) expectValidImage(outcome.image, bytes);
        // The same bytes inside a larger buffer: a read past the view would change the outcome.
        const inner = embedded(bytes);
        const again = parseOutcome(inner);
        if ("image" in again) expectValidImage(again.image, inner);
        if ("image" in again && "image" in outcome) expect(summary(again.image, inner)).toEqual(summary(outcome.image, bytes));
        else expect(again).toEqual(outcome);
      }),
      RUNS.elfMutated,
    );
  });

  it("random bytes, with and without a valid ELF identification: only ElfError, in bounded time", () => {
    assertElf(
      fc.property(randomElfLike, (bytes) => {
        const outcome = parseOutcome(bytes);
        if ("image" in outcome) expectValidImage(outcome.image, bytes);
      }),
      RUNS.elfRandom,
    );
  });

  it("Machine.load's window rule decides on exact integers, and the segments it admits map onto this window's user pages with their permissions", () => {
    assertElf(
      fc.property(fc.oneof(validElf, mutatedElf(validElf)), geometryArb, (bytes, g) => {
        const outcome = parseOutcome(bytes);
        if (!("image" in outcome)) return;
        const img = outcome.image;
        const linked = Math.floor(img.lowest / WINDOW_SIZE);
        const window = g.linkedWindow && linked <= MAX_WINDOW ? linked : g.window;
        const maxStackPages = (g.memory - USER_OFFSET) / PAGE_SIZE - 2;
        const m = geometry(window, g.memory, (1 + (g.stackPages % maxStackPages)) * PAGE_SIZE);
        let admitted = true;
        for (const seg of img.segments) {
          // The same decision in exact integer arithmetic (BigInt() throws on NaN or a fraction).
          const exact = BigInt(seg.vaddr) >= BigInt(m.userStart) && BigInt(seg.vaddr) + BigInt(seg.memsz) <= BigInt(m.stackGuard);
          expect(!refusedByLoad(seg, m), `segment 0x${seg.vaddr.toString(16)}+0x${seg.memsz.toString(16)}`).toBe(exact);
          admitted &&= exact;
        }
        if (!admitted) return;
        // What load() then does: set each segment's pages to its permissions.
        const mem = mapPtMemory();
        for (const seg of img.segments) m.tables.setPages(mem, seg.vaddr, seg.memsz, permOf(seg));
        const pages = img.segments.reduce((n, s) => n + s.memsz / PAGE, 0);
        if (pages > 4096) return; // a 1 GiB segment: the bounds above are what matters
        for (const seg of img.segments) {
          for (let p = Math.floor(seg.vaddr / PAGE) * PAGE; p < seg.vaddr + seg.memsz; p += PAGE) {
            expect(p, "below the stack guard").toBeLessThan(m.stackGuard);
            // Pages shared by two segments have the same permissions, so the order of setPages does not matter.
            expect(m.tables.getPage(mem, p), `page 0x${p.toString(16)}`).toEqual(permOf(seg));
          }
        }
      }),
      RUNS.elfWindow,
    );
  });
});

describe("fuzz: flatImage", () => {
  const address = fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: 0, max: 2 ** 35 }).map((n) => n * PAGE) },
    { weight: 2, arbitrary: fc.constantFrom(-PAGE, -0, 2 ** 47 - PAGE, 2 ** 47, 2 ** 53 - PAGE, 2 ** 53, Number.NaN, Infinity, 0.5 * PAGE, 1.5 * PAGE) },
    { weight: 1, arbitrary: fc.double() },
  );
  const offset = fc.oneof(fc.nat({ max: 3 * PAGE }), fc.double(), fc.constantFrom(-0, -1, 0.5, Number.NaN));
  it("returns an image with the same invariants as an ELF's, or throws ElfError", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 3 * PAGE }),
        address,
        fc.record({ writable: fc.boolean(), symbols: fc.dictionary(fc.string({ maxLength: 4 }), offset, { maxKeys: 4 }), extra: fc.array(fc.string({ maxLength: 4 }), { maxLength: 3 }) }),
        (bytes, addr, { writable, symbols, extra }) => {
          const exports = [...Object.keys(symbols).slice(0, 2), ...extra];
          let img: ElfImage;
          try {
            img = flatImage(bytes, addr, { writable, symbols, exports });
          } catch (e) {
            if (!(e instanceof ElfError)) throw e;
            return;
          }
          expectValidImage(img, bytes, true);
          expect(img.entry, "the address, or 0 (none) for data").toBe(writable ? 0 : addr);
          expect(img.segments).toHaveLength(1);
          expect(img.segments[0]).toMatchObject({ vaddr: addr, memsz: bytes.length, writable, executable: !writable });
          for (const [name, off] of Object.entries(symbols)) expect(img.symbols.get(name)?.value, name).toBe(addr + off);
        },
      ),
      params(RUNS.flatImage),
    );
  });
});

// ------------------------------------------------------------------ page tables

const GiB = WINDOW_SIZE;
const perms: (PagePerm | null)[] = [PERM.R, PERM.RW, PERM.RX, PERM.RWX, null];
const permArb = fc.constantFrom(...perms);

/** The page-table MiB of a runtime area (RT.PML4 to RT.PT_END), and a second one for expected contents. */
const tableMemory = new ArrayPtMemory(RT.PML4, RT.PT_END - RT.PML4);
const expectedMemory = new ArrayPtMemory(RT.PML4, RT.PT_END - RT.PML4);
/** A copy of tableMemory's bytes taken before an edit. */
const snapshot = new Uint8Array(tableMemory.size);

/** A window's tables where Machine puts them, in tableMemory (zeroed) placed at its runtime area. */
function windowTables(window: number, memory: number, log = false): { spec: WindowTablesSpec; tables: WindowTables; mem: ArrayPtMemory } {
  const base = windowBase(window);
  const spec = { base, memory, pml4: base + RT.PML4, pdpt: base + RT.PDPT, pd: base + RT.PD, ptBase: base + RT.PT_BASE };
  return { spec, tables: new WindowTables(spec), mem: tableMemory.reset(base + RT.PML4, log) };
}
/** The i-th extra root of the pool (PML4, PDPT, PD pages). */
const poolRoot = (base: number, i: number) => ({ pml4: base + RT.ROOT_POOL + i * 3 * PAGE, pdpt: base + RT.ROOT_POOL + (i * 3 + 1) * PAGE, pd: base + RT.ROOT_POOL + (i * 3 + 2) * PAGE });

const windowArb = fc.integer({ min: 0, max: MAX_WINDOW });
/** Memory in 2 MiB units, mostly small (init writes 512 entries per 2 MiB), sometimes up to MAX_MEMORY. */
const memoryArb = fc
  .oneof({ weight: 6, arbitrary: fc.integer({ min: 2, max: 12 }) }, { weight: 2, arbitrary: fc.integer({ min: 2, max: 64 }) }, { weight: 1, arbitrary: fc.integer({ min: 2, max: MAX_MEMORY / (2 * MiB) }) })
  .map((n) => n * 2 * MiB);
/** Offsets into a window, with the edges of the runtime area and of memory. */
const offsetsArb = fc.array(fc.oneof(fc.integer({ min: 0, max: GiB - 1 }), fc.integer({ min: 0, max: 64 * MiB })), { minLength: 1, maxLength: 12 });
const edges = (memory: number) => [0, 2 * MiB - 1, 2 * MiB, memory - 1, memory, GiB - 1];

/** What the CPU must see at `va` in a window initialized with `perm` (pages set by setPages aside). */
function expectedWalk(base: number, memory: number, va: number, perm: PagePerm | null) {
  const off = va - base;
  if (off < 2 * MiB) return { present: true, phys: va, pageSize: 2 * MiB, user: false, write: true, exec: true };
  if (off >= memory || perm === null) return { present: false };
  return { present: true, phys: va, pageSize: PAGE, user: true, write: perm.write, exec: perm.exec };
}

describe("fuzz: page tables", () => {
  it("init() then a software page walk: identity map, runtime area as a supervisor RWX 2 MiB page, user pages with the initial permission, nothing past memory or in other windows", () => {
    fc.assert(
      fc.property(windowArb, memoryArb, permArb, offsetsArb, windowArb, (window, memory, perm, offsets, other) => {
        const { spec, tables, mem } = windowTables(window, memory);
        tables.init(mem, perm);
        for (const off of [...edges(memory), ...offsets]) {
          const va = spec.base + off;
          expect(walk(mem, spec.pml4, va), `va 0x${va.toString(16)}`).toMatchObject(expectedWalk(spec.base, memory, va, perm));
        }
        if (other !== window) expect(walk(mem, spec.pml4, windowBase(other) + offsets[0]!)).toEqual({ present: false, level: "PDPT" });
        expect(walk(mem, spec.pml4, 512 * GiB + spec.base)).toEqual({ present: false, level: "PML4" }); // PML4[1]
      }),
      params(RUNS.pagingInit),
    );
  });

  it("init() writes the same entries through the BigInt-free write64Parts path as through userPte()", () => {
    fc.assert(
      fc.property(windowArb, memoryArb, permArb, (window, memory, perm) => {
        const { spec, tables, mem } = windowTables(window, memory);
        tables.init(mem, perm);
        const slow = mapPtMemory();
        tables.init(slow, perm);
        // The same bytes, entry for entry, and nothing written elsewhere.
        const want = expectedMemory.reset(mem.origin);
        for (const [gpa, v] of slow.entries) want.write64(gpa, v);
        if (Buffer.compare(mem.bytes, want.bytes) !== 0) {
          const off = mem.bytes.findIndex((b, i) => b !== want.bytes[i]) & ~7;
          expect(mem.read64(mem.origin + off), `entry at 0x${(mem.origin + off).toString(16)}`).toBe(want.read64(mem.origin + off));
        }
        expect(Math.max(...slow.entries.keys())).toBeLessThan(spec.ptBase + tables.ptCount * PAGE);
      }),
      params(RUNS.pagingInit),
    );
  });

  const rangeArb = fc.record({
    start: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
    length: fc.oneof({ weight: 3, arbitrary: fc.nat({ max: 3 * PAGE }) }, { weight: 1, arbitrary: fc.nat({ max: 64 * MiB }) }),
  });

  it("setPages(perm): getPage and the walk give perm on every page of the range; every other entry is untouched", () => {
    fc.assert(
      fc.property(windowArb, memoryArb, permArb, permArb, rangeArb, (window, memory, initial, perm, r) => {
        const { spec, tables, mem } = windowTables(window, memory);
        tables.init(mem, initial);
        const userStart = spec.base + 2 * MiB, userEnd = spec.base + memory;
        const va = userStart + Math.floor(r.start * (userEnd - userStart));
        const length = Math.min(r.length, userEnd - va);
        const before = snapshot;
        before.set(mem.bytes);
        tables.setPages(mem, va, length, perm);
        const first = Math.floor(va / PAGE) * PAGE, end = length === 0 ? first : Math.ceil((va + length) / PAGE) * PAGE;
        for (let p = first; p < end; p += PAGE) {
          const got = tables.getPage(mem, p);
          if (got?.write !== perm?.write || got?.exec !== perm?.exec) expect(got, `page 0x${p.toString(16)}`).toEqual(perm);
        }
        // The CPU's view of the first, the last and the middle page of the range.
        for (const p of new Set([first, end - PAGE, first + Math.floor((end - first) / PAGE / 2) * PAGE])) {
          if (p >= first && p < end) expect(walk(mem, spec.pml4, p + (va % PAGE))).toMatchObject(expectedWalk(spec.base, memory, p + (va % PAGE), perm));
        }
        // Byte-compare everything but the PTEs of the range.
        const lo = tables.pteAddress(first) - mem.origin, hi = lo + ((end - first) / PAGE) * 8;
        const after = mem.bytes;
        expect(Buffer.compare(after.subarray(0, lo), before.subarray(0, lo)), "entries before the range").toBe(0);
        expect(Buffer.compare(after.subarray(hi), before.subarray(hi)), "entries after the range").toBe(0);
        if (first > userStart) expect(tables.getPage(mem, first - PAGE)).toEqual(initial);
        if (end < userEnd) expect(tables.getPage(mem, end)).toEqual(initial);
      }),
      params(RUNS.pagingEdit),
    );
  });

  const SENTINEL = new Uint8Array(tableMemory.size).fill(0xaa);
  it("setPages on a range that is not all user memory throws RangeError and changes nothing", () => {
    fc.assert(
      fc.property(windowArb, memoryArb, fc.integer({ min: -4 * MiB, max: 8 * MiB }), fc.nat({ max: 16 * MiB }), permArb, (window, memory, startOff, length, perm) => {
        const { spec, tables, mem } = windowTables(window, memory);
        const va = spec.base + 2 * MiB + startOff;
        const end = va + length;
        const inside = va >= spec.base + 2 * MiB && end <= spec.base + memory;
        fc.pre(!inside && length > 0);
        mem.bytes.set(SENTINEL); // no entry setPages writes looks like this
        expect(() => tables.setPages(mem, va, length, perm)).toThrow(RangeError);
        expect(Buffer.compare(mem.bytes, SENTINEL), "no entry written").toBe(0);
      }),
      params(RUNS.pagingEdit),
    );
  });

  it("writeNoExecPd: the copy maps the same pages with the same write permission, none of the user pages executable", () => {
    fc.assert(
      fc.property(windowArb, memoryArb, permArb, fc.array(fc.tuple(fc.nat({ max: 511 }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })), { maxLength: 8 }), offsetsArb, (window, memory, perm, garbage, offsets) => {
        const { spec, tables, mem } = windowTables(window, memory);
        tables.init(mem, perm);
        const root = poolRoot(spec.base, 0);
        for (const [i, v] of garbage) mem.write64(root.pd + i * 8, v); // a reused pool page
        tables.writeNoExecPd(mem, root.pd);
        expect(mem.read64(root.pd)).toBe(mem.read64(spec.pd));
        const entries = (pd: number) => Array.from({ length: 511 }, (_, i) => mem.read64(pd + (i + 1) * 8));
        expect(entries(root.pd), "PD[1..511]").toEqual(entries(spec.pd).map((e, i) => (i < tables.ptCount ? e | PTE.NX : 0n)));
        writeRoot(mem, root.pml4, root.pdpt, new Map([[window, tableEntry(root.pd)]]));
        for (const off of [...edges(memory), ...offsets]) {
          const va = spec.base + off, want = expectedWalk(spec.base, memory, va, perm);
          expect(walk(mem, root.pml4, va), `va 0x${va.toString(16)}`).toMatchObject(off < 2 * MiB || !want.present ? want : { ...want, exec: false });
        }
      }),
      params(RUNS.pagingEdit),
    );
  });

  it("writeRoot: PML4[0] points to the PDPT, which holds exactly the given window entries; it never writes a zero over a zero", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(windowArb, fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })), { maxLength: 6 }),
        fc.array(fc.tuple(windowArb, fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })), { maxLength: 6 }),
        (windows, garbage) => {
          const mem = tableMemory.reset(RT.PML4);
          const root = poolRoot(0, 1);
          for (const [w, v] of garbage) mem.write64(root.pdpt + w * 8, v);
          mem.writes = [];
          const map = new Map(windows);
          writeRoot(mem, root.pml4, root.pdpt, map);
          expect(mem.read64(root.pml4)).toBe(tableEntry(root.pdpt));
          const pdpt = Array.from({ length: 512 }, (_, w) => mem.read64(root.pdpt + w * 8));
          expect(pdpt, "PDPT").toEqual(Array.from({ length: 512 }, (_, w) => map.get(w) ?? 0n));
          expect(mem.writes!.filter(([gpa, old]) => old === 0n && mem.read64(gpa) === 0n), "zeros written over zeros").toEqual([]);
        },
      ),
      params(RUNS.pagingEdit),
    );
  });

  it("a loan root maps the whole window read-only and no-execute at the same physical addresses", () => {
    fc.assert(
      fc.property(windowArb, memoryArb, permArb, offsetsArb, (window, memory, perm, offsets) => {
        const { spec, tables, mem } = windowTables(window, memory);
        tables.init(mem, perm);
        const root = poolRoot(spec.base, 2);
        writeRoot(mem, root.pml4, root.pdpt, new Map([[window, loanEntry(tables.windowEntry)]]));
        for (const off of [...edges(memory), ...offsets]) {
          const va = spec.base + off, want = expectedWalk(spec.base, memory, va, perm);
          expect(walk(mem, root.pml4, va), `va 0x${va.toString(16)}`).toMatchObject(want.present ? { ...want, write: false, exec: false } : want);
        }
      }),
      params(RUNS.pagingEdit),
    );
  });

  it("loanEntry clears RW, sets NX and keeps every other bit; userPte encodes the frame, the flags and nothing else", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.nat({ max: 2 ** 40 - 1 }), permArb, (e, frame, perm) => {
        const loan = loanEntry(e);
        expect(loan & PTE.RW).toBe(0n);
        expect(loan & PTE.NX).toBe(PTE.NX);
        expect((loan ^ e) & ~(PTE.RW | PTE.NX)).toBe(0n);
        expect(loanEntry(loan)).toBe(loan);
        if (perm === null) return;
        const address = frame * PAGE;
        const pte = userPte(address, perm);
        expect(pte & ADDR_MASK).toBe(BigInt(address));
        const want = PTE.P | PTE.US | PTE.A | PTE.D | (perm.write ? PTE.RW : 0n) | (perm.exec ? 0n : PTE.NX);
        expect(pte & ~ADDR_MASK).toBe(want);
      }),
      params(RUNS.pagingEntry),
    );
  });

  it("indices() splits a lower-half address into the four table indices it is made of", () => {
    fc.assert(
      fc.property(fc.nat({ max: 2 ** 47 - 1 }), (va) => {
        const ix = indices(va);
        for (const i of Object.values(ix)) expect(Number.isInteger(i) && i >= 0 && i < 512).toBe(true);
        expect((((ix.pml4 * 512 + ix.pdpt) * 512 + ix.pd) * 512 + ix.pt) * PAGE + (va % PAGE)).toBe(va);
      }),
      params(RUNS.pagingEntry),
    );
  });
});

// ------------------------------------------------------------------ descriptors

/** Decodes an 8-byte segment descriptor (SDM Vol. 3A §3.4.5). */
function decodeSegment(lo: number, hi: number) {
  return {
    base: ((lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000)) >>> 0,
    limit: (lo & 0xffff) | (hi & 0xf0000),
    type: (hi >>> 8) & 0xf,
    s: (hi >>> 12) & 1,
    dpl: (hi >>> 13) & 3,
    present: (hi >>> 15) & 1,
    avl: (hi >>> 20) & 1,
    l: (hi >>> 21) & 1,
    db: (hi >>> 22) & 1,
    g: (hi >>> 23) & 1,
  };
}
const u64 = (dv: DataView, off: number): number => dv.getUint32(off, true) + dv.getUint32(off + 4, true) * 2 ** 32;
const address = fc.oneof(fc.nat({ max: 2 ** 47 - 1 }), fc.maxSafeNat());
/** Numbers that are not integers in [0, max]: just above, far above, negative, fractional, NaN, infinite. */
const outside = (max: number): fc.Arbitrary<number> =>
  fc.oneof(
    fc.integer({ min: 1, max: 16 }).map((d) => max + d).filter((v) => v > max),
    fc.double({ min: max + 1, max: 2 ** 64, noNaN: true }).filter((v) => v > max),
    fc.integer({ min: -(2 ** 31), max: -1 }),
    fc.double({ min: 0, max, noNaN: true }).filter((v) => !Number.isInteger(v)),
    fc.constantFrom(Number.NaN, Infinity, -Infinity, -0.5),
  );

describe("fuzz: GDT, TSS and IDT builders", () => {
  const segmentArb: fc.Arbitrary<Required<SegmentSpec>> = fc
    .record({
      base: fc.nat({ max: 2 ** 32 - 1 }),
      limit: fc.nat({ max: 2 ** 20 - 1 }),
      type: fc.nat({ max: 15 }),
      s: fc.constantFrom(0 as const, 1 as const),
      dpl: fc.constantFrom(0 as const, 1 as const, 2 as const, 3 as const),
      l: fc.constantFrom(0 as const, 1 as const),
      db: fc.constantFrom(0 as const, 1 as const),
      g: fc.constantFrom(0 as const, 1 as const),
    })
    .map((s) => (s.l === 1 ? { ...s, db: 0 as const } : s));

  it("segmentDescriptor: decoding gives back base, limit, type, S, DPL, L, D/B and G, present, AVL clear", () => {
    fc.assert(
      fc.property(segmentArb, (spec) => {
        const [lo, hi] = segmentDescriptor(spec);
        expect(Number.isInteger(lo) && lo >= 0 && lo < 2 ** 32 && Number.isInteger(hi) && hi >= 0 && hi < 2 ** 32).toBe(true);
        expect(decodeSegment(lo, hi)).toEqual({ ...spec, present: 1, avl: 0 });
      }),
      params(RUNS.descriptors),
    );
  });

  it("segmentDescriptor throws RangeError for a field that does not fit its bits instead of truncating it", () => {
    const field = fc.oneof(
      outside(2 ** 32 - 1).map((base) => ({ base })),
      outside(2 ** 20 - 1).map((limit) => ({ limit })),
      outside(15).map((type) => ({ type })),
      outside(3).map((dpl) => ({ dpl })),
      fc.constantFrom({ s: 2 }, { l: 2 }, { db: -1 }, { g: 0.5 }, { l: 1, db: 1 }),
    );
    fc.assert(
      fc.property(segmentArb, field, (spec, bad) => {
        expect(() => segmentDescriptor({ ...spec, ...bad } as SegmentSpec)).toThrow(RangeError);
      }),
      params(RUNS.descriptors),
    );
  });

  it("buildGdt: null, flat kernel/user code and data as SELECTOR names them, a 16-byte TSS descriptor with the whole base", () => {
    fc.assert(
      fc.property(address, (tssBase) => {
        const gdt = buildGdt(tssBase);
        expect(gdt.length).toBe(GDT_ENTRIES * 8);
        const dv = new DataView(gdt.buffer);
        const at = (sel: number) => decodeSegment(dv.getUint32(sel & ~7, true), dv.getUint32((sel & ~7) + 4, true));
        expect(u64(dv, 0)).toBe(0);
        const flat = { base: 0, limit: 0xfffff, present: 1, avl: 0, s: 1, g: 1 };
        expect(at(SELECTOR.KERNEL_CODE)).toEqual({ ...flat, type: 0xb, dpl: 0, l: 1, db: 0 });
        expect(at(SELECTOR.KERNEL_DATA)).toEqual({ ...flat, type: 0x3, dpl: 0, l: 0, db: 1 });
        expect(at(SELECTOR.USER_DATA)).toEqual({ ...flat, type: 0x3, dpl: 3, l: 0, db: 1 });
        expect(at(SELECTOR.USER_CODE)).toEqual({ ...flat, type: 0xb, dpl: 3, l: 1, db: 0 });
        expect(SELECTOR.USER_DATA & 3).toBe(3);
        const tss = at(SELECTOR.TSS);
        expect(tss).toEqual({ base: tss.base, limit: TSS_SIZE - 1, type: 9, s: 0, dpl: 0, present: 1, avl: 0, l: 0, db: 0, g: 0 });
        expect(tss.base + dv.getUint32(SELECTOR.TSS + 8, true) * 2 ** 32).toBe(tssBase);
        expect(dv.getUint32(SELECTOR.TSS + 12, true), "reserved upper half").toBe(0);
        // SYSRET takes user SS and CS from MSR_STAR[63:48] + 8 and + 16 (SDM Vol. 2B SYSRET).
        const sysret = Number((starMsr() >> 48n) & 0xffffn);
        expect([(sysret + 8) | 3, (sysret + 16) | 3]).toEqual([SELECTOR.USER_DATA, SELECTOR.USER_CODE]);
      }),
      params(RUNS.descriptors),
    );
  });

  it("buildTss: RSP0 and IST1..7 where the CPU reads them, the I/O map base past the limit, every other byte zero", () => {
    fc.assert(
      fc.property(address, fc.array(address, { maxLength: 7 }), (rsp0, ists) => {
        const tss = buildTss({ rsp0, ist: [0, ...ists] });
        expect(tss.length).toBe(TSS_SIZE);
        const dv = new DataView(tss.buffer);
        expect(u64(dv, 4)).toBe(rsp0);
        for (let i = 1; i <= 7; i++) expect(u64(dv, 36 + (i - 1) * 8), `IST${i}`).toBe(ists[i - 1] ?? 0);
        expect(dv.getUint16(102, true)).toBe(TSS_SIZE);
        const rest = [...tss.subarray(0, 4), ...tss.subarray(12, 36), ...tss.subarray(92, 102)];
        expect(rest.every((b) => b === 0)).toBe(true);
      }),
      params(RUNS.descriptors),
    );
  });

  it("buildTss throws RangeError for a stack that is not a safe non-negative integer, or a slot other than IST1..7", () => {
    const bad = outside(Number.MAX_SAFE_INTEGER);
    fc.assert(
      fc.property(fc.oneof(bad.map((rsp0) => ({ rsp0, ist: [0] })), bad.map((v) => ({ rsp0: 0, ist: [0, v] })), fc.constant<TssSpec>({ rsp0: 0, ist: [0, 1, 2, 3, 4, 5, 6, 7, 8] }), fc.constant<TssSpec>({ rsp0: 0, ist: [0x1000] })), (spec) => {
        expect(() => buildTss(spec)).toThrow(RangeError);
      }),
      params(RUNS.descriptors),
    );
  });

  const gateArb: fc.Arbitrary<Required<GateSpec>> = fc.record({
    offset: address,
    selector: fc.nat({ max: 0xffff }),
    ist: fc.nat({ max: 7 }),
    dpl: fc.constantFrom(0 as const, 3 as const),
    type: fc.constantFrom(0xe as const, 0xf as const),
  });
  const decodeGate = (g: Uint8Array) => {
    const dv = new DataView(g.buffer, g.byteOffset, 16);
    return {
      offset: dv.getUint16(0, true) + dv.getUint16(6, true) * 2 ** 16 + dv.getUint32(8, true) * 2 ** 32,
      selector: dv.getUint16(2, true),
      ist: dv.getUint8(4) & 7,
      type: dv.getUint8(5) & 0xf,
      dpl: (dv.getUint8(5) >> 5) & 3,
      present: dv.getUint8(5) >> 7,
      reserved: [dv.getUint8(4) >> 3, (dv.getUint8(5) >> 4) & 1, dv.getUint32(12, true)],
    };
  };

  it("idtGate and buildIdt: every gate decodes to its offset, selector, IST, type and DPL, present, reserved bits clear", () => {
    fc.assert(
      fc.property(fc.array(gateArb, { minLength: 1, maxLength: 40 }), (gates) => {
        for (const spec of gates) expect(decodeGate(idtGate(spec))).toEqual({ ...spec, present: 1, reserved: [0, 0, 0] });
        const seen: number[] = [];
        const idt = buildIdt(gates.length, (v) => (seen.push(v), gates[v]!));
        expect(seen).toEqual(gates.map((_, v) => v));
        expect(idt.length).toBe(16 * gates.length);
        gates.forEach((spec, v) => expect(decodeGate(idt.subarray(v * 16, v * 16 + 16)), `vector ${v}`).toEqual({ ...spec, present: 1, reserved: [0, 0, 0] }));
      }),
      params(RUNS.descriptors / 10),
    );
  });

  it("idtGate throws RangeError for an offset, selector, IST index, DPL or type it cannot encode instead of truncating it; buildIdt for a count that is not 0..256", () => {
    const field = fc.oneof(
      outside(Number.MAX_SAFE_INTEGER).map((offset) => ({ offset })),
      outside(0xffff).map((selector) => ({ selector })),
      outside(7).map((ist) => ({ ist })),
      outside(3).map((dpl) => ({ dpl })),
      fc.integer({ min: 0, max: 0xd }).map((type) => ({ type })),
    );
    fc.assert(
      fc.property(gateArb, field, outside(256), (spec, bad, count) => {
        expect(() => idtGate({ ...spec, ...bad } as GateSpec)).toThrow(RangeError);
        expect(() => buildIdt(count, () => spec)).toThrow(RangeError);
      }),
      params(RUNS.descriptors),
    );
  });
});

// ------------------------------------------------------------------ command line

const BOOLEAN = ["json", "help", "quiet", "all"];
/** Any argument, with the shapes parseFlags tells apart over-represented. */
const argArb = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.constantFrom("--", "-", "--=", "--=x", "--json", "--help", "--quiet", "--json=no", "--memory", "--memory=8", "-5", "0x10", "--a=b=c"),
  fc.string({ maxLength: 6 }).map((s) => `--${s}`),
);
// Not empty: a bare `--` ends the options (tested on its own below).
const keyArb = fc.string({ minLength: 1, maxLength: 6 }).filter((k) => !k.includes("=") && !BOOLEAN.includes(k));
const wordArb = fc.string({ maxLength: 8 }).filter((s) => !s.startsWith("--"));

type Token = { kind: "positional"; value: string } | { kind: "eq"; key: string; value: string } | { kind: "boolean"; key: string } | { kind: "option"; key: string; value: string } | { kind: "bare"; key: string };
const tokenArb: fc.Arbitrary<Token> = fc.oneof(
  wordArb.map((value) => ({ kind: "positional" as const, value })),
  fc.record({ kind: fc.constant("eq" as const), key: fc.oneof(keyArb, fc.constantFrom(...BOOLEAN)), value: fc.string({ maxLength: 8 }) }),
  fc.record({ kind: fc.constant("boolean" as const), key: fc.constantFrom(...BOOLEAN) }),
  fc.record({ kind: fc.constant("option" as const), key: keyArb, value: wordArb }),
  fc.record({ kind: fc.constant("bare" as const), key: keyArb }),
);

describe("fuzz: command line", () => {
  it("parseFlags never throws, and what it returns comes from argv: positionals in order, option keys and values as written", () => {
    fc.assert(
      fc.property(fc.array(argArb, { maxLength: 10 }), (argv) => {
        const copy = [...argv];
        const parsed = parseFlags(argv);
        expect(argv, "argv is not modified").toEqual(copy);
        // A bare `--` ends the options: every word after it is positional, as written.
        const end = argv.indexOf("--");
        const tail = end < 0 ? [] : argv.slice(end + 1);
        expect(parsed.positional.slice(parsed.positional.length - tail.length)).toEqual(tail);
        const positional = parsed.positional.slice(0, parsed.positional.length - tail.length);
        const options = parsed.options;
        if (end >= 0) argv = argv.slice(0, end);
        let from = 0;
        for (const p of positional) {
          expect(p.startsWith("--")).toBe(false);
          from = argv.indexOf(p, from) + 1;
          expect(from, `positional ${JSON.stringify(p)} in argv order`).toBeGreaterThan(0);
        }
        for (const [key, value] of options) {
          if (value === true) expect(argv).toContain(`--${key}`);
          else expect(argv.includes(`--${key}=${value}`) || argv.some((a, i) => a === `--${key}` && argv[i + 1] === value), `--${key} ${JSON.stringify(value)}`).toBe(true);
        }
        // Each word is positional unless the --k (without "=") just before it took it.
        const words = argv.filter((a) => !a.startsWith("--")).length;
        const takers = argv.filter((a) => a.startsWith("--") && !a.includes("=")).length;
        expect(positional.length).toBeLessThanOrEqual(words);
        expect(positional.length).toBeGreaterThanOrEqual(words - takers);
      }),
      params(RUNS.cli),
    );
  });

  it("parseFlags on a well-formed command line: --k=v sets k to v, --k v takes v, boolean flags never take the next word, the rest is positional in order", () => {
    fc.assert(
      fc.property(fc.array(tokenArb, { maxLength: 8 }), (tokens) => {
        const argv: string[] = [];
        const positional: string[] = [];
        const options = new Map<string, string | true>();
        tokens.forEach((t, i) => {
          const next = tokens[i + 1];
          if (t.kind === "positional") {
            argv.push(t.value);
            // A word right after a bare non-boolean --k is its value, not a positional.
            if (tokens[i - 1]?.kind === "bare") options.set((tokens[i - 1] as { key: string }).key, t.value);
            else positional.push(t.value);
          } else if (t.kind === "eq") {
            argv.push(`--${t.key}=${t.value}`);
            options.set(t.key, t.value);
          } else if (t.kind === "option") {
            argv.push(`--${t.key}`, t.value);
            options.set(t.key, t.value);
          } else {
            argv.push(`--${t.key}`);
            if (t.kind === "boolean" || next?.kind !== "positional") options.set(t.key, true);
          }
        });
        expect(parseFlags(argv)).toEqual({ positional, options });
      }),
      params(RUNS.cli),
    );
  });

  it("a boolean flag keeps the word after it positional, and a trailing --k=v wins, whatever comes before", () => {
    fc.assert(
      fc.property(fc.array(argArb.filter((a) => a !== "--"), { maxLength: 8 }), fc.constantFrom(...BOOLEAN), wordArb, keyArb, fc.string({ maxLength: 8 }), (rest, flag, word, key, value) => {
        const head = parseFlags([`--${flag}`, word, ...rest]);
        expect(head.positional[0]).toBe(word);
        expect(parseFlags([...rest, `--${key}=${value}`]).options.get(key)).toBe(value);
      }),
      params(RUNS.cli),
    );
  });

  it("parseFlags: a bare -- ends the options, and the words after it (-- and --k included) are positional", () => {
    fc.assert(
      fc.property(fc.array(tokenArb, { maxLength: 4 }), fc.array(argArb, { maxLength: 6 }), (tokens, tail) => {
        const head = tokens.flatMap((t) => (t.kind === "positional" ? [t.value] : t.kind === "eq" ? [`--${t.key}=${t.value}`] : t.kind === "option" ? [`--${t.key}`, t.value] : [`--${t.key}`]));
        const before = parseFlags(head);
        const after = parseFlags([...head, "--", ...tail]);
        expect(after.options).toEqual(before.options);
        expect(after.positional).toEqual([...before.positional, ...tail]);
      }),
      params(RUNS.cli),
    );
    expect(parseFlags(["run", "--", "a.elf", "f"]).positional).toEqual(["run", "a.elf", "f"]);
    expect(parseFlags(["--memory", "--", "a.elf"])).toEqual({ positional: ["a.elf"], options: new Map([["memory", true]]) });
  });

  it("numberOption: the fallback when absent, the number when finite and positive, otherwise IpreError naming the option", () => {
    const valueArb = fc.oneof(fc.string({ maxLength: 8 }), fc.double().map(String), fc.constantFrom("0x10", " 12 ", "1e3", "-1", "0", "Infinity", "NaN", "", true as const), fc.constant(undefined));
    fc.assert(
      fc.property(valueArb, fc.double({ min: 1, max: 1e6, noNaN: true }), (value, fallback) => {
        const flags = { positional: [], options: new Map<string, string | true>(value === undefined ? [] : [["memory", value]]) };
        let got: number;
        try {
          got = numberOption(flags, "memory", fallback);
        } catch (e) {
          expect(e).toBeInstanceOf(IpreError);
          expect((e as Error).message).toBe("--memory needs a positive number");
          expect(value === true || !(Number(value) > 0 && Number.isFinite(Number(value)))).toBe(true);
          return;
        }
        expect(got).toBe(value === undefined ? fallback : Number(value));
        expect(got > 0 && Number.isFinite(got)).toBe(true);
      }),
      params(RUNS.cli),
    );
  });

  it("parseIntArg: decimal and hex integers of a 64-bit register round-trip (a number when safe, else a BigInt); larger ones and anything else are UsageErrors", () => {
    const big = fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n });
    fc.assert(
      fc.property(big, fc.boolean(), fc.string({ maxLength: 10 }), (n, hex, junk) => {
        const text = hex ? `${n < 0n ? "-" : ""}0x${(n < 0n ? -n : n).toString(16)}` : n.toString();
        if (n < -(2n ** 63n) || n > 2n ** 64n - 1n) {
          expect(() => parseIntArg(text)).toThrow(UsageError);
          return;
        }
        const got = parseIntArg(text);
        const safe = n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER);
        expect(got).toBe(safe ? Number(n) : n);
        try {
          const v = parseIntArg(junk);
          expect(/^-?(0x[0-9a-f]+|\d+)$/i.test(junk), `${JSON.stringify(junk)} parsed as ${v}`).toBe(true);
        } catch (e) {
          expect(e).toBeInstanceOf(IpreError);
        }
      }),
      params(RUNS.cli),
    );
  });
});

// ------------------------------------------------------------------ plain tests of what the properties found

describe("regressions found by fuzzing", () => {
  /** One R-X segment, then `sections` as the section header table at the end of the file; `tail` bytes go before it. */
  function withSections(sections: { type: number; offset: number | bigint; size: number | bigint; link?: number; entsize?: number }[], tail = new Uint8Array(0)): Uint8Array {
    const shoff = PAGE + 16 + tail.length;
    const bytes = new Uint8Array(shoff + 64 * sections.length);
    bytes.set(tail, PAGE + 16);
    writeElfHeaders(bytes, [{ flags: PF_R | PF_X, offset: PAGE, vaddr: 0x400000, filesz: 16, memsz: 16 }]);
    const v = new DataView(bytes.buffer);
    v.setBigUint64(40, BigInt(shoff), true);
    v.setUint16(60, sections.length, true);
    sections.forEach((s, i) => {
      const sh = shoff + 64 * i;
      v.setUint32(sh + 4, s.type, true);
      v.setBigUint64(sh + 24, BigInt(s.offset), true);
      v.setBigUint64(sh + 32, BigInt(s.size), true);
      v.setUint32(sh + 40, s.link ?? 0, true);
      v.setBigUint64(sh + 56, BigInt(s.entsize ?? 0), true);
    });
    return bytes;
  }

  it("parseElf: a SYMTAB in section 0 (which is never range-checked) is not read past the end of the file (was a RangeError from DataView)", () => {
    const size = PAGE + 16 + 64;
    const img = parseElf(withSections([{ type: 2, offset: size, size: 48, entsize: 24 }]));
    expect(img.symbols.size).toBe(0);
  });

  it("parseElf: a .symtab whose sh_link is 0 is an ElfError, not a name scan across section 0's 2^47 bytes past the end of the file (was a hang)", () => {
    // Symbol 1's name is at offset 0x10000 of "its string table", section 0: far past the file.
    const symtab = new Uint8Array(48);
    new DataView(symtab.buffer).setUint32(24, 0x10000, true);
    const bytes = withSections([{ type: 3, offset: 0, size: 2n ** 47n }, { type: 2, offset: PAGE + 16, size: 48, link: 0, entsize: 24 }], symtab);
    withDeadline(CASE_LIMIT_MS, () => expect(() => parseElf(bytes)).toThrow(/invalid ELF: \.symtab sh_link 0 is not a valid string table index/), () => "the image above");
  });

  it("flatImage: a writable (data) image has no entry point, as an ELF's entry must be executable (was its address)", () => {
    expect(flatImage(new Uint8Array([0]), PAGE, { writable: true }).entry).toBe(0);
    expect(flatImage(new Uint8Array([0xc3]), PAGE).entry).toBe(PAGE);
  });

  it("flatImage: a negative address, a segment past 2^47, a fractional symbol offset, an unnamed symbol are ElfErrors; duplicate exports are listed once", () => {
    const code = new Uint8Array([0xc3, 0x90]);
    expect(() => flatImage(code, -PAGE)).toThrow(ElfError);
    expect(() => flatImage(code, 2 ** 47 - PAGE, {}), "ends at 2^47 - 4094: fine").not.toThrow();
    expect(() => flatImage(new Uint8Array(PAGE + 1), 2 ** 47 - PAGE)).toThrow(/2\^47/);
    expect(() => flatImage(code, PAGE, { symbols: { half: 0.5 } })).toThrow(ElfError);
    expect(() => flatImage(code, 0, { symbols: { "": 0 } })).toThrow(ElfError);
    expect(flatImage(code, PAGE, { symbols: { f: 0 }, exports: ["f", "f"] }).exports).toEqual(["f"]);
  });

  it("setPages: an empty range changes no page, even at an unaligned address (was the page holding it)", () => {
    const { spec, tables, mem } = windowTables(0, 4 * MiB);
    tables.init(mem, PERM.RW);
    tables.setPages(mem, spec.base + 2 * MiB + 0x10, 0, null);
    expect(tables.getPage(mem, spec.base + 2 * MiB)).toEqual(PERM.RW);
  });

  it("setPages: a range that runs past user memory throws before writing (was: the pages inside it changed, then RangeError)", () => {
    const { spec, tables, mem } = windowTables(0, 4 * MiB);
    tables.init(mem, PERM.RW);
    expect(() => tables.setPages(mem, spec.base + 4 * MiB - PAGE, 2 * PAGE, null)).toThrow(RangeError);
    expect(tables.getPage(mem, spec.base + 4 * MiB - PAGE)).toEqual(PERM.RW);
  });

  it("descriptors: out-of-range fields are RangeErrors (were truncated: IST 8 became 0, a 33-bit base lost its top bit)", () => {
    expect(() => idtGate({ offset: 0x1000, ist: 8 })).toThrow(RangeError);
    expect(() => segmentDescriptor({ base: 2 ** 32, type: 0x3, s: 1, dpl: 0 })).toThrow(RangeError);
    expect(() => buildTss({ rsp0: -8, ist: [0] })).toThrow(RangeError);
  });
});
