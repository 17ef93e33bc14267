/**
 * Machine (vmcall) scenario: ELF calls with every argument kind, hostcalls, every guest fault,
 * the memory helpers, the error types, and 10,000 consecutive calls.
 *
 * Inputs are pseudo-random from `seed` (see common.ts `rng`): the report carries inputs next to
 * outputs and `test/machine.test.ts` recomputes every expected value. Run directly under Bun or
 * Deno it prints the report as one JSON line (`bun test/scenarios/machine.ts <seed>`).
 */
import { libc } from "../../src/ffi/index.ts";
import { Machine } from "../../src/machine/machine.ts";
import { RT } from "../../src/guest/layout.ts";
import { runtimeBytes } from "../../src/guest/runtime.ts";
import { exampleElf, isMain, outcome, randInt, rng, scenarioArgs, type Outcome } from "./common.ts";
import { flushPageTables, pt } from "./internals.ts";

/** Calls made after each fault on the same machine: ok() and a random division. */
export interface AfterFault {
  ok: Outcome;
  divide: { a: number; b: number; result: Outcome };
}

export interface FaultCase {
  fn: string;
  args: number[];
  result: Outcome;
  after: AfterFault;
}

export interface MachineReport {
  runtime: string;
  seed: number;
  /** loadFlat(): x, inc(x), neg(x), a call of neg by its address; `perm`: the code page's permissions. */
  flat: { x: number; inc: number; neg: number; intoCode: Outcome; perm: { write: boolean; exec: boolean } | null };
  calls: {
    add: Array<[number, number, number]>;
    mul: Array<[number, number, number]>;
    addNegative: number;
    /** [a, b, result] as decimal strings: callBigInt("add", a, b). */
    addBig: Array<[string, string, string]>;
    /** call() (a number) of add(2^40, x): must be exact. */
    addBigAsNumber: [string, number];
    strLen: Array<[string, number]>;
    sumBytes: Array<[number[], number]>;
    /** sum_bytes(ptr, n) with a pointer into memory the host wrote (no argument copying). */
    sumBytesAt: { bytes: number[]; result: number };
  };
  hostcalls: {
    k: number;
    useHostcall: Array<{ x: number; result: number; seen: [number, number] }>;
    /** handler returning a bigint: use_hostcall(x) === 2^52 + x + 1 (via callBigInt). */
    bigint: { x: number; result: string };
    printed: string[];
    greet: number;
    many: { n: number; c: number; d: number; result: number; seenCount: number; seenSum: number; seenFirst: number; seenLast: number; inOrder: boolean };
    thrown: { message: string; outcome: Outcome; sameError: boolean; nextX: number; next: Outcome };
    missing: { outcome: Outcome; next: Outcome };
    missingMachine: string;
    /** A hostcall handler calls the same machine again (while its vCPU is inside the outer call). */
    reentrant: { x: number; inner: Outcome; outer: Outcome; next: { x: number; result: Outcome } };
  };
  faults: {
    stackGuard: number;
    writeCode: number;
    cases: FaultCase[];
  };
  memory: {
    userStart: number;
    memoryEnd: number;
    base: number;
    written: number[];
    readBack: number[];
    bytesView: number[];
    guestReadsU64: { address: number; expected: string; guest: string };
    guestWritesU64: { value: string; readU64: string; readI64: number; viewSeesIt: boolean };
    writeU64: { value: string; readU64: string };
    cString: { text: string; read: string; guestStrLen: number; byteLength: number };
    outOfRange: Record<string, Outcome>;
  };
  errors: {
    garbageElf: Outcome;
    truncatedElf: Outcome;
    wrongWindow: Outcome;
    afterBadLoads: Outcome;
    unknownSymbol: Outcome;
    noProgram: Outcome;
    afterClose: Outcome;
    loadAfterClose: Outcome;
    closeTwice: Outcome;
    closed: boolean;
  };
  many: { offsets: number[]; results: number[]; elapsedMs: number; exits: number };
  service: ServiceReport;
}

