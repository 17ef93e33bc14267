/**
 * Recovery scenario (issue "never hang, never leak"): every host API that touches a machine
 * after something went wrong in it. For each fault kind × API × (connected or not) × which side
 * of the connection the API is applied to, a fresh pair of machines is made to fail, the API is
 * called, and then both machines must be usable again (after a reset where one is required) or
 * cleanly closed.
 *
 * The caller is a flat program (window 0) whose functions reach everything: a spin loop, a ud2,
 * a tail call to any address (so it can enter any function of the remote), `return 42`. The
 * remote is kvstore.elf (window 1): remote_spin, remote_fault, call_back(fn, x) (a callback into
 * the caller), kv_insert/kv_lookup. A GuestCrash is a page-table write to an address no window
 * maps, applied by a service run (the ring-0 runtime faults).
 *
 * Run as a child process on each runtime (`test/recovery.test.ts`), so that a hang is killed by
 * the test's time limit instead of stalling the test runner; progress goes to stderr.
 */
import "./call-path.ts";
import { libc } from "../../src/ffi/index.ts";
import { Machine } from "../../src/machine/machine.ts";
import { connect, type Connection } from "../../src/ipre/connect.ts";
import { PERM } from "../../src/x86/paging.ts";
import { RT } from "../../src/guest/layout.ts";
import { runtimeSymbol } from "../../src/guest/runtime.ts";
import { exampleElf, isMain, outcome, scenarioArgs, type Outcome } from "./common.ts";
import { resources, type Resources } from "./lifecycle.ts";
import { flushPageTables, pt } from "./internals.ts";

/** The caller's flat program: offsets of its functions. */
export const CALLER_CODE = {
  /** jmp . */
  spin: 0,
  /** ud2 */
  ud2: 16,
  /** rax = rdi; (rdi, rsi) = (rsi, rdx); jmp rax: call any address with two arguments. */
  tail: 32,
  /** mov eax, 42; ret */
  ret42: 48,
} as const;

export function callerProgram(): Uint8Array {
  const code = new Uint8Array(64).fill(0xcc);
  code.set([0xeb, 0xfe], CALLER_CODE.spin);
  code.set([0x0f, 0x0b], CALLER_CODE.ud2);
  code.set([0x48, 0x89, 0xf8, 0x48, 0x89, 0xf7, 0x48, 0x89, 0xd6, 0xff, 0xe0], CALLER_CODE.tail);
  code.set([0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3], CALLER_CODE.ret42);
  return code;
}

export const FAULTS = [
  "timeout in caller code",
  "timeout in remote code",
  "timeout in a callback",
  "GuestFault",
  "RemoteFault",
  "GuestCrash of the caller",
  "GuestCrash of the remote",
] as const;
export type FaultKind = (typeof FAULTS)[number];
/** Faults that need a connection. */
export const CONNECTED_ONLY: ReadonlySet<FaultKind> = new Set(["timeout in remote code", "timeout in a callback", "RemoteFault", "GuestCrash of the remote"]);
/** The error class each fault must raise. */
export const FAULT_CLASS: Record<FaultKind, string> = {
  "timeout in caller code": "TimeoutError",
  "timeout in remote code": "TimeoutError",
  "timeout in a callback": "TimeoutError",
  GuestFault: "GuestFault",
  RemoteFault: "RemoteFault",
  "GuestCrash of the caller": "GuestCrash",
  "GuestCrash of the remote": "GuestCrash",
};

export const APIS = ["close", "disconnect", "protect", "reset", "snapshot"] as const;
export type Api = (typeof APIS)[number];
export type Side = "caller" | "remote";

export interface Combo {
  fault: FaultKind;
  api: Api;
  connected: boolean;
  /** The machine the API was applied to. */
  side: Side;
  /** What the fault raised. */
  trigger: Outcome;
  /** What the API did, and how long it took (ms). */
  result: Outcome;
  apiMs: number;
  /** The machine the API was applied to is closed afterwards. */
  closed: boolean;
  /** After the API (and a reset of any machine that reports needsReset): `return 42` in the caller. */
  callerAfter: Outcome | null;
  /** kv_insert + kv_lookup called directly on the remote. */
  remoteAfter: Outcome | null;
  /** Still connected: an IPRE call kv_insert(k, v) then kv_lookup(k) from the caller. */
  ipreAfter: Outcome | null;
  /** needsReset of each machine right after the fault. */
  needsReset: { caller: boolean; remote: boolean };
}

