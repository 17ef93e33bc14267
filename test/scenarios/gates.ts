/**
 * Hostcall gates (docs/ARCHITECTURE.md §4, src/engine/gates.ts), every path a hostcall can take:
 *
 *  - "gate":    the ring-3 gate, its `out` allowed by the TSS I/O bitmap (exits on PORT.HOSTCALL);
 *  - "fault":   the fetch-fault gate, with the machine's gate pages unmapped (as in `ipre bench
 *               latency`'s hostcall_fault; what remote code calling its caller's gates takes);
 *  - "refused": the gate's `out` refused with a #GP (the port's bit set in the TSS bitmap here, as
 *               a KVM that ignores the bitmap would), taken for the same hostcall.
 *
 * On each: results as numbers and 64-bit BigInts, six arguments, the print gate, one exit per
 * hostcall. Then, on the ring-3 gate: handlers that make a service run (the vCPU is parked from
 * the gate and resumes at its `ret`) or throw; and inside a remote call, the remote's own gate
 * (ring 3) and its caller's (fetch fault), with the exits of each call. Every handler records the
 * port of the exit that ran it. Run directly it prints one JSON line.
 */
import { libc } from "../../src/ffi/index.ts";
import { Machine } from "../../src/machine/machine.ts";
import { connect } from "../../src/ipre/connect.ts";
import { cpuOf, spaceOf } from "../../src/engine/facade.ts";
import { setGatePages } from "../../src/engine/gates.ts";
import { HOSTCALL_GATE_OFFSET, HOSTCALL_GATE_STRIDE, PORT, RT, windowBase } from "../../src/guest/layout.ts";
import { kvmFlavour } from "../../src/kvm/system.ts";
import { TSS_SIZE } from "../../src/x86/descriptors.ts";
import { PERM } from "../../src/x86/paging.ts";
import { exampleElf, isMain, outcome, scaled, type Outcome } from "./common.ts";
import { imm64 } from "./adversarial.ts";

export const PATHS = ["gate", "fault", "refused"] as const;
export type GatePath = (typeof PATHS)[number];

const gate = (window: number, n: number) => windowBase(window) + HOSTCALL_GATE_OFFSET + n * HOSTCALL_GATE_STRIDE;
const movabsRax = (v: number) => [0x48, 0xb8, ...imm64(v)];
const JMP_RAX = [0xff, 0xe0];
const CALL_RAX = [0xff, 0xd0];
const RET = [0xc3];

/** Flat code: the pieces 16-byte aligned, int3 between them; their offsets as symbols. */
function flat(pieces: Array<[string, number[]]>): { code: Uint8Array; symbols: Record<string, number> } {
  const symbols: Record<string, number> = {};
  const parts: number[] = [];
  for (const [name, bytes] of pieces) {
    symbols[name] = parts.length;
    parts.push(...bytes);
    while (parts.length % 16 !== 0) parts.push(0xcc);
  }
  return { code: Uint8Array.from(parts), symbols };
}

/** Window 0's code: g_any(n, a..e) tail-calls gate n with (a..e, 0); g_six(a..f) tail-calls gate 9. */
function callerCode() {
  return flat([
    // shl rdi, 4; movabs rax, gate 0; add rax, rdi; rdi..r8 := rsi..r9; xor r9d, r9d; jmp rax
    ["g_any", [0x48, 0xc1, 0xe7, 0x04, ...movabsRax(gate(0, 0)), 0x48, 0x01, 0xf8, 0x48, 0x89, 0xf7, 0x48, 0x89, 0xd6, 0x48, 0x89, 0xca, 0x4c, 0x89, 0xc1, 0x4d, 0x89, 0xc8, 0x45, 0x31, 0xc9, ...JMP_RAX]],
    ["g_six", [...movabsRax(gate(0, 9)), ...JMP_RAX]],
    // c_call(fn, x): rax = rdi; rdi = rsi; call rax; ret (an IPRE call when fn is the remote's)
    ["c_call", [0x48, 0x89, 0xf8, 0x48, 0x89, 0xf7, ...CALL_RAX, ...RET]],
    // g_write(p): mov byte [rdi], 1; ret
    ["g_write", [0xc6, 0x07, 0x01, ...RET]],
  ]);
}