/**
 * Service runs (a KVM_RUN outside any call) and a crash in the runtime's ring-0 code. On hardware
 * KVM, resuming at the `out` that just exited skips it (complete_fast_pio_out): serviceRun() once
 * crashed on every second call in a row there.
 */
export interface ServiceReport {
  /** serviceRun() this many times in a row, each followed by nothing. */
  runs: number;
  /** The number completed (== runs), or the error. */
  completed: Outcome;
  /** serviceRun() with mailbox work queued (a page-table write), then plain ones again. */
  withMailbox: Outcome;
  after: Outcome;
  /** A queued page-table write to an unmapped address: the ring-0 stub faults while applying it. */
  badAddress: number;
  crash: Outcome;
  runtimeStart: number;
  runtimeEnd: number;
  /** The next call reboots the vCPU and works. */
  afterCrash: Outcome;
  /** serviceRun() works again after the reboot. */
  serviceAfterCrash: Outcome;
}

const ri = randInt;

function callsSection(r: () => number): MachineReport["calls"] {
  using m = Machine.create({ program: exampleElf("add") });
  const add: Array<[number, number, number]> = [];
  const mul: Array<[number, number, number]> = [];
  for (let i = 0; i < 20; i++) {
    const a = ri(r, -1e9, 1e9), b = ri(r, -1e9, 1e9);
    add.push([a, b, m.call("add", a, b)]);
    const c = ri(r, -1e6, 1e6), d = ri(r, -1e6, 1e6);
    mul.push([c, d, m.call("mul", c, d)]);
  }
  const addBig: Array<[string, string, string]> = [];
  const bigPairs: Array<[bigint, bigint]> = [
    [2n ** 40n, BigInt(ri(r, 0, 1e9))],
    [2n ** 62n, 2n ** 62n], // wraps to -2^63
    [-(2n ** 63n), -1n], // wraps to 2^63 - 1
    [BigInt(ri(r, 0, 2 ** 31)) * 2n ** 31n, -BigInt(ri(r, 0, 2 ** 31))],
  ];
  for (const [a, b] of bigPairs) addBig.push([String(a), String(b), String(m.callBigInt("add", a, b))]);
  const x = ri(r, 0, 1e6);
  const addBigAsNumber: [string, number] = [String(2n ** 40n + BigInt(x)), m.call("add", 2n ** 40n, x)];
  const strings = ["hello", "", "héllo wörld ✓", "x".repeat(ri(r, 100, 3000)), Array.from({ length: 40 }, () => String.fromCharCode(ri(r, 33, 126))).join("")];
  const strLen: Array<[string, number]> = strings.map((s) => [s, m.call("str_len", s)]);
  const sumBytes: Array<[number[], number]> = [];
  for (const n of [0, 1, 17, ri(r, 100, 5000)]) {
    const bytes = Uint8Array.from({ length: n }, () => ri(r, 0, 255));
    sumBytes.push([[...bytes], m.call("sum_bytes", bytes, n)]);
  }
  const at = m.userStart + 0x3000;
  const raw = Array.from({ length: 300 }, () => ri(r, 0, 255));
  m.write(at, Uint8Array.from(raw));
  const sumBytesAt = { bytes: raw, result: m.call("sum_bytes", at, raw.length) };
  return { add, mul, addNegative: m.call("add", -5, 3), addBig, addBigAsNumber, strLen, sumBytes, sumBytesAt };
}

