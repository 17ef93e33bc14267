/**
 * Guest pointers that the host follows on a guest's behalf obey that guest's own rights: the
 * print hostcall and, inside a hostcall handler, the handler's machine's memory helpers
 * (bytes/read/write/readU64/writeU64/readCString) and guestRead/guestWrite/guestCString.
 *
 * Flat programs on both sides tail-call hostcall gates, so the same handler runs for every kind
 * of code that can make a hostcall: caller code (with and without a loan), remote code inside a
 * call (its own gate and the caller's gate), caller code inside a callback, and caller code after
 * a call. Each probe reports what each accessor did with one pointer; the test knows the rights.
 */
import "./call-path.ts";
import { libc } from "../../src/ffi/index.ts";
import { Machine } from "../../src/machine/machine.ts";
import { connect, type LoanMode } from "../../src/ipre/connect.ts";
import { HOSTCALL_GATE_OFFSET, HOSTCALL_GATE_STRIDE } from "../../src/guest/layout.ts";
import { isMain, outcome, type Outcome } from "./common.ts";

/** `movabs rax, target; jmp rax`: a tail call that passes rdi.. through. */
function tail(target: number): number[] {
  const b = new Uint8Array(12);
  b.set([0x48, 0xb8]);
  new DataView(b.buffer).setBigUint64(2, BigInt(target), true);
  b.set([0xff, 0xe0], 10);
  return [...b];
}
const gate = (m: Machine, n: number) => m.gateBase + n * HOSTCALL_GATE_STRIDE;
void HOSTCALL_GATE_OFFSET;

function flat(parts: Array<[number, number[]]>, size = 96): Uint8Array {
  const code = new Uint8Array(size).fill(0xcc);
  for (const [off, bytes] of parts) code.set(bytes, off);
  return code;
}

/** What the handler's accessors did with one pointer. */
export interface Access {
  read: Outcome;
  readU64: Outcome;
  cstring: Outcome;
  /** write() of the byte that is already there (a no-op when allowed). */
  write: Outcome;
  guestRead: Outcome;
  guestWrite: Outcome;
}

export interface Probe {
  /** Who made the hostcall, and through which gate. */
  context: string;
  /** What the pointer designates. */
  target: string;
  access: Access;
}

export interface PointersReport {
  runtime: string;
  probes: Probe[];
  prints: Array<{ context: string; target: string; result: Outcome; printed: string[] }>;
  /** call(fn, "a string"): the handler reads the string the host put on the caller's stack. */
  stringArg: Outcome;
  /** Remote data intact after everything. */
  remoteData: string;
}

const C_DATA = "caller-data";
const R_DATA = "remote-data";

