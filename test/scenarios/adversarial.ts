/**
 * Adversarial IPRE scenario: both sides of a connection attack the other with hand-written flat
 * machine code (issue 9).
 *
 *  - `attacker` (window 0, flat code): a malicious *caller*, connected to `kvstore` (window 1,
 *    guests/examples/kvstore.elf) and to `evil` (window 2, flat code).
 *  - `evil` (window 2, flat code): a malicious *remote*; its code runs inside calls from
 *    `attacker`, on the attacker's vCPU and stack.
 *  - `kvcaller` (window 0, guests/examples/kvcaller.elf): a second, honest caller of kvstore that
 *    must keep working while the attacker attacks.
 *
 * Every attack records what happened (the typed error with its facts) and a health check: the
 * honest caller's lookups, the attacker's legitimate calls to both remotes, whether the remote
 * window is unmapped again, busy/reset state, and a hash of kvstore's data. Inputs are
 * pseudo-random from `seed` and in the report; test/adversarial.test.ts recomputes the expected
 * values. Run directly it prints one JSON line (`bun test/scenarios/adversarial.ts <seed>`).
 */
import "./call-path.ts";
import { libc } from "../../src/ffi/index.ts";
import { GuestMemoryError, TimeoutError } from "../../src/errors.ts";
import { Machine, type HostcallFn, type MachineOptions } from "../../src/machine/machine.ts";
import { connect, type Connection } from "../../src/ipre/connect.ts";
import { ELF_LINK_OFFSET, HOSTCALL_GATE_OFFSET, HOSTCALL_GATE_STRIDE, MiB, PORT, RT, windowBase } from "../../src/guest/layout.ts";
import { kvmFlavour } from "../../src/kvm/system.ts";
import { runtimeSymbol } from "../../src/guest/runtime.ts";
import { exampleElf, isMain, outcome, randInt, rng, scenarioArgs, upperMs, type Outcome } from "./common.ts";
import { busyWith } from "./internals.ts";

/** An outcome plus the facts of GuestMemoryError (length) and TimeoutError (timeout, elapsed). */
export interface Attempt extends Outcome {
  length?: number;
  timeoutMs?: number;
  elapsedMs?: number;
}

export function attempt(fn: () => unknown): Attempt {
  let error: unknown;
  const o: Attempt = outcome(() => {
    try {
      return fn();
    } catch (e) {
      error = e;
      throw e;
    }
  });
  if (error instanceof GuestMemoryError) o.length = error.length;
  if (error instanceof TimeoutError) {
    o.timeoutMs = error.timeoutMs;
    o.elapsedMs = error.elapsedMs;
  }
  return o;
}

// ---- a tiny x86-64 encoder: only what the attacks need ----

const RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSP = 4, RSI = 6, RDI = 7;

/** Little-endian bytes of a 64-bit value. */
export function imm64(v: number | bigint): number[] {
  let x = BigInt.asUintN(64, BigInt(v));
  const out: number[] = [];
  for (let i = 0; i < 8; i++, x >>= 8n) out.push(Number(x & 0xffn));
  return out;
}
/** movabs reg, imm64 (REX.W B8+r). */
const movabs = (reg: number, v: number | bigint) => [0x48, 0xb8 + reg, ...imm64(v)];
/** mov dst, src between 64-bit registers (REX.W 89 /r). */
const mov = (dst: number, src: number) => [0x48, 0x89, 0xc0 | (src << 3) | dst];
const jmpReg = (reg: number) => [0xff, 0xe0 + reg];
const callReg = (reg: number) => [0xff, 0xd0 + reg];
const RET = [0xc3];
/** mov rax, [rdi] */
const LOAD_RDI = [0x48, 0x8b, 0x07];
/** mov [rdi], rsi; mov rax, rsi */
const STORE_RDI_RSI = [0x48, 0x89, 0x37, ...mov(RAX, RSI)];
/** call rel32 to itself: endless recursion */
const CALL_SELF = [0xe8, 0xfb, 0xff, 0xff, 0xff];
const JMP_SELF = [0xeb, 0xfe];
const UD2 = [0x0f, 0x0b];
/** rdfsbase rax / wrfsbase reg (F3 REX.W 0F AE /0, /2) */
const RDFSBASE_RAX = [0xf3, 0x48, 0x0f, 0xae, 0xc0];
const wrfsbase = (reg: number) => [0xf3, 0x48, 0x0f, 0xae, 0xd0 + reg];

type Piece = (addr: (name: string) => number) => number[];

/**
 * Lay out named pieces (code or data) 16-byte aligned at `base`. Two passes: every piece has the
 * same size whatever the addresses (movabs and imm64 only), so the first pass places them and the
 * second fills in the addresses, forward references included.
 */
function assemble<N extends string>(base: number, pieces: Array<[N, Piece]>): { code: Uint8Array; symbols: Record<string, number>; addr: Record<N, number> } {
  const offsets: Record<string, number> = {};
  let at = 0;
  for (const [name, piece] of pieces) {
    offsets[name] = at;
    at = Math.ceil((at + piece(() => 0).length) / 16) * 16;
  }
  const addr = {} as Record<N, number>;
  for (const [name] of pieces) addr[name] = base + (offsets[name] ?? 0);
  const lookup = (name: string) => {
    const a = offsets[name];
    if (a === undefined) throw new Error(`assemble: unknown piece ${name}`);
    return base + a;
  };
  const code = new Uint8Array(at).fill(0xcc); // int3 between pieces
  for (const [name, piece] of pieces) code.set(piece(lookup), offsets[name] ?? 0);
  return { code, symbols: offsets, addr };
}