function hostcallsSection(r: () => number): MachineReport["hostcalls"] {
  const printed: string[] = [];
  const k = ri(r, -1000, 1000);
  let seen: [number, number] = [NaN, NaN];
  using m = Machine.create({
    program: exampleElf("hostcall"),
    print: (s) => printed.push(s),
    hostcalls: {
      1: (a, b) => {
        seen = [a, b];
        return a * b + k;
      },
    },
  });
  const useHostcall: MachineReport["hostcalls"]["useHostcall"] = [];
  for (const x of [ri(r, 0, 10000), ri(r, -10000, -1), 0, ri(r, 1e6, 3e6)]) {
    seen = [NaN, NaN];
    const result = m.call("use_hostcall", x);
    useHostcall.push({ x, result, seen });
  }
  // A bigint result goes back in full 64 bits.
  const bx = ri(r, 0, 1000);
  m.hostcalls.set(1, (a) => 2n ** 52n + BigInt(a));
  const bigint = { x: bx, result: String(m.callBigInt("use_hostcall", bx)) };

  const greet = m.call("greet");

  const c = ri(r, 1, 1000), d = ri(r, -1000, 1000), n = 1000;
  const seenI: number[] = [];
  m.hostcalls.set(2, (i) => {
    seenI.push(i);
    return i * c + d;
  });
  const manyResult = m.call("hostcall_many", n);
  const many = {
    n, c, d, result: manyResult, seenCount: seenI.length, seenSum: seenI.reduce((s, v) => s + v, 0),
    seenFirst: seenI[0] ?? NaN, seenLast: seenI[seenI.length - 1] ?? NaN, inOrder: seenI.every((v, i) => v === i),
  };

  // A JS error thrown by a hostcall leaves call() as is; the machine keeps working.
  const message = `boom-${ri(r, 0, 1e9)}`;
  const boom = new Error(message);
  let caught: unknown;
  m.hostcalls.set(1, () => {
    throw boom;
  });
  const thrownOutcome = outcome(() => {
    try {
      return m.call("use_hostcall", 5);
    } catch (e) {
      caught = e;
      throw e;
    }
  });
  m.hostcalls.set(1, (a, b) => a + b);
  const nextX = ri(r, 0, 1e6);
  const thrown = { message, outcome: thrownOutcome, sameError: caught === boom, nextX, next: outcome(() => m.call("use_hostcall", nextX)) };

  // A gate without a handler.
  m.hostcalls.delete(1);
  const missingOutcome = outcome(() => m.call("use_hostcall", 1));
  m.hostcalls.set(1, (a, b) => a * 3 - b);
  const missing = { outcome: missingOutcome, next: outcome(() => m.call("use_hostcall", 10)) };

  return { k, useHostcall, bigint, printed, greet, many, thrown, missing, missingMachine: m.name, reentrant: reentrantSection(r) };
}

/**
 * Its own machine, because a failure here could leave the machine unusable: a call() from inside
 * one of the machine's own hostcalls must be refused without disturbing the running call.
 */
function reentrantSection(r: () => number): MachineReport["hostcalls"]["reentrant"] {
  let inner: Outcome = { ok: true, value: "handler not run" };
  let self: Machine | undefined;
  using m = Machine.create({
    program: exampleElf("hostcall"),
    hostcalls: {
      1: (a, b) => {
        inner = outcome(() => self!.call("hostcall_many", 3));
        return a + b;
      },
      2: (i) => i,
    },
  });
  self = m;
  const x = ri(r, 0, 1e6);
  const outer = outcome(() => m.call("use_hostcall", x));
  m.hostcalls.set(1, (a, b) => a + b);
  const nx = ri(r, 0, 1e6);
  return { x, inner, outer, next: { x: nx, result: outcome(() => m.call("use_hostcall", nx)) } };
}

function faultsSection(r: () => number): MachineReport["faults"] {
  using m = Machine.create({ program: exampleElf("faults") });
  const after = (): AfterFault => {
    const a = ri(r, -1e9, 1e9);
    let b = ri(r, -1000, 1000);
    if (b === 0) b = 3;
    return { ok: outcome(() => m.call("ok")), divide: { a, b, result: outcome(() => m.call("divide", a, b)) } };
  };
  const cases: FaultCase[] = [];
  const run = (fn: string, ...args: number[]) => cases.push({ fn, args, result: outcome(() => m.call(fn, ...args)), after: after() });
  run("divide", ri(r, 1, 1e6), 0);
  run("touch", 0x7000000);
  run("undefined_insn");
  run("recurse", 0);
  run("write_code");
  run("jump_to", 0x1234);
  run("general_protection");
  run("touch", 0x1000); // the runtime area: supervisor-only
  run("poke", m.base + 0x100000, 1); // the page tables: supervisor-only
  run("breakpoint");
  run("divide", 5, 0); // the same fault twice in a row
  return { stackGuard: m.stackGuard, writeCode: m.symbol("write_code"), cases };
}