export interface RecoveryReport {
  runtime: string;
  timeoutMs: number;
  combos: Combo[];
  /** A timed-out remote call (no snapshot taken), then reset() on both: the pair works again. */
  pair: { timeout: Outcome; refusedBefore: Outcome; resetCaller: Outcome; resetRemote: Outcome; ipre: Outcome; connected: boolean };
  /**
   * The runtime's park stubs overwritten with `jmp $` (through the mailbox, as a buggy runtime
   * would be), then serviceRun() with Machine.serviceRunLimitMs = 200: a GuestCrash after about
   * 200 ms instead of a hang; the next call reboots the vCPU (runtime rewritten) and works.
   */
  serviceWatchdog: { limitMs: number; run: Outcome; elapsedMs: number; after: Outcome; protect: Outcome; close: Outcome };
  before: Resources;
  after: Resources;
}

const TIMEOUT_MS = 30;
const BAD_GPA = 2 ** 40; // no window maps 1 TiB: the runtime's page-table write faults

function trigger(fault: FaultKind, caller: Machine, remote: Machine): Outcome {
  const c = (off: number) => caller.program!.entry + off;
  switch (fault) {
    case "timeout in caller code":
      return outcome(() => caller.invoke(c(CALLER_CODE.spin), [], { timeoutMs: TIMEOUT_MS }));
    case "timeout in remote code":
      return outcome(() => caller.invoke(c(CALLER_CODE.tail), [remote.symbol("remote_spin")], { timeoutMs: TIMEOUT_MS }));
    case "timeout in a callback":
      return outcome(() => caller.invoke(c(CALLER_CODE.tail), [remote.symbol("call_back"), c(CALLER_CODE.spin)], { timeoutMs: TIMEOUT_MS }));
    case "GuestFault":
      return outcome(() => caller.call(c(CALLER_CODE.ud2)));
    case "RemoteFault":
      return outcome(() => caller.call(c(CALLER_CODE.tail), remote.symbol("remote_fault")));
    case "GuestCrash of the caller":
      return outcome(() => {
        pt(caller).write64(BAD_GPA, 0n);
        flushPageTables(caller);
      });
    case "GuestCrash of the remote":
      return outcome(() => {
        pt(remote).write64(BAD_GPA, 0n);
        flushPageTables(remote);
      });
  }
}

function applyApi(api: Api, target: Machine, conn: Connection | undefined): Outcome {
  switch (api) {
    case "close":
      return outcome(() => target.close());
    case "disconnect":
      return outcome(() => conn!.disconnect());
    case "protect":
      return outcome(() => {
        target.protect(target.userStart, 4096, PERM.R);
        const p = target.tables.getPage(pt(target), target.userStart);
        return p === null ? "unmapped" : `${p.write ? "w" : "-"}${p.exec ? "x" : "-"}`;
      });
    case "reset":
      return outcome(() => target.reset());
    case "snapshot":
      return outcome(() => (target.snapshot(), "snapshot"));
  }
}

/** Make `m` usable the documented way: reset() when it asks for one. */
function ready(m: Machine): void {
  if (m.needsReset !== undefined) m.reset();
}

function combo(fault: FaultKind, api: Api, connected: boolean, side: Side, kvstore: Uint8Array, code: Uint8Array): Combo {
  const remote = Machine.create({ window: 1, program: kvstore, name: "kvstore" });
  const caller = Machine.create({ name: "caller" });
  try {
    caller.loadFlat(code);
    const conn = connected ? connect(caller, remote) : undefined;
    const t = trigger(fault, caller, remote);
    const needsReset = { caller: caller.needsReset !== undefined, remote: remote.needsReset !== undefined };
    const target = side === "caller" ? caller : remote;
    const start = performance.now();
    const result = applyApi(api, target, conn);
    const apiMs = performance.now() - start;
    const callerAfter = caller.closed ? null : outcome(() => (ready(caller), caller.call(caller.program!.entry + CALLER_CODE.ret42)));
    const remoteAfter = remote.closed ? null : outcome(() => (ready(remote), remote.call("kv_insert", 7, 70), remote.call("kv_lookup", 7)));
    const ipreAfter = conn?.connected && !caller.closed && !remote.closed
      ? outcome(() => {
          const tail = caller.program!.entry + CALLER_CODE.tail;
          caller.call(tail, remote.symbol("kv_insert"), 9, 90);
          return caller.call(tail, remote.symbol("kv_lookup"), 9);
        })
      : null;
    return { fault, api, connected, side, trigger: t, result, apiMs, closed: target.closed, callerAfter, remoteAfter, ipreAfter, needsReset };
  } finally {
    caller.close();
    remote.close();
  }
}