/** Window 1's code (the remote): r_hc(x) = caller's gate 2 (own gate 2 (x)); r_big() = own gate 4 (). */
function remoteCode() {
  return flat([
    // sub rsp, 8; movabs rax, own gate 2; call rax; mov rdi, rax; movabs rax, caller's gate 2; call rax; add rsp, 8; ret
    ["r_hc", [0x48, 0x83, 0xec, 0x08, ...movabsRax(gate(1, 2)), ...CALL_RAX, 0x48, 0x89, 0xc7, ...movabsRax(gate(0, 2)), ...CALL_RAX, 0x48, 0x83, 0xc4, 0x08, ...RET]],
    ["r_big", [...movabsRax(gate(1, 4)), ...JMP_RAX]],
  ]);
}

/** What a handler saw: its arguments and the port of the exit that ran it (0xd3 gate, 0xee #PF stub, 0xed #GP stub). */
interface Seen {
  args: number[];
  port: number;
}

/** 64-bit results the handler of gate 1 returns (index = the guest's first argument), as strings (JSON). */
const RESULTS: Array<number | bigint | undefined> = [2n ** 63n - 1n, -(2n ** 63n), 0xdeadbeefcafebaben, 2n ** 64n + 5n, 2 ** 53 - 1, -(2 ** 53 - 1), -1, 0, undefined, 7];
/** Six arguments that are exact as numbers (the handler gets them signed). */
const SIX = [-1, 2 ** 53 - 1, -(2 ** 53 - 1), 0x7fffffff, 0, 123456789];

function pathReport(path: GatePath) {
  const seen: Seen[] = [];
  let m: Machine | undefined;
  const port = () => (m ? cpuOf(m).vcpu.ioPort : -1);
  const printed: string[] = [];
  m = Machine.create({
    name: `gates-${path}`,
    print: (t) => printed.push(t),
    hostcalls: {
      1: (k) => (seen.push({ args: [k], port: port() }), RESULTS[k]),
      9: (a, b, c, d, e, f) => (seen.push({ args: [a, b, c, d, e, f], port: port() }), -1234567),
    },
  });
  const bench = Machine.create({ name: `bench-${path}`, program: exampleElf("bench"), hostcalls: { 0: () => (seen.push({ args: [], port: bench ? cpuOf(bench).vcpu.ioPort : -1 }), 2) } });
  const hello = Machine.create({ name: `hello-${path}`, program: exampleElf("hostcall"), print: (t) => printed.push(t) });
  try {
    const code = callerCode();
    m.loadFlat(code.code, { symbols: code.symbols });
    for (const x of [m, bench, hello]) usePath(x, path);
    const results = RESULTS.map((_, k) => outcome(() => m!.callBigInt("g_any", 1, k)));
    const six = outcome(() => m!.callBigInt("g_six", ...SIX));
    const n = scaled(300);
    const e0 = bench.exits;
    const loop = outcome(() => bench.call("hostcall_loop", n));
    const loopExits = bench.exits - e0;
    const h0 = hello.exits;
    const greet = outcome(() => hello.call("greet"));
    return { path, results, six, seen, loop: { n, result: loop, exits: loopExits }, print: { result: greet, exits: hello.exits - h0, printed } };
  } finally {
    for (const x of [m, bench, hello]) x.close();
  }
}

/** Put a machine on one hostcall path (it starts on "gate"). */
function usePath(m: Machine, path: GatePath): void {
  if (path === "fault") setGatePages(cpuOf(m), false);
  if (path === "refused") {
    // The port's bit in the TSS I/O bitmap: the CPU reads it at every ring-3 `out`.
    const mem = spaceOf(m).mem.u8;
    const at = RT.TSS + TSS_SIZE + (PORT.HOSTCALL >> 3);
    mem[at] = (mem[at] ?? 0) | (1 << (PORT.HOSTCALL & 7));
  }
}