export function pointersReport(): PointersReport {
  let pending: Access | undefined;
  let ptr = 0;
  const handler = (p: number, _b: number, _c: number, _d: number, _e: number, _f: number, m: Machine) => {
    ptr = p;
    pending = {
      read: outcome(() => new TextDecoder().decode(m.read(p, 4))),
      readU64: outcome(() => m.readU64(p) !== 0n),
      cstring: outcome(() => m.readCString(p, 64)),
      write: outcome(() => m.write(p, m.guestRead(p, 1))),
      guestRead: outcome(() => m.guestRead(p, 4).length),
      guestWrite: outcome(() => m.guestWrite(p, m.guestRead(p, 1))),
    };
    return 0;
  };

  const cPrinted: string[] = [];
  const rPrinted: string[] = [];
  const remote = Machine.create({ window: 1, name: "remote", hostcalls: { 1: handler }, print: (t) => rPrinted.push(t) });
  const caller = Machine.create({ window: 0, name: "caller", hostcalls: { 1: handler }, print: (t) => cPrinted.push(t) });
  try {
    const rBase = remote.base + 4 * 1024 * 1024;
    remote.loadFlat(
      flat([
        [0, tail(gate(remote, 4095))], // r_print(ptr, len)
        [16, tail(gate(remote, 1))], // r_hc(ptr)
        [32, tail(gate(caller, 1))], // r_caller_hc(ptr): the caller's gate, from remote code
        [48, [0x48, 0x89, 0xf8, 0x48, 0x89, 0xf7, 0xff, 0xe0]], // r_cb(fn, ptr): fn(ptr) in caller code
      ]),
      { symbols: { r_print: 0, r_hc: 16, r_caller_hc: 32, r_cb: 48 }, exports: ["r_print", "r_hc", "r_caller_hc", "r_cb"] },
    );
    caller.loadFlat(
      flat([
        [0, tail(gate(caller, 4095))], // c_print(ptr, len)
        [16, tail(gate(caller, 1))], // c_hc(ptr)
        [32, [0x48, 0x89, 0xf8, 0x48, 0x89, 0xf7, 0x48, 0x89, 0xd6, 0x48, 0x89, 0xca, 0xff, 0xe0]], // c_call(entry, a, b, c)
      ]),
      { symbols: { c_print: 0, c_hc: 16, c_call: 32 } },
    );
    const cData = caller.userStart + 0x100000;
    const rData = remote.userStart + 0x100000;
    caller.write(cData, C_DATA + "\0");
    remote.write(rData, R_DATA + "\0");
    const targets: Record<string, number> = {
      "caller data": cData,
      "caller code": caller.symbol("c_hc"),
      "caller stack guard page": caller.stackGuard,
      "caller runtime area": caller.base + 0x1000,
      "caller page tables": caller.base + 0x100000,
      "remote data": rData,
      "remote code": rBase,
      "remote runtime area": remote.base + 0x1000,
      "unmapped window 5": 5 * 2 ** 30 + 0x400000,
    };
    const probes: Probe[] = [];
    const prints: PointersReport["prints"] = [];
    const probe = (context: string, target: string, run: (p: number) => number) => {
      pending = undefined;
      const p = targets[target]!;
      const r = outcome(() => run(p));
      if (!r.ok || pending === undefined || ptr !== p) throw new Error(`${context} / ${target}: the handler did not run: ${JSON.stringify(r)}`);
      probes.push({ context, target, access: pending });
    };
    const print = (context: string, target: string, run: (p: number) => number, out: string[]) => {
      const n = out.length;
      const result = outcome(() => run(targets[target]!));
      prints.push({ context, target, result, printed: out.slice(n) });
    };
    const all = Object.keys(targets);
    const cCall = caller.symbol("c_call");

    // 1. caller code outside any call, no loan
    let conn = connect(caller, remote, { loan: "none" });
    for (const t of all) probe("caller code, no loan", t, (p) => caller.call("c_hc", p));
    print("caller code, no loan", "remote data", (p) => caller.call("c_print", p, R_DATA.length), cPrinted);
    print("caller code, no loan", "caller data", (p) => caller.call("c_print", p, C_DATA.length), cPrinted);
    // 2. remote code inside a call: its own gate, then the caller's gate
    for (const t of all) probe("remote code in a call, remote's gate", t, (p) => caller.call(cCall, remote.symbol("r_hc"), p));
    for (const t of ["remote data", "caller data"]) probe("remote code in a call, caller's gate", t, (p) => caller.call(cCall, remote.symbol("r_caller_hc"), p));
    print("remote code in a call", "remote data", (p) => caller.call(cCall, remote.symbol("r_print"), p, R_DATA.length), rPrinted);
    print("remote code in a call", "caller data", (p) => caller.call(cCall, remote.symbol("r_print"), p, C_DATA.length), rPrinted);
    // 3. caller code inside a callback from the remote (unmerged): the remote is not readable
    for (const t of ["remote data", "caller data"]) probe("caller code in a callback", t, (p) => caller.call(cCall, remote.symbol("r_cb"), caller.symbol("c_hc"), p));
    // 4. caller code right after a call
    probe("caller code after a call", "remote data", (p) => caller.call("c_hc", p));
    // 5. with a read loan
    conn.disconnect();
    const loan: LoanMode = "read";
    conn = connect(caller, remote, { loan });
    for (const t of ["remote data", "remote code", "remote runtime area", "caller data"]) probe("caller code, read loan", t, (p) => caller.call("c_hc", p));
    print("caller code, read loan", "remote data", (p) => caller.call("c_print", p, R_DATA.length), cPrinted);
    conn.disconnect();

    // String arguments: the host copies them onto the caller's own stack.
    let seen: Outcome = { ok: false, message: "handler not run" };
    caller.hostcalls.set(1, (p, _b, _c, _d, _e, _f, m) => ((seen = outcome(() => m.readCString(p))), 0));
    const call = outcome(() => caller.call("c_hc", "a string argument"));
    const stringArg = call.ok ? seen : call;
    return { runtime: libc.runtime, probes, prints, stringArg, remoteData: remote.readCString(rData) };
  } finally {
    caller.close();
    remote.close();
  }
}

if (isMain(import.meta)) console.log(JSON.stringify(pointersReport()));
