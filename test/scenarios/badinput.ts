/**
 * Bad-input scenario: malformed ELF images, programs that do not fit, wild calls and jumps, every
 * CPU exception a ring-3 guest can raise, hostcalls handed bogus pointers, guests poking at the
 * runtime area, bad options. After every case the host is alive and the machine still works.
 *
 * `test/badinput.test.ts` imports {@link badInputReport} on Node and runs this file under Bun and
 * Deno (`bun test/scenarios/badinput.ts`, `deno run -A test/scenarios/badinput.ts`), where it
 * prints the report as one JSON line.
 */
import { libc } from "../../src/ffi/index.ts";
import { Machine } from "../../src/machine/machine.ts";
import { RT } from "../../src/guest/layout.ts";
import { runtimeBytes, runtimeSymbol } from "../../src/guest/runtime.ts";
import { exampleElf, outcome, type Outcome } from "./common.ts";
import { resources, type Resources } from "./lifecycle.ts";
import { type ElfHeaderOptions, PF_R, PF_W, PF_X, type Phdr, writeElfHeaders } from "./elf-builder.ts";

const MiB = 1024 * 1024;
const R = PF_R, W = PF_W, X = PF_X;

/** `mov eax, 7; ret`: the code of every hand-built ELF (a function returning 7). */
const RET7 = [0xb8, 0x07, 0x00, 0x00, 0x00, 0xc3];

/**
 * A static ELF64 x86-64 executable with no sections: the header, program headers at 64, and the
 * bytes of RET7 at file offset 0x1000 (and 0x2000). Defaults: one R X segment at 0x400000.
 */
export function buildElf(o: ElfHeaderOptions & { phdrs?: Phdr[]; size?: number } = {}): Uint8Array {
  const phdrs = o.phdrs ?? [{ flags: R | X, offset: 0x1000, vaddr: 0x400000, filesz: 0x1000, memsz: 0x1000 }];
  const bytes = new Uint8Array(o.size ?? 0x3000);
  bytes.set(RET7, 0x1000);
  if (bytes.length >= 0x2000 + RET7.length) bytes.set(RET7, 0x2000);
  return writeElfHeaders(bytes, phdrs, o);
}

/** One bad program: what Machine.create({ program }) did, what load() on a live machine did, and ok() afterwards. */
export interface ProgramCase {
  name: string;
  create: Outcome;
  /** null when the image would fit the victim machine (the case is about another machine's shape). */
  load: Outcome | null;
  /** faults.elf's ok() on the machine load() was tried on. */
  after: Outcome;
}

export interface CallCase {
  name: string;
  fn: string;
  args: string[];
  result: Outcome;
  /** ok() right after. */
  after: Outcome;
}

export interface BadInputReport {
  runtime: string;
  /** Control: the hand-built ELF loads and returns 7, at the lowest and highest addresses that fit. */
  control: { plain: Outcome; upToStackGuard: Outcome; stackGuard: number };
  elf: ProgramCase[];
  fit: ProgramCase[];
  /** A failed load leaves the program, the runtime area and user memory as they were. */
  loadIntegrity: { programKept: boolean; runtimeAreaUnchanged: boolean; codeUnchanged: boolean };
  machine: { stackGuard: number; stackTop: number; memoryEnd: number; userStart: number; exitTrap: number; gateBase: number; symbols: Record<string, number> };
  calls: CallCase[];
  hostcalls: { valid: Outcome; cases: CallCase[]; afterAll: Outcome };
  runtimeArea: { cases: CallCase[]; unchanged: Record<string, boolean> };
  options: Array<{ name: string; outcome: Outcome }>;
  /** fds and ipre mappings before and after everything (all machines closed). */
  resources: { before: Resources; after: Resources };
  final: Outcome;
}

const s = (n: number | bigint) => (typeof n === "bigint" ? `${n}n` : String(n));

function hash(bytes: Uint8Array): string {
  let h = 2166136261 >>> 0;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 16777619) >>> 0;
  return h.toString(16);
}