const gate = (window: number, n: number) => windowBase(window) + HOSTCALL_GATE_OFFSET + n * HOSTCALL_GATE_STRIDE;
const PRINT = 4095;
const CALLER_WINDOW = 0, KV_WINDOW = 1, EVIL_WINDOW = 2;
/** Offset of `landing` inside a_stack_in_code (mov rbx,rsp: 3; movabs rsp: 10; movabs rax: 10; jmp rax: 2). */
const LANDING = 25;
const E_HOME_VALUE = 0x5afe;

/** The malicious remote, window 2: everything exported (its callers may enter any of it). */
function evilProgram() {
  const base = windowBase(EVIL_WINDOW) + ELF_LINK_OFFSET;
  return assemble(base, [
    ["e_add1", () => [0x48, 0x8d, 0x47, 0x01, ...RET]], // lea rax, [rdi+1]; ret
    ["e_read", () => [...LOAD_RDI, ...RET]],
    ["e_write", () => [...STORE_RDI_RSI, ...RET]],
    // Tail-jump anywhere with one argument: rax = rdi; rdi = rsi; jmp rax.
    ["e_jmp", () => [...mov(RAX, RDI), ...mov(RDI, RSI), ...jmpReg(RAX)]],
    // The same with two arguments: rax = rdi; rdi = rsi; rsi = rdx; jmp rax.
    ["e_jmp2", () => [...mov(RAX, RDI), ...mov(RDI, RSI), ...mov(RSI, RDX), ...jmpReg(RAX)]],
    // Call anything with one argument and return its result: sub rsp, 8; call rax; add rsp, 8.
    ["e_call", () => [...mov(RAX, RDI), ...mov(RDI, RSI), 0x48, 0x83, 0xec, 0x08, ...callReg(RAX), 0x48, 0x83, 0xc4, 0x08, ...RET]],
    // Tail calls of its own gates: print(ptr, len) and hostcall 1 (rdi, rsi, rdx pass through).
    ["e_print", () => [...movabs(RAX, gate(EVIL_WINDOW, PRINT)), ...jmpReg(RAX)]],
    ["e_hostcall", () => [...movabs(RAX, gate(EVIL_WINDOW, 1)), ...jmpReg(RAX)]],
    // Return with a wrong RSP: pop the trap, push it twice, ret (trap reached with RSP = entry RSP).
    ["e_ret_low", () => [0x58, 0x50, 0x50, ...RET]],
    // Return with a wrong RSP: pop rax; pop rcx; jmp rax (trap reached with RSP = entry RSP + 16).
    ["e_ret_high", () => [0x58, 0x59, ...jmpReg(RAX)]],
    // Plant a second copy of the return trap above its own: mov rax, [rsp]; mov [rsp+8], rax; ret.
    ["e_plant", () => [0x48, 0x8b, 0x04, 0x24, 0x48, 0x89, 0x44, 0x24, 0x08, ...RET]],
    // Skip the return trap: add rsp, 8; ret (returns to whatever lies above it on the stack).
    ["e_skip_trap", () => [0x48, 0x83, 0xc4, 0x08, ...RET]],
    ["e_fs", () => [...wrfsbase(RDI), ...mov(RAX, RDI), ...RET]],
    ["e_rdfs", () => [...RDFSBASE_RAX, ...RET]],
    ["e_spin", () => JMP_SELF],
    ["e_recurse", () => CALL_SELF],
    // Switch to a stack of the remote's choosing in caller memory and jump into caller code:
    // mov rbx, rsp; mov rsp, rsi; jmp rdi. e_ret_home (not exported) restores the stack.
    ["e_cb_stack", () => [...mov(RBX, RSP), ...mov(RSP, RSI), ...jmpReg(RDI)]],
    ["e_ret_home", () => [...mov(RSP, RBX), 0xb8, ...imm64(E_HOME_VALUE).slice(0, 4), ...RET]],
    // The hostcall port written from its own code, not from a gate: out PORT.HOSTCALL, al; ret.
    ["e_out", () => [0xe6, PORT.HOSTCALL, ...RET]],
  ]);
}
const EVIL_EXPORTS = ["e_add1", "e_read", "e_write", "e_jmp", "e_jmp2", "e_call", "e_print", "e_hostcall", "e_ret_low", "e_ret_high", "e_plant", "e_skip_trap", "e_fs", "e_rdfs", "e_spin", "e_recurse", "e_cb_stack", "e_out"] as const;