function memorySection(r: () => number): MachineReport["memory"] {
  using m = Machine.create({ program: exampleElf("faults") });
  using adder = Machine.create({ program: exampleElf("add") });
  const at = m.userStart + 0x1000 + ri(r, 0, 255) * 8;
  const written = Array.from({ length: 64 }, () => ri(r, 0, 255));
  m.write(at, Uint8Array.from(written));
  const readBack = [...m.read(at, 64)];
  const view = m.bytes(at, 64);
  const bytesView = [...view];

  // The guest reads what the host wrote, little-endian.
  const dv = new DataView(Uint8Array.from(written).buffer);
  const guestReadsU64 = { address: at, expected: String(dv.getBigInt64(0, true)), guest: String(m.callBigInt("touch", at)) };

  // The host reads what the guest wrote, through a view taken before the call too.
  const value = BigInt.asIntN(64, BigInt(ri(r, 1, 2 ** 31)) * -(2n ** 31n) - BigInt(ri(r, 0, 1000)));
  m.callBigInt("poke", at, value);
  const viewDv = new DataView(view.buffer, view.byteOffset, 8);
  const guestWritesU64 = { value: String(value), readU64: String(m.readU64(at)), readI64: m.readI64(at), viewSeesIt: viewDv.getBigInt64(0, true) === value };

  const u = BigInt(ri(r, 0, 2 ** 31)) * 2n ** 32n + BigInt(ri(r, 0, 2 ** 31));
  m.writeU64(at + 64, u);
  const writeU64 = { value: String(u), readU64: String(m.readU64(at + 64)) };

  const text = `ipre ✓ ${ri(r, 0, 1e9)}`;
  const sAt = adder.userStart + 0x2000;
  adder.write(sAt, text);
  adder.write(sAt + new TextEncoder().encode(text).length, new Uint8Array([0]));
  const cString = { text, read: adder.readCString(sAt), guestStrLen: adder.call("str_len", sAt), byteLength: new TextEncoder().encode(text).length };

  const end = m.memoryEnd;
  const outOfRange: Record<string, Outcome> = {
    bytesInRuntimeArea: outcome(() => m.bytes(m.base + 0x1000, 8)),
    bytesJustBelowUser: outcome(() => m.bytes(m.userStart - 1, 2)),
    bytesPastEnd: outcome(() => m.bytes(end - 4, 8)),
    readAtEnd: outcome(() => m.read(end, 1)),
    readU64Below: outcome(() => m.readU64(m.userStart - 8)),
    readU64PastEnd: outcome(() => m.readU64(end - 7)),
    writePastEnd: outcome(() => m.write(end - 2, "abc")),
    writeU64PastEnd: outcome(() => m.writeU64(end, 1)),
    readCStringAtEnd: outcome(() => m.readCString(end)),
    otherWindow: outcome(() => m.bytes(0x40000000 + m.userStart, 8)),
    lastByteOk: outcome(() => m.bytes(end - 1, 1).length),
    firstUserByteOk: outcome(() => m.bytes(m.userStart, 1).length),
  };
  return { userStart: m.userStart, memoryEnd: end, base: m.base, written, readBack, bytesView, guestReadsU64, guestWritesU64, writeU64, cString, outOfRange };
}

function errorsSection(r: () => number): MachineReport["errors"] {
  const m = Machine.create({ program: exampleElf("add") });
  const garbage = Uint8Array.from({ length: 512 }, () => ri(r, 0, 255));
  garbage[0] = 0x13; // never "\x7fELF"
  const garbageElf = outcome(() => m.load(garbage));
  const truncatedElf = outcome(() => m.load(exampleElf("add").subarray(0, 100)));
  const wrongWindow = outcome(() => m.load(exampleElf("kvstore")));
  const a = ri(r, 0, 1000);
  const afterBadLoads = outcome(() => m.call("add", a, 1) - a); // the old program is intact: 1
  const unknownSymbol = outcome(() => m.call("no_such_function", 1));
  let noProgram: Outcome;
  {
    using empty = Machine.create();
    noProgram = outcome(() => empty.call("add", 1, 2));
  }
  m.close();
  const afterClose = outcome(() => m.call("add", 1, 2));
  const loadAfterClose = outcome(() => m.load(exampleElf("add")));
  const closeTwice = outcome(() => {
    m.close();
    m[Symbol.dispose]();
    return "ok";
  });
  return { garbageElf, truncatedElf, wrongWindow, afterBadLoads, unknownSymbol, noProgram, afterClose, loadAfterClose, closeTwice, closed: m.closed };
}