export function badInputReport(): BadInputReport {
  const before = resources();
  const faultsElf = exampleElf("faults");
  const addElf = exampleElf("add");
  const kvElf = exampleElf("kvstore");

  // ---- control: the builder makes loadable programs
  let control: BadInputReport["control"];
  {
    using a = Machine.create({ program: buildElf(), name: "control" });
    const plain = outcome(() => a.call(0x400000));
    const top = a.stackGuard;
    using b = Machine.create({ program: buildElf({ phdrs: [{ flags: R | X, offset: 0x1000, vaddr: 0x400000, filesz: 0x1000, memsz: top - 0x400000 }] }), name: "control-big" });
    control = { plain, upToStackGuard: outcome(() => b.call(0x400000)), stackGuard: top };
  }

  using m = Machine.create({ program: faultsElf, name: "victim" });
  /** The parts of the runtime area no call changes: GDT/IDT/TSS, the runtime code (not its mailbox), the page tables. */
  const regions = () => {
    const raw = m.rawMemory();
    const mailbox = runtimeSymbol("mailbox");
    const codeNow = raw.subarray(RT.CODE, RT.CODE + mailbox);
    const codeImage = runtimeBytes().subarray(0, mailbox);
    return {
      descriptors: hash(raw.subarray(RT.GDT, RT.TSS + 0x1000)),
      runtimeCode: codeNow.length === codeImage.length && codeNow.every((b, i) => b === codeImage[i]),
      pageTables: hash(raw.subarray(RT.PML4, RT.PT_END)),
    };
  };
  const runtimeArea = () => JSON.stringify(regions());
  const code = () => hash(m.read(0x400000, 0x1000));
  m.call("ok");
  const rtBefore = runtimeArea();
  const codeBefore = code();
  const programBefore = m.program;

  const programCase = (name: string, bytes: Uint8Array, create: () => Machine = () => Machine.create({ program: bytes, name }), loadOnVictim = true): ProgramCase => ({
    name,
    create: outcome(() => create().close()),
    load: loadOnVictim ? outcome(() => m.load(bytes)) : null,
    after: outcome(() => m.call("ok")),
  });

  // ---- malformed images: ElfError
  const addHeader = (patch: (v: DataView, b: Uint8Array) => void) => {
    const b = addElf.slice();
    patch(new DataView(b.buffer), b);
    return b;
  };
  const elf: ProgramCase[] = [
    programCase("empty", new Uint8Array(0)),
    programCase("truncated header (40 bytes of add.elf)", addElf.subarray(0, 40)),
    programCase("truncated program headers (100 bytes of add.elf)", addElf.subarray(0, 100)),
    programCase("truncated segment (file ends inside it)", buildElf().subarray(0, 0x1003)),
    programCase("not an ELF (shell script)", new TextEncoder().encode("#!/bin/sh\necho hello\n".padEnd(128, " "))),
    programCase("ELFCLASS32", addHeader((_, b) => (b[4] = 1))),
    programCase("big-endian", addHeader((_, b) => (b[5] = 2))),
    programCase("EM_AARCH64", addHeader((v) => v.setUint16(18, 183, true))),
    programCase("EM_386", buildElf({ machine: 3 })),
    programCase("ET_DYN (PIE / shared object)", addHeader((v) => v.setUint16(16, 3, true))),
    programCase("ET_REL (object file)", buildElf({ type: 1 })),
    programCase("PT_INTERP (dynamically linked)", buildElf({ phdrs: [{ type: 3, flags: R, offset: 0x2000, vaddr: 0, filesz: 16, memsz: 16 }, { flags: R | X, offset: 0x1000, vaddr: 0x400000, filesz: 0x1000, memsz: 0x1000 }] })),
    programCase("overlapping PT_LOADs", buildElf({ phdrs: [
      { flags: R | X, offset: 0x1000, vaddr: 0x400000, filesz: 0x1000, memsz: 0x2000 },
      { flags: R | W, offset: 0x2000, vaddr: 0x401000, filesz: 0x1000, memsz: 0x1000 },
    ] })),
    programCase("two PT_LOADs sharing a page with different permissions", buildElf({ phdrs: [
      { flags: R | X, offset: 0x1000, vaddr: 0x400000, filesz: 0x800, memsz: 0x800 },
      { flags: R | W, offset: 0x2800, vaddr: 0x400800, filesz: 0x10, memsz: 0x800 },
    ] })),
    programCase("p_memsz 2 GiB", buildElf({ phdrs: [{ flags: R | X, offset: 0x1000, vaddr: 0x400000, filesz: 0x1000, memsz: 2 * 1024 * MiB }] })),
    programCase("p_filesz > p_memsz", buildElf({ phdrs: [{ flags: R | X, offset: 0x1000, vaddr: 0x400000, filesz: 0x1000, memsz: 0x800 }] })),
    programCase("non-canonical p_vaddr", buildElf({ phdrs: [{ flags: R | X, offset: 0x1000, vaddr: 2 ** 47, filesz: 0x1000, memsz: 0x1000 }] })),
    programCase("entry point outside every segment (0x7000000)", buildElf({ entry: 0x7000000 })),
    programCase("no PT_LOAD", buildElf({ phdrs: [{ type: 0x6474e551, flags: R | W, offset: 0, vaddr: 0, filesz: 0, memsz: 0 }] })),
  ];

  // ---- well-formed images that do not fit the machine: GuestMemoryError
  const fit: ProgramCase[] = [
    programCase("linked for window 1 (kvstore.elf) in window 0", kvElf),
    programCase("window-0 program (add.elf) in a window-1 machine", addElf, () => Machine.create({ window: 1, program: addElf, name: "w1" }), false),
    programCase("4 MiB machine: the program starts at its end", addElf, () => Machine.create({ memory: 4 * MiB, program: addElf, name: "small" }), false),
    programCase("segment over the IDT (0x1000)", buildElf({ phdrs: [{ flags: R | X, offset: 0x1000, vaddr: 0x1000, filesz: 0x1000, memsz: 0x1000 }] })),
    programCase("segment over the page tables (0x100000)", buildElf({ phdrs: [{ flags: R | W, offset: 0x1000, vaddr: 0x100000, filesz: 0x1000, memsz: 0x1000 }] })),
    programCase("segment over the runtime code (0x10000)", buildElf({ phdrs: [{ flags: R | X, offset: 0x1000, vaddr: 0x10000, filesz: 0x1000, memsz: 0x1000 }] })),
    programCase("p_memsz 512 MiB (beyond memory)", buildElf({ phdrs: [{ flags: R | X, offset: 0x1000, vaddr: 0x400000, filesz: 0x1000, memsz: 512 * MiB }] })),
    programCase("bss running into the stack guard page", buildElf({ phdrs: [{ flags: R | X, offset: 0x1000, vaddr: 0x400000, filesz: 0x1000, memsz: control.stackGuard - 0x400000 + 0x1000 }] })),
    programCase("segment in the trap region (exit trap page)", buildElf({ phdrs: [{ flags: R | X, offset: 0x1000, vaddr: 0x3ffff000, filesz: 0x1000, memsz: 0x1000 }] })),
  ];
  const loadIntegrity = { programKept: m.program === programBefore, runtimeAreaUnchanged: runtimeArea() === rtBefore, codeUnchanged: code() === codeBefore };

  // ---- calls and faults
  const machine = {
    stackGuard: m.stackGuard, stackTop: m.stackTop, memoryEnd: m.memoryEnd, userStart: m.userStart, exitTrap: m.exitTrap, gateBase: m.gateBase,
    symbols: Object.fromEntries(["write_code", "ok", "jump_to", "touch", "poke"].map((n) => [n, m.program?.symbols.get(n)?.value ?? -1])),
  };
  const callCase = (name: string, fn: string, args: Array<number | bigint>, run: () => unknown = () => m.call(fn, ...args)): CallCase => ({
    name, fn, args: args.map(s), result: outcome(run), after: outcome(() => m.call("ok")),
  });
  const calls: CallCase[] = [
    callCase("#DE divide by zero", "divide", [1, 0]),
    callCase("#DE LONG_MIN / -1", "divide", [-(2n ** 63n), -1n], () => m.callBigInt("divide", -(2n ** 63n), -1n)),
    callCase("#BP int3", "breakpoint", []),
    callCase("#UD ud2", "undefined_insn", []),
    callCase("#GP hlt in ring 3", "general_protection", []),
    callCase("#GP non-canonical read", "touch", [2 ** 47 + 8]),
    callCase("#PF read of unmapped memory", "touch", [0x5000000]),
    callCase("#PF read of the remote window (nothing connected)", "touch", [0x40400000]),
    callCase("#PF write to code", "write_code", []),
    callCase("#PF stack overflow", "recurse", [0]),
    callCase("call of an address outside memory", "0x7000000", [], () => m.call(0x7000000)),
    callCase("call of address 0 (runtime area)", "0x0", [], () => m.call(0)),
    callCase("call of a non-canonical address", "2^47", [], () => m.call(2 ** 47)),
    callCase("wild jump beyond memory", "jump_to", [0x123456789]),
    callCase("wild jump into data (no-execute)", "jump_to", [0x1000000]),
    callCase("wild jump onto the stack (no-execute)", "jump_to", [m.stackTop - 64]),
    callCase("wild jump to the stack guard page", "jump_to", [m.stackGuard]),
    callCase("wild jump into the runtime code", "jump_to", [RT.CODE]),
    callCase("wild jump to the top of the address space", "jump_to", [-8]),
    callCase("wild jump to a non-canonical address", "jump_to", [2 ** 47]),
    callCase("wild jump to a misaligned hostcall gate", "jump_to", [m.gateBase + 3]),
    callCase("wild jump to a hostcall gate without handler", "jump_to", [m.gateBase + 16 * 5]),
    callCase("wild jump to the print gate with a bogus pointer", "jump_to", [m.gateBase + 16 * 4095]),
  ];

  // ---- hostcalls receiving bogus pointers
  let hostcalls: BadInputReport["hostcalls"];
  {
    const printed: string[] = [];
    using h = Machine.create({
      program: exampleElf("hostcall"),
      name: "hostcalls",
      print: (t) => printed.push(t),
      hostcalls: {
        // use_hostcall(x) calls gate 1 with (x, x + 1): treat x as a pointer to 16 bytes.
        1: (ptr, _b, _c, _d, _e, _f, machine) => machine.bytes(ptr, 16).reduce((a, x) => a + x, 0),
        // hostcall_many(n) calls gate 2 with i: read a C string at i.
        2: (ptr, _b, _c, _d, _e, _f, machine) => machine.readCString(ptr).length,
      },
    });
    const buf = h.userStart + 0x100000;
    h.write(buf, new Uint8Array(16).fill(3));
    const valid = outcome(() => h.call("use_hostcall", buf));
    const hc = (name: string, fn: string, args: number[]): CallCase => ({
      name, fn, args: args.map(s), result: outcome(() => h.call(fn, ...args)), after: outcome(() => h.call("use_hostcall", buf)),
    });
    const cases = [
      hc("pointer beyond memory", "use_hostcall", [0x7000000]),
      hc("negative pointer", "use_hostcall", [-5]),
      hc("pointer into the runtime area (IDT)", "use_hostcall", [0x1000]),
      hc("pointer into the page tables", "use_hostcall", [0x100000]),
      hc("range straddling the end of memory", "use_hostcall", [h.memoryEnd - 8]),
      hc("pointer at 2^52", "use_hostcall", [2 ** 52]),
      hc("pointer into another window", "use_hostcall", [0x40400000]),
      hc("C string at address 0 (readCString)", "hostcall_many", [1]),
    ];
    hostcalls = { valid, cases, afterAll: outcome(() => h.call("greet")) };
  }

  // ---- the guest touching the runtime area
  const rtCases: CallCase[] = [
    callCase("read the GDT", "touch", [0x0]),
    callCase("read the IDT", "touch", [0x1000]),
    callCase("read the TSS", "touch", [0x2000]),
    callCase("read the runtime code", "touch", [RT.CODE]),
    callCase("read the PML4", "touch", [RT.PML4]),
    callCase("read a page table", "touch", [RT.PT_BASE]),
    callCase("write the GDT", "poke", [0x8, 0]),
    callCase("write the IDT (#PF gate)", "poke", [0x1000 + 14 * 16, 0]),
    callCase("write the runtime code", "poke", [RT.CODE + 0x40, 0x90909090]),
    callCase("write the IST1 stack (parked frame)", "poke", [RT.IST1_TOP - 16, 0x1234]),
    callCase("write the PML4", "poke", [RT.PML4, 0x7]),
    callCase("write a page table (map the IDT user-writable)", "poke", [RT.PT_BASE + 8, 0x1007]),
  ];
  const rtNow = regions();
  const rtThen = JSON.parse(rtBefore) as ReturnType<typeof regions>;
  const runtimeAreaReport = {
    cases: rtCases,
    unchanged: {
      descriptors: rtNow.descriptors === rtThen.descriptors,
      runtimeCode: rtNow.runtimeCode && rtThen.runtimeCode,
      pageTables: rtNow.pageTables === rtThen.pageTables,
      programCode: code() === codeBefore,
    },
  };

  // ---- bad options (thrown before anything is allocated)
  const options = [
    { name: "memory 1 MiB", outcome: outcome(() => Machine.create({ memory: 1 * MiB }).close()) },
    { name: "memory 1 GiB", outcome: outcome(() => Machine.create({ memory: 1024 * MiB }).close()) },
    { name: "window 512", outcome: outcome(() => Machine.create({ window: 512 }).close()) },
    { name: "window -1", outcome: outcome(() => Machine.create({ window: -1 }).close()) },
    { name: "window 1.5", outcome: outcome(() => Machine.create({ window: 1.5 }).close()) },
    { name: "stack larger than memory", outcome: outcome(() => Machine.create({ memory: 4 * MiB, stackSize: 8 * MiB }).close()) },
    { name: "7 call arguments", outcome: outcome(() => m.call("ok", 1, 2, 3, 4, 5, 6, 7)) },
    { name: "unknown symbol", outcome: outcome(() => m.call("no_such_function")) },
    { name: "bytes() outside user memory", outcome: outcome(() => m.bytes(0x1000, 16)) },
    { name: "write() past the end of memory", outcome: outcome(() => m.write(m.memoryEnd - 2, new Uint8Array(4))) },
    { name: "readU64() of a negative address", outcome: outcome(() => m.readU64(-8)) },
  ];

  const final = outcome(() => m.call("ok"));
  m.close();
  return {
    runtime: libc.runtime, control, elf, fit, loadIntegrity, machine, calls, hostcalls, runtimeArea: runtimeAreaReport, options,
    resources: { before, after: resources() }, final,
  };
}

if ((import.meta as ImportMeta & { main?: boolean }).main) {
  console.log(JSON.stringify(badInputReport()));
}