/** The malicious caller, window 0. `kv` and `evil` are the remotes' addresses it links against. */
function attackerProgram(kv: { kv_count: number; call_back: number }, evil: Record<string, number>, traps: { callbackTrap: number }) {
  const base = windowBase(CALLER_WINDOW) + ELF_LINK_OFFSET;
  return assemble(base, [
    ["a_ret42", () => [0xb8, 0x2a, 0x00, 0x00, 0x00, ...RET]], // mov eax, 42; ret
    ["a_retonly", () => RET],
    ["a_read", () => [...LOAD_RDI, ...RET]],
    ["a_write", () => [...STORE_RDI_RSI, ...RET]],
    ["a_jmp", () => [...mov(RAX, RDI), ...mov(RDI, RSI), ...jmpReg(RAX)]],
    // Call fn(a1, a2, a3): rax = rdi; rdi = rsi; rsi = rdx; rdx = rcx; call rax; ret.
    ["a_call", () => [...mov(RAX, RDI), ...mov(RDI, RSI), ...mov(RSI, RDX), ...mov(RDX, RCX), ...callReg(RAX), ...RET]],
    // A forged return: push rdi; ret.
    ["a_ret_to", () => [0x57, ...RET]],
    ["a_print", () => [...movabs(RAX, gate(CALLER_WINDOW, PRINT)), ...jmpReg(RAX)]],
    ["a_hostcall", () => [...movabs(RAX, gate(CALLER_WINDOW, 1)), ...jmpReg(RAX)]],
    // Call fn(), then read [addr] at once: push rsi; call rdi; pop rdi; mov rax, [rdi]; ret.
    ["a_call_then_read", () => [0x56, ...callReg(RDI), 0x5f, ...LOAD_RDI, ...RET]],
    // Enter `target` with RSP = rsi: mov rsp, rsi; jmp rdi.
    ["a_rsp_jmp", () => [...mov(RSP, RSI), ...jmpReg(RDI)]],
    // Enter kv_count with RSP pointing into its own read-only code (at q_land), then return
    // what q_land holds: mov rbx, rsp; movabs rsp, q_land; movabs rax, kv_count; jmp rax;
    // landing: mov rsp, rbx; movabs rax, q_land; mov rax, [rax]; ret.
    ["a_stack_in_code", (a) => [...mov(RBX, RSP), ...movabs(RSP, a("q_land")), ...movabs(RAX, kv.kv_count), ...jmpReg(RAX), ...mov(RSP, RBX), ...movabs(RAX, a("q_land")), 0x48, 0x8b, 0x00, ...RET]],
    ["q_land", (a) => imm64(a("a_stack_in_code") + LANDING)],
    // Read-only data that evil's e_cb_stack uses as a stack: [a_retonly, e_ret_home].
    ["q_victim", (a) => [...imm64(a("a_retonly")), ...imm64(evil.e_ret_home!)]],
    // kvstore's call_back(a_recurse_ipre, x), which calls back into a_recurse_ipre: unbounded.
    ["a_recurse_ipre", (a) => [...mov(RSI, RDI), ...movabs(RDI, a("a_recurse_ipre")), ...movabs(RAX, kv.call_back), ...jmpReg(RAX)]],
    ["a_recurse", () => CALL_SELF],
    ["a_ud2", () => UD2],
    ["a_spin", () => JMP_SELF],
    // A forged callback frame: push the callback trap as a return address; ret.
    ["a_forge_cb", () => [...movabs(RAX, traps.callbackTrap), 0x50, ...RET]],
    // efn(v) in a remote, then the FSBASE the caller sees: rax = rdi; rdi = rsi; call rax; rdfsbase rax.
    ["a_fs_trip", () => [...mov(RAX, RDI), ...mov(RDI, RSI), ...callReg(RAX), ...RDFSBASE_RAX, ...RET]],
    ["a_rdfs", () => [...RDFSBASE_RAX, ...RET]],
    // wrfsbase rsi; jmp rdi: enter a remote with an FSBASE the caller's code chose.
    ["a_fs_into", () => [...wrfsbase(RSI), ...jmpReg(RDI)]],
    // The hostcall port from its own code (out imm8, al; and mov edx, port; out dx, al), and the
    // port above it, which the TSS I/O bitmap refuses.
    ["a_out", () => [0xe6, PORT.HOSTCALL, ...RET]],
    ["a_out_dx", () => [0xba, PORT.HOSTCALL, 0, 0, 0, 0xee, ...RET]],
    ["a_out_other", () => [0xe6, PORT.HOSTCALL + 1, ...RET]],
  ]);
}

/** 32-bit FNV-1a. */
export function fnv1a(bytes: Uint8Array): number {
  let h = 2166136261;
  for (const b of bytes) h = Math.imul(h ^ b, 16777619) >>> 0;
  return h;
}

export interface Health {
  /** kvcaller (the honest caller) asks kvstore for `key` through IPRE. */
  key: number;
  other: Attempt;
  /** The attacker's own legitimate calls: kvstore's kv_lookup(key) and evil's e_add1(x). */
  lookup: Attempt;
  x: number;
  evil: Attempt;
  /** kvstore's count, by a host vmcall on kvstore. */
  count: Attempt;
  /** The attacker reads kvstore's kv_data_marker: must fault (not mapped) when there is no loan. */
  unmerged: Attempt;
  inRemoteCall: boolean;
  busy: Array<string | null>;
  needsReset: Array<string | null>;
  /** FNV-1a of kvstore's whole program image (data and bss included). */
  kvHash: number;
}

/** What the scenario reports: every attack's outcome with the inputs needed to recompute it. */
export type AdversarialReport = ReturnType<typeof adversarialReport>;