function pairReset(kvstore: Uint8Array, code: Uint8Array): RecoveryReport["pair"] {
  const remote = Machine.create({ window: 1, program: kvstore, name: "kvstore" });
  const caller = Machine.create({ name: "caller" });
  try {
    caller.loadFlat(code);
    const conn = connect(caller, remote);
    const tail = caller.program!.entry + CALLER_CODE.tail;
    caller.call(tail, remote.symbol("kv_insert"), 1, 10);
    const timeout = outcome(() => caller.invoke(tail, [remote.symbol("remote_spin")], { timeoutMs: TIMEOUT_MS }));
    const refusedBefore = outcome(() => caller.call(tail, remote.symbol("kv_lookup"), 1));
    const resetCaller = outcome(() => caller.reset());
    const resetRemote = outcome(() => remote.reset());
    // Reset to the state right after load(): the insert before the timeout is gone.
    const ipre = outcome(() => [caller.call(tail, remote.symbol("kv_lookup"), 1), caller.call(tail, remote.symbol("kv_insert"), 2, 20), caller.call(tail, remote.symbol("kv_lookup"), 2)]);
    return { timeout, refusedBefore, resetCaller, resetRemote, ipre, connected: conn.connected };
  } finally {
    caller.close();
    remote.close();
  }
}

function serviceWatchdog(code: Uint8Array): RecoveryReport["serviceWatchdog"] {
  const m = Machine.create({ name: "stuck-runtime" });
  const saved = Machine.serviceRunLimitMs;
  const limitMs = 200;
  try {
    m.loadFlat(code);
    const raw = new DataView(m.rawMemory().buffer, m.rawMemory().byteOffset);
    for (const stub of ["park", "park_alt"] as const) {
      const off = RT.CODE + runtimeSymbol(stub);
      const orig = raw.getBigUint64(off, true);
      pt(m).write64(m.base + off, (orig & ~0xffffn) | 0xfeebn); // jmp $ (EB FE)
    }
    flushPageTables(m); // applies the writes, parks in `service`
    Machine.serviceRunLimitMs = limitMs;
    const start = performance.now();
    const run = outcome(() => m.serviceRun()); // resumes at park: loops in ring 0
    const elapsedMs = performance.now() - start;
    const after = outcome(() => m.call(m.program!.entry + CALLER_CODE.ret42));
    const protect = outcome(() => (m.protect(m.userStart, 4096, PERM.R), m.serviceRun(), m.serviceRun(), "ok"));
    return { limitMs, run, elapsedMs, after, protect, close: outcome(() => (m.close(), m.closed)) };
  } finally {
    Machine.serviceRunLimitMs = saved;
    m.close();
  }
}

/** Every combination; `only` (a substring of "fault/api/side/connected") narrows it for debugging. */
export function recoveryReport(only?: string): RecoveryReport {
  const kvstore = exampleElf("kvstore");
  const code = callerProgram();
  // Warm up (first machine of the process, first timeout of the thread) before counting fds.
  combo("timeout in caller code", "reset", false, "caller", kvstore, code);
  const before = resources();
  const combos: Combo[] = [];
  for (const connected of [false, true]) {
    for (const fault of FAULTS) {
      if (!connected && CONNECTED_ONLY.has(fault)) continue;
      for (const api of APIS) {
        for (const side of ["caller", "remote"] as const) {
          if (api === "disconnect" && (!connected || side === "remote")) continue;
          if (!connected && side === "remote") continue;
          const name = `${fault}/${api}/${side}/${connected ? "connected" : "unconnected"}`;
          if (only && !name.includes(only)) continue;
          console.error(`recovery: ${name}`); // progress: the last line names a combination that hung
          combos.push(combo(fault, api, connected, side, kvstore, code));
        }
      }
    }
  }
  const pair = pairReset(kvstore, code);
  const watchdog = serviceWatchdog(code);
  return { runtime: libc.runtime, timeoutMs: TIMEOUT_MS, combos, pair, serviceWatchdog: watchdog, before, after: resources() };
}

if (isMain(import.meta)) {
  console.log(JSON.stringify(recoveryReport(scenarioArgs()[0])));
}