/** Handlers that make service runs or throw, on the ring-3 gate: the vCPU is parked from the gate. */
function handlersReport() {
  const ports: number[] = [];
  const m: Machine = Machine.create({ name: "handlers" });
  const code = callerCode();
  m.loadFlat(code.code, { symbols: code.symbols });
  const page = m.userStart + 0x100000;
  const boom = new Error("boom in a hostcall handler");
  const record = () => ports.push(cpuOf(m).vcpu.ioPort);
  m.hostcalls.set(1, (k) => (record(), k + 1));
  m.hostcalls.set(5, (k) => (record(), m.protect(page, 4096, PERM.R), k * 2));
  m.hostcalls.set(6, (k) => (record(), m.serviceRun(), k * 3));
  m.hostcalls.set(7, () => {
    record();
    throw boom;
  });
  m.hostcalls.set(8, () => {
    record();
    m.protect(page, 4096, PERM.RW);
    throw boom;
  });
  try {
    const step = (n: number, k: number) => {
      const e0 = m.exits;
      let same = false;
      const o = outcome(() => {
        try {
          return m.call("g_any", n, k);
        } catch (e) {
          same = e === boom;
          throw e;
        }
      });
      return { n, k, outcome: o, same, exits: m.exits - e0, after: outcome(() => m.call("g_any", 1, k)) };
    };
    const steps = [step(5, 21), step(6, 22), step(7, 23), step(8, 24), step(5, 25)];
    // The last protect() made the page read-only: the guest's write faults.
    return { steps, ports, page, write: outcome(() => m.call("g_write", page)) };
  } finally {
    m.close();
  }
}

/** Inside a remote call: the remote's own gate is ring 3, its caller's gate is a fetch fault. */
function remoteReport() {
  const ports: Array<{ machine: string; port: number }> = [];
  let caller: Machine | undefined;
  const record = (name: string) => ports.push({ machine: name, port: caller ? cpuOf(caller).vcpu.ioPort : -1 });
  const remote = Machine.create({ window: 1, name: "gremote", hostcalls: { 2: (x) => (record("gremote"), 3 * x + 1), 4: () => (record("gremote"), -(2n ** 62n) - 3n) } });
  caller = Machine.create({ window: 0, name: "gcaller", hostcalls: { 2: (y) => (record("gcaller"), y - 7) } });
  try {
    const rc = remoteCode();
    remote.loadFlat(rc.code, { symbols: rc.symbols, exports: ["r_hc", "r_big"] });
    const cc = callerCode();
    caller.loadFlat(cc.code, { symbols: cc.symbols });
    using _conn = connect(caller, remote);
    const calls = [11, -5, 2 ** 40].map((x) => {
      const e0 = caller!.exits;
      const result = outcome(() => caller!.call("c_call", remote.symbol("r_hc"), x));
      return { x, result, exits: caller!.exits - e0 };
    });
    const e0 = caller.exits;
    const big = outcome(() => caller!.callBigInt("c_call", remote.symbol("r_big")));
    const bigExits = caller.exits - e0;
    const unmapWhileConnected = outcome(() => setGatePages(cpuOf(remote), false));
    return { calls, big, bigExits, ports, unmapWhileConnected };
  } finally {
    caller.close();
    remote.close();
  }
}

export function gatesReport() {
  return {
    runtime: libc.runtime,
    flavour: kvmFlavour(),
    results: RESULTS.map((v) => (v === undefined ? "0" : String(BigInt.asIntN(64, BigInt(v))))),
    six: SIX,
    paths: PATHS.map(pathReport),
    handlers: handlersReport(),
    remote: remoteReport(),
  };
}
export type GatesReport = ReturnType<typeof gatesReport>;
export type { Outcome };

if (isMain(import.meta)) console.log(JSON.stringify(gatesReport()));