export function adversarialReport(seed: number) {
  const r = rng(seed);
  const ri = (lo: number, hi: number) => randInt(r, lo, hi);
  const CALL_MS = upperMs(2000); // every call can end: nothing here may hang a test
  const aPrinted: string[] = [];
  const ePrinted: string[] = [];
  type Action = (a0: number, a1: number, a2: number, m: Machine) => number;
  let aAction: Action = () => 0;
  let eAction: Action = () => 0;
  let kvHandlerCalls = 0;
  /** Every call of a hostcall-1 handler: whose handler, which machine it was given, its argument. */
  const gateCalls: Array<{ handler: string; machine: string; arg: number; inRemoteCall: boolean }> = [];
  let attacker: Machine | undefined;
  const handler = (name: string, action: () => Action): HostcallFn => (a0, a1, a2, _a3, _a4, _a5, m) => {
    gateCalls.push({ handler: name, machine: m.name, arg: a0, inRemoteCall: attacker?.inRemoteCall ?? false });
    return action()(a0, a1, a2, m);
  };

  const machines: Machine[] = [];
  const create = (options: MachineOptions) => {
    const m = Machine.create({ timeoutMs: CALL_MS, ...options });
    machines.push(m);
    return m;
  };
  try {
    const K = create({ window: KV_WINDOW, program: exampleElf("kvstore"), name: "kvstore", hostcalls: { 1: () => ++kvHandlerCalls } });
    const E = create({ window: EVIL_WINDOW, memory: 8 * MiB, name: "evil", hostcalls: { 1: handler("evil", () => eAction) }, print: (t) => ePrinted.push(t) });
    const A = create({ window: CALLER_WINDOW, name: "attacker", stackSize: 256 * 1024, hostcalls: { 1: handler("attacker", () => aAction) }, print: (t) => aPrinted.push(t) });
    attacker = A;
    // The honest caller: kvcaller.elf, also window 0 (its own VM), connected to kvstore only.
    const B = create({ window: CALLER_WINDOW, program: exampleElf("kvcaller"), name: "kvcaller" });
    const ev = evilProgram();
    E.loadFlat(ev.code, { symbols: ev.symbols, exports: [...EVIL_EXPORTS] });
    const e = ev.addr;
    const kvSym = (n: string) => K.symbol(n);
    const kv = { kv_count: kvSym("kv_count"), call_back: kvSym("call_back"), kv_lookup: kvSym("kv_lookup"), kv_insert: kvSym("kv_insert"), kv_secret: kvSym("kv_secret"), kv_data_marker: kvSym("kv_data_marker"), checksum: kvSym("checksum") };
    const at = attackerProgram(kv, e, { callbackTrap: A.callbackTrap });
    A.loadFlat(at.code, { symbols: at.symbols });
    const a = at.addr;

    connect(B, K);
    let connAK: Connection = connect(A, K);
    connect(A, E);
    let entries = 0;
    A.onRemoteEntry = () => entries++;
    const counted = <T>(fn: () => T): [T, number] => {
      const before = entries;
      const v = fn();
      return [v, entries - before];
    };

    const fill = ri(60, 200);
    B.call("fill", fill);
    const kvImage = () => K.read(K.program!.lowest, K.program!.highest - K.program!.lowest);
    const kvHash = () => fnv1a(kvImage());
    const hex = (bytes: Uint8Array) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");

    /** The attacker's code calls fn(a1, a2, a3) (an IPRE call when fn is a remote's). */
    const call = (fn: number, a1: number | bigint = 0, a2: number | bigint = 0, a3: number | bigint = 0) => A.call("a_call", fn, a1, a2, a3);

    const health = (): Health => {
      const key = ri(0, fill + 50);
      const x = ri(0, 1e6);
      return {
        key,
        other: attempt(() => B.call(kv.kv_lookup, key)),
        lookup: attempt(() => call(kv.kv_lookup, key)),
        x,
        evil: attempt(() => call(e.e_add1, x)),
        count: attempt(() => K.call("kv_count")),
        unmerged: attempt(() => A.call("a_read", kv.kv_data_marker)),
        inRemoteCall: A.inRemoteCall,
        busy: [K, E].map((m) => busyWith(m) ?? null),
        needsReset: [A, K, E, B].map((m) => m.needsReset ?? null),
        kvHash: kvHash(),
      };
    };
    const hash0 = kvHash();

    const win = (m: Machine) => ({ base: m.base, returnTrap: m.returnTrap, callbackTrap: m.callbackTrap, exitTrap: m.exitTrap, userStart: m.userStart, memoryEnd: m.memoryEnd, stackGuard: m.stackGuard });

    // ================= a malicious caller =================

    // Entries outside the allow-list: a non-exported function, an allowed one at +1 and mid-way.
    const [nonExp, nonExpEntries] = counted(() => ({
      direct: attempt(() => call(kv.kv_secret)),
      mid: attempt(() => call(kv.kv_lookup + 1, 1)),
      midInsert: attempt(() => A.call("a_jmp", kv.kv_insert + 0x10, 1)),
      hostVmcall: attempt(() => A.call(kv.kv_lookup + 1, 1)),
    }));
    const nonExported = { ...nonExp, entries: nonExpEntries, health: health() };

    // Forged returns and jumps into trap addresses outside any call.
    const forgedTargets: Array<[string, number]> = [
      ["own return trap", A.returnTrap],
      ["own callback trap", A.callbackTrap],
      ["kvstore's return trap", K.returnTrap],
      ["kvstore's callback trap", K.callbackTrap],
      ["kvstore's exit trap", K.exitTrap],
      ["kvstore's gate 1", gate(KV_WINDOW, 1)],
      ["kvstore's print gate", gate(KV_WINDOW, PRINT)],
      ["evil's gate 1", gate(EVIL_WINDOW, 1)],
      ["evil's exit trap", E.exitTrap],
      ["a gate of an unconnected window", gate(5, 1)],
      ["own gate 1 + 8 (misaligned)", gate(CALLER_WINDOW, 1) + 8],
    ];
    const kvHandlerBefore = kvHandlerCalls;
    const gateCallsBefore = gateCalls.length;
    const forged = {
      targets: forgedTargets.map(([what, address]) => ({ what, address, result: attempt(() => A.call("a_ret_to", address)) })),
      kvHandler: kvHandlerCalls - kvHandlerBefore,
      evilHandler: gateCalls.length - gateCallsBefore,
      health: health(),
    };

    // The hostcall port: the TSS I/O bitmap lets every ring-3 instruction use it, the host takes
    // only a gate's own `out`. The gate page itself: read-only, executable, nothing but gates.
    aAction = (x) => x + 1;
    const portCallsBefore = gateCalls.length;
    const portAttempts = {
      out: attempt(() => A.call("a_out")),
      outDx: attempt(() => A.call("a_out_dx")),
      otherPort: attempt(() => A.call("a_out_other")),
      gateRet: attempt(() => A.call("a_jmp", gate(CALLER_WINDOW, 1) + 2)),
      gateMid: attempt(() => A.call("a_jmp", gate(CALLER_WINDOW, 1) + 1)),
      gateWrite: attempt(() => A.call("a_write", gate(CALLER_WINDOW, 1), 0x90)),
      gateRead: attempt(() => A.callBigInt("a_read", gate(CALLER_WINDOW, 1))),
    };
    const ports = { flavour: kvmFlavour(), ...portAttempts, handlers: gateCalls.length - portCallsBefore, hostcall: attempt(() => A.call("a_hostcall", 41)), health: health() };
    aAction = () => 0;

    // Remote memory outside a call, without a loan: not mapped. A string in kvstore's memory
    // (unused user memory below its stack) for print and the hostcall helpers.
    const secret = { address: K.stackGuard - 0x10000, text: `kv-secret-${ri(0, 1e9)}` };
    K.write(secret.address, secret.text + "\0");
    const decode = (b: Uint8Array) => new TextDecoder().decode(b);
    const printSecret = () => A.call("a_print", secret.address, secret.text.length);
    /** The attacker's hostcall 1 with (secret address, length): `action` runs in its handler. */
    const inHandler = (action: (p: number, n: number, m: Machine) => unknown, p = secret.address, n = secret.text.length): Attempt => {
      let inner: Attempt = { ok: false, message: "handler not run" };
      aAction = (p, n, _mode, m) => ((inner = attempt(() => action(p, n, m))), 0);
      try {
        A.call("a_hostcall", p, n);
      } finally {
        aAction = () => 0;
      }
      return inner;
    };
    const markerHex = () => hex(K.read(kv.kv_data_marker, 8));
    const marker0 = K.read(kv.kv_data_marker, 8);
    const noLoanPrinted = aPrinted.length;
    const noLoan = {
      read: attempt(() => A.call("a_read", kv.kv_data_marker)),
      write: attempt(() => A.call("a_write", kv.kv_data_marker, ri(1, 1e9))),
      exec: attempt(() => A.call("a_jmp", kv.kv_data_marker)),
      readRuntime: attempt(() => A.call("a_read", K.base + RT.PML4)),
      readGuard: attempt(() => A.call("a_read", K.stackGuard)),
      marker: hex(marker0),
      markerAfter: markerHex(),
      print: attempt(printSecret),
      guestRead: inHandler((p, n, m) => decode(m.guestRead(p, n))),
      printed: 0,
      health: health(),
    };
    noLoan.printed = aPrinted.length - noLoanPrinted;

    // The same with `loan: "read"`.
    connAK.disconnect();
    connAK = connect(A, K, { loan: "read" });
    const loanValue = ri(1, 2 ** 40);
    K.writeU64(kv.kv_data_marker, loanValue);
    const loanPrinted = aPrinted.length;
    const loan = {
      value: loanValue,
      read: attempt(() => A.call("a_read", kv.kv_data_marker)),
      write: attempt(() => A.call("a_write", kv.kv_data_marker, ri(1, 1e9))),
      exec: attempt(() => A.call("a_jmp", kv.kv_data_marker)),
      readRuntime: attempt(() => A.call("a_read", K.base + RT.PML4)),
      readGuard: attempt(() => A.call("a_read", K.stackGuard)),
      markerAfter: K.readI64(kv.kv_data_marker),
      secret,
      print: attempt(printSecret),
      printed: [] as string[],
      guestRead: inHandler((p, n, m) => decode(m.guestRead(p, n))),
      guestCString: inHandler((p, _n, m) => m.guestCString(p, 256)),
      guestWrite: inHandler((p, _n, m) => (m.guestWrite(p, "overwritten"), "written")),
      secretAfter: K.readCString(secret.address, 256),
      hostRead: attempt(() => decode(A.read(secret.address, 8))),
    };
    loan.printed = aPrinted.slice(loanPrinted);
    K.write(kv.kv_data_marker, marker0); // kvstore's data as before, for the hash checks
    connAK.disconnect();
    connAK = connect(A, K);
    const afterLoanPrinted = aPrinted.length;
    const afterLoan = {
      print: attempt(printSecret),
      guestRead: inHandler((p, n, m) => decode(m.guestRead(p, n))),
      read: attempt(() => A.call("a_read", kv.kv_data_marker)),
      printed: 0,
      health: health(),
    };
    afterLoan.printed = aPrinted.length - afterLoanPrinted;

    // Stale mappings: read the remote's memory right after a call returns, in the same vmcall.
    const stale = {
      kv: attempt(() => A.call("a_call_then_read", kv.kv_count, kv.kv_data_marker)),
      evil: attempt(() => A.call("a_call_then_read", e.e_add1, e.e_add1)),
      health: health(),
    };

    // The runtime area: page tables, runtime code, the guard page, through print, guestRead and
    // plain loads, stores and jumps.
    const rtPrints: Array<[string, number, number]> = [
      ["own PML4", A.base + RT.PML4, 8],
      ["own page tables (a PT)", A.base + RT.PT_BASE, 64],
      ["own merged root (root pool)", A.base + RT.ROOT_POOL, 8],
      ["runtime code", A.base + RT.CODE, 16],
      ["GDT at address 0", A.base, 16],
      ["own stack guard page", A.stackGuard, 16],
    ];
    const printedRt = aPrinted.length;
    const pml4Before = hex(A.rawMemory().slice(RT.PML4, RT.PML4 + 4096));
    const runtimeArea = {
      prints: rtPrints.map(([what, address, length]) => ({ what, address, length, result: attempt(() => A.call("a_print", address, length)) })),
      guestReads: rtPrints.map(([what, address]) => ({ what, address, result: inHandler((p, n, m) => hex(m.guestRead(p, n)), address, 8) })),
      printedCount: aPrinted.length - printedRt,
      writePml4: attempt(() => A.call("a_write", A.base + RT.PML4, 0x1007)),
      writePt: attempt(() => A.call("a_write", A.base + RT.PT_BASE + 8, 0x1007)),
      readPml4: attempt(() => A.call("a_read", A.base + RT.PML4)),
      pml4Unchanged: pml4Before === hex(A.rawMemory().slice(RT.PML4, RT.PML4 + 4096)),
      execRuntime: attempt(() => A.call("a_jmp", A.base + RT.CODE)),
      execResume: attempt(() => A.call("a_jmp", A.base + RT.CODE + runtimeSymbol("resume_iret"))),
      health: health(),
    };

    // Lengths: huge, negative, and ranges that run off the end of mapped memory; a valid range
    // that ends right below the stack guard page prints.
    const validText = `ok${ri(100000, 999999)}`;
    const valid = { address: A.stackGuard - validText.length, text: validText };
    A.write(valid.address, valid.text);
    const validPrinted = aPrinted.length;
    const validResult = attempt(() => A.call("a_print", valid.address, valid.text.length));
    const lengthCases: Array<[string, number | bigint, number | bigint]> = [
      ["length -1", valid.address, -1],
      ["length 2^63", valid.address, 1n << 63n],
      ["length 2^40", A.userStart, 2 ** 40],
      ["length 2^47", A.userStart, 2 ** 47],
      ["pointer -4096", -4096, 8],
      ["crosses the end of memory", A.memoryEnd - 4, 8],
      ["crosses into the stack guard", A.stackGuard - 4, 8],
      ["crosses from the stack guard into the stack", A.stackGuard + 4096 - 4, 8],
      ["crosses into kvstore's window", windowBase(KV_WINDOW) - 4, 8],
    ];
    const lengths = {
      valid: { ...valid, result: validResult, printed: aPrinted[validPrinted] ?? "" },
      cases: lengthCases.map(([what, address, length]) => ({ what, address: String(address), length: String(length), result: attempt(() => A.call("a_print", address, length)) })),
      health: health(),
    };

    // Forged callback frames: the callback trap as a return address outside a call, and inside a
    // callback with the wrong stack; a callback that jumps to the return trap or the exit trap.
    const forgedCallback = {
      outside: attempt(() => A.call("a_forge_cb")),
      inCallback: attempt(() => call(e.e_call, a.a_forge_cb)),
      cbReturnTrap: attempt(() => call(e.e_call, a.a_ret_to, A.returnTrap)),
      cbExitTrap: attempt(() => call(e.e_call, a.a_ret_to, A.exitTrap)),
      health: health(),
    };

    // Stack exhaustion inside a remote call (the remote recurses on the caller's stack) and inside
    // a callback: the guard page stops it; the page below the guard is untouched.
    const below = A.stackGuard - 4096;
    const pattern = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7 + seed) & 0xff);
    A.write(below, pattern);
    const stackExhaust = {
      remote: attempt(() => call(e.e_recurse)),
      callback: attempt(() => call(e.e_call, a.a_recurse)),
      belowGuardIntact: A.read(below, 4096).every((b, i) => b === pattern[i]),
      health: health(),
    };

    // Entering a remote with a garbage stack pointer.
    const rspCases: Array<[string, number]> = [
      ["the top of memory (nothing above it)", A.memoryEnd],
      ["misaligned", A.stackTop - 12],
      ["unmapped, outside every window's memory", 0xdead0000],
      ["inside kvstore's window", kv.kv_data_marker],
      ["inside its own runtime area", A.base + RT.IST1_TOP - 64],
      ["inside its own stack guard page", A.stackGuard + 8],
    ];
    const [garbageCases, garbageEntries] = counted(() => rspCases.map(([what, rsp]) => ({ what, rsp, result: attempt(() => A.call("a_rsp_jmp", kv.kv_count, rsp)) })));
    const garbageRsp = { cases: garbageCases, entries: garbageEntries, health: health() };

    // Once a bug (test/adversarial.test.ts): RSP in the caller's own read-only code.
    const qBefore = hex(A.read(a.q_land!, 8));
    const stackInCode = {
      result: attempt(() => A.call("a_stack_in_code")),
      landing: a.a_stack_in_code + LANDING,
      qLand: a.q_land!,
      before: qBefore,
      after: hex(A.read(a.q_land!, 8)),
      health: health(),
    };

    // IPRE depth: caller and kvstore's call_back recurse into each other through callbacks.
    const [depthResult, depthEntries] = counted(() => attempt(() => A.call("a_recurse_ipre", ri(0, 1000))));
    const depth = { result: depthResult, entries: depthEntries, health: health() };

    // A confused deputy: kvstore's checksum() trusts its pointer argument; ipre does not check
    // pointer provenance (the remote runs with both windows mapped).
    const deputy = {
      markerBytes: [...K.read(kv.kv_data_marker, 8)],
      checksum: attempt(() => call(kv.checksum, kv.kv_data_marker, 8)),
      runtime: attempt(() => call(kv.checksum, K.base + RT.PML4, 8)),
      health: health(),
    };

    // allow: ["kv_lookup"]: kv_insert is refused.
    connAK.disconnect();
    connAK = connect(A, K, { allow: ["kv_lookup"] });
    const allowKey = ri(0, fill - 1);
    const allowed = [...connAK.allowed];
    const allowInsert = attempt(() => call(kv.kv_insert, allowKey, 12345));
    const allowLookup = attempt(() => call(kv.kv_lookup, allowKey));
    connAK.disconnect();
    connAK = connect(A, K);
    const allowList = { allowed, insert: allowInsert, lookup: allowLookup, key: allowKey, health: health() };

    // ================= a malicious remote =================

    const wrongRsp = { low: attempt(() => call(e.e_ret_low)), high: attempt(() => call(e.e_ret_high)), health: health() };
    const plant = { result: attempt(() => call(e.e_plant)), health: health() };
    const portBefore = gateCalls.length;
    const port = { out: attempt(() => call(e.e_out)), handlers: gateCalls.length - portBefore, health: health() };
    const skipTrap = { result: attempt(() => call(e.e_skip_trap)), health: health() };

    const kvHandlerBeforeNested = kvHandlerCalls;
    const nested = {
      kv: attempt(() => call(e.e_call, kv.kv_count)),
      unconnected: attempt(() => call(e.e_call, windowBase(5) + ELF_LINK_OFFSET)),
      kvGate: attempt(() => call(e.e_call, gate(KV_WINDOW, 1), 5)),
      kvHandler: kvHandlerCalls - kvHandlerBeforeNested,
      health: health(),
    };

    // Whose hostcall handler runs: evil calls the caller's gate 1 and its own gate 1.
    const gx = ri(1, 1e6);
    const evilText = `evil-${ri(0, 1e9)}`;
    const evilTextAt = E.userStart + 0x1000;
    E.write(evilTextAt, evilText);
    let callerHandlerReadsEvil: Attempt = { ok: false, message: "handler not run" };
    aAction = (x, _b, _c, m) => ((callerHandlerReadsEvil = attempt(() => decode(m.guestRead(evilTextAt, evilText.length)))), 3 * x);
    eAction = (x) => 5 * x;
    const gateStart = gateCalls.length;
    const callerGate = attempt(() => call(e.e_call, gate(CALLER_WINDOW, 1), gx));
    const ownGate = attempt(() => call(e.e_call, gate(EVIL_WINDOW, 1), gx));
    aAction = () => 0;
    eAction = () => 0;
    const gateCallList = gateCalls.slice(gateStart);
    const cpText = `via-caller-print-${ri(0, 1e9)}`;
    const cpAt = E.userStart + 0x2000;
    E.write(cpAt, cpText);
    const cpBefore = aPrinted.length;
    // Evil tail-calls the caller's print gate with a buffer of its own.
    const callerPrintResult = attempt(() => call(e.e_jmp2, gate(CALLER_WINDOW, PRINT), cpAt, cpText.length));
    const gates = {
      x: gx,
      callerGate,
      ownGate,
      calls: gateCallList,
      callerPrint: { result: callerPrintResult, printed: aPrinted.slice(cpBefore), text: cpText },
      callerHandlerReadsEvil,
      evilText,
      health: health(),
    };

    // Evil prints the caller's memory (allowed inside a call) and tries what is not.
    const pText = `caller-buffer-${ri(0, 1e9)}`;
    const pAt = A.userStart + 0x100000;
    A.write(pAt, pText);
    const ePrintedStart = ePrinted.length;
    const callerBuffer = attempt(() => call(e.e_print, pAt, pText.length));
    const callerCodeOut = attempt(() => call(e.e_print, a.a_ret42, 6));
    const printFailures: Array<[string, number]> = [
      ["caller's PML4", A.base + RT.PML4],
      ["caller's merged root", A.base + RT.ROOT_POOL],
      ["caller's stack guard", A.stackGuard],
      ["evil's own PML4", E.base + RT.PML4],
      ["kvstore's memory (another remote of the caller)", secret.address],
      ["crossing the end of the caller's memory", A.memoryEnd - 4],
    ];
    const failures = printFailures.map(([what, address]) => ({ what, address, result: attempt(() => call(e.e_print, address, 8)) }));
    const printed = ePrinted.slice(ePrintedStart);
    let handlerRead: Attempt = { ok: false, message: "handler not run" };
    eAction = (p, n, _c, m) => ((handlerRead = attempt(() => decode(m.guestRead(p, n)))), 0);
    call(e.e_hostcall, pAt, pText.length);
    const wText = `written-by-evil-${ri(0, 1e9)}`;
    let handlerWrite: Attempt = { ok: false, message: "handler not run" };
    eAction = (p, _n, _c, m) => ((handlerWrite = attempt(() => (m.guestWrite(p, wText), "written"))), 0);
    call(e.e_hostcall, pAt);
    const wAfter = decode(A.read(pAt, wText.length));
    const codeBefore = hex(A.read(a.a_ret42, 8));
    let handlerWriteCode: Attempt = { ok: false, message: "handler not run" };
    eAction = (p, _n, _c, m) => ((handlerWriteCode = attempt(() => (m.guestWrite(p, new Uint8Array([0xcc, 0xcc])), "written"))), 0);
    call(e.e_hostcall, a.a_ret42);
    eAction = () => 0;
    const print = {
      text: pText,
      address: pAt,
      callerBuffer,
      printed,
      callerCode: callerCodeOut,
      callerCodeHex: hex(A.read(a.a_ret42, 6)),
      failures,
      handlerRead,
      handlerWrite: { result: handlerWrite, text: wText, after: wAfter },
      handlerWriteCode: { result: handlerWriteCode, before: codeBefore, after: hex(A.read(a.a_ret42, 8)) },
      health: health(),
    };

    // Evil writes the caller's code and page tables, reads its guard page and another remote.
    const code0 = hex(A.read(a.a_ret42, 8));
    const callerCode = {
      writeCode: attempt(() => call(e.e_write, a.a_ret42, 0xcccc)),
      codeBefore: code0,
      codeAfter: hex(A.read(a.a_ret42, 8)),
      ret42: attempt(() => A.call("a_ret42")),
      writePml4: attempt(() => call(e.e_write, A.base + RT.PML4, 0x1007)),
      writeMergedRoot: attempt(() => call(e.e_write, A.base + RT.ROOT_POOL + 8, 0x1007)),
      readGuard: attempt(() => call(e.e_read, A.stackGuard)),
      readCode: attempt(() => String(A.callBigInt("a_call", e.e_read, a.a_ret42))),
      codeWord: String(BigInt.asIntN(64, A.readU64(a.a_ret42))),
      readOtherRemote: attempt(() => call(e.e_read, kv.kv_data_marker)),
      health: health(),
    };

    // Evil executes caller code: a callback, unmerged; evil's memory is not readable from it.
    const evilData = E.userStart + 0x1000;
    const callerData = pAt;
    const callback = {
      call: attempt(() => call(e.e_call, a.a_ret42)),
      tail: attempt(() => call(e.e_jmp, a.a_ret42)),
      readEvil: attempt(() => call(e.e_call, a.a_read, evilData)),
      readEvilAddress: evilData,
      execData: attempt(() => call(e.e_jmp, callerData)),
      execDataAddress: callerData,
      health: health(),
    };

    // Evil uses the caller's read-only q_victim as the stack of a callback: the VMM must not write
    // the callback trap there (it did, before the fix).
    const victimBefore = hex(A.read(a.q_victim!, 16));
    const cbResult = attempt(() => call(e.e_cb_stack, a.a_retonly, a.q_victim!));
    const cbStack = {
      result: cbResult,
      before: victimBefore,
      after: hex(A.read(a.q_victim!, 16)),
      victim: a.q_victim!,
      read: attempt(() => A.call("a_read", a.q_victim!)),
      health: health(),
    };

    // FSBASE across calls.
    const fsCaller = A.userStart + 0x10 * ri(1, 1000);
    const fsRemote = E.userStart + 0x10 * ri(1, 1000);
    A.fsBase = fsCaller;
    E.fsBase = fsRemote;
    const apiV = E.userStart + 0x10 * ri(1001, 2000);
    const apiSet = {
      caller: fsCaller,
      remote: fsRemote,
      v: apiV,
      callerSees: attempt(() => A.call("a_fs_trip", e.e_fs, apiV)),
      remoteSees: attempt(() => call(e.e_rdfs)),
    };
    A.fsBase = 0;
    E.fsBase = 0;
    // Once a bug: both at the default 0, the remote's wrfsbase stayed in force for the caller, and
    // the caller's wrfsbase for the remote.
    const leakV = E.userStart + 0x10 * ri(1, 1000);
    const leakW = A.userStart + 0x10 * ri(1, 1000);
    const leak = {
      v: leakV,
      callerSees: attempt(() => A.call("a_fs_trip", e.e_fs, leakV)),
      nextCall: attempt(() => A.call("a_rdfs")),
      w: leakW,
      remoteSees: attempt(() => A.call("a_fs_into", e.e_rdfs, leakW)),
      hostFsBase: [A.fsBase, E.fsBase],
    };
    A.fsBase = 0; // the host's setter reloads FSBASE for real
    const fsbase = { apiSet, leak, health: health() };

    // Once a bug: evil executes its own (no-execute) data (it was taken for a nested entry).
    const ownData = E.userStart + 0x1000;
    const execOwnData = { address: ownData, result: attempt(() => call(e.e_jmp, ownData)), health: health() };

    const faultInCallback = { result: attempt(() => call(e.e_call, a.a_ud2)), health: health() };

    // ================= timeouts (last: they need resets) =================

    const evilSpin = attempt(() => A.invoke("a_call", [e.e_spin], { timeoutMs: 200 }));
    const otherKey = ri(0, fill - 1);
    const evilTimeout = {
      result: evilSpin,
      needsReset: [A, K, E, B].map((m) => m.needsReset ?? null),
      callerRefused: attempt(() => call(e.e_add1, 1)),
      evilRefused: attempt(() => E.call("e_add1", 1)),
      otherWorks: attempt(() => B.call(kv.kv_lookup, otherKey)),
      otherKey,
      resetCaller: attempt(() => A.reset()),
      resetEvil: attempt(() => E.reset()),
      after: health(),
    };

    const cbKey = ri(0, fill - 1);
    const cbSpin = attempt(() => A.invoke("a_call", [kv.call_back, a.a_spin, 0], { timeoutMs: 200 }));
    const callbackTimeout = {
      result: cbSpin,
      needsReset: [A, K, E, B].map((m) => m.needsReset ?? null),
      otherRefused: attempt(() => B.call(kv.kv_lookup, cbKey)),
      resetKv: attempt(() => K.reset()),
      resetCaller: attempt(() => A.reset()),
      otherAfter: attempt(() => B.call(kv.kv_lookup, cbKey)),
      countAfter: attempt(() => K.call("kv_count")),
      refill: attempt(() => B.call("fill", 10)),
      lookupAfter: attempt(() => call(kv.kv_lookup, 7)),
      key: cbKey,
    };

    const sym: Record<string, number> = { ...kv };
    for (const [n, v] of Object.entries(a)) sym[n] = v;
    for (const [n, v] of Object.entries(e)) sym[n] = v;
    return {
      runtime: libc.runtime,
      seed,
      fill,
      kvHash: hash0,
      sym,
      win: { A: { ...win(A), stackTop: A.stackTop }, K: win(K), E: win(E) },
      resumeIret: A.base + RT.CODE + runtimeSymbol("resume_iret"),
      caller: {
        nonExported,
        forged,
        ports,
        noLoan,
        loan,
        afterLoan,
        stale,
        runtimeArea,
        lengths,
        forgedCallback,
        stackExhaust,
        garbageRsp,
        stackInCode,
        depth,
        deputy,
        allowList,
      },
      remote: { wrongRsp, plant, port, skipTrap, nested, gates, print, callerCode, callback, cbStack, fsbase, execOwnData, faultInCallback },
      timeout: { evil: evilTimeout, callback: callbackTimeout },
    };
  } finally {
    for (const m of machines.reverse()) m.close();
  }
}

if (isMain(import.meta)) {
  const [seed] = scenarioArgs();
  console.log(JSON.stringify(adversarialReport(Number(seed ?? 1))));
}