function manySection(r: () => number, count: number): MachineReport["many"] {
  using m = Machine.create({ program: exampleElf("add") });
  const offsets = Array.from({ length: 16 }, () => ri(r, -1e6, 1e6));
  const results = new Array<number>(count);
  const exits0 = m.exits;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) results[i] = m.call("add", i, i + offsets[i & 15]!);
  return { offsets, results, elapsedMs: performance.now() - t0, exits: m.exits - exits0 };
}

export function machineReport(seed: number, count = 10_000): MachineReport {
  const r = rng(seed);
  return {
    runtime: libc.runtime,
    seed,
    calls: callsSection(r),
    hostcalls: hostcallsSection(r),
    faults: faultsSection(r),
    memory: memorySection(r),
    errors: errorsSection(r),
    many: manySection(r, count),
    flat: flatSection(r),
    service: serviceSection(),
  };
}

function serviceSection(): ServiceReport {
  using m = Machine.create({ program: exampleElf("add"), name: "service" });
  const runs = 7;
  const completed = outcome(() => {
    let n = 0;
    for (let i = 0; i < runs; i++, n++) m.serviceRun();
    return n;
  });
  const withMailbox = outcome(() => {
    m.protect(m.userStart + 0x100000, 4096, null); // queues a PTE write + CR3 load: a page-table service run
    m.serviceRun();
    pt(m).write64(m.base + RT.PT_BASE, pt(m).read64(m.base + RT.PT_BASE)); // queued: applied by the next service run
    m.serviceRun();
    m.serviceRun();
    return "ok";
  });
  const after = outcome(() => m.call("add", 20, 22));
  const badAddress = 2 ** 40; // 1 TiB: no window maps it
  const crash = outcome(() => {
    pt(m).write64(badAddress, 0n);
    flushPageTables(m);
    return "no crash";
  });
  const runtimeStart = m.base + RT.CODE;
  return {
    runs,
    completed,
    withMailbox,
    after,
    badAddress,
    crash,
    runtimeStart,
    runtimeEnd: runtimeStart + runtimeBytes().length,
    afterCrash: outcome(() => m.call("add", 40, 2)),
    serviceAfterCrash: outcome(() => {
      m.serviceRun();
      m.serviceRun();
      return m.call("add", 1, 2);
    }),
  };
}

/** A flat binary (raw code, no ELF headers): `inc(x) = x + 1` and `neg(x) = -x`. */
function flatSection(r: () => number): MachineReport["flat"] {
  using m = Machine.create({ memory: 8 * 1024 * 1024, name: "flat" });
  // inc: lea rax, [rdi+1]; ret   neg: mov rax, rdi; neg rax; ret
  const code = new Uint8Array([0x48, 0x8d, 0x47, 0x01, 0xc3, 0x48, 0x89, 0xf8, 0x48, 0xf7, 0xd8, 0xc3]);
  const image = m.loadFlat(code, { symbols: { inc: 0, neg: 5 } });
  const x = randInt(r, -1e9, 1e9);
  const codeAddr = image.segments[0]!.vaddr;
  return {
    x,
    inc: m.call("inc", x),
    neg: m.call("neg", x),
    intoCode: outcome(() => m.call(codeAddr + 5, x)),
    perm: m.tables.getPage(pt(m), codeAddr),
  };
}

if (isMain(import.meta)) {
  const [seed, count] = scenarioArgs();
  console.log(JSON.stringify(machineReport(Number(seed ?? 1), Number(count ?? 10_000))));
}
