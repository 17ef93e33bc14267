/**
 * Lifecycle scenario: execution timeouts (direct, machine default, inside a remote call, no
 * stale signals), snapshot/reset, copy-on-write forks (alone, as remotes, of callers), and
 * resource hygiene (fds and guest mappings stay flat over create/fork cycles and failed creates).
 *
 * `test/lifecycle.test.ts` imports {@link lifecycleReport} on Node and runs this file under Bun
 * and Deno (`bun test/scenarios/lifecycle.ts [cycles]`, `deno run -A ...`), where it prints the
 * report as one JSON line; the test asserts the same things for all three runtimes.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { libc } from "../../src/ffi/index.ts";
import { Machine } from "../../src/machine/machine.ts";
import { connect } from "../../src/ipre/connect.ts";
import { CLOCK_MONOTONIC, NativeBuffer } from "../../src/ffi/native.ts";
import { TIMEOUT_SIGNAL, Watchdog } from "../../src/watchdog.ts";
import { exampleElf, outcome, scaled, scenarioArgs, upperMs, type Outcome } from "./common.ts";

// ------------------------------------------------------------------------------------------
// resources of this process

/** What this process holds that a Machine could leak. */
export interface Resources {
  /** Entries of /proc/self/fd (the directory handle used to list it included, on every call). */
  fds: number;
  /** fds by target: "/dev/kvm", "kvm-vm", "kvm-vcpu", "memfd:ipre", "other". */
  fdKinds: Record<string, number>;
  /** /proc/self/maps lines backed by an ipre memfd (guest memory, snapshots, forks) and their bytes. */
  memfdMaps: number;
  memfdBytes: number;
  /** /proc/self/maps lines of vCPU kvm_run pages and their bytes. */
  vcpuMaps: number;
  vcpuBytes: number;
  /** Informational only (JS heaps grow and shrink): all mappings and anonymous bytes. */
  allMaps: number;
  anonBytes: number;
}

function fdKind(target: string): string {
  if (target === "/dev/kvm") return "/dev/kvm";
  if (target.startsWith("anon_inode:kvm-vm")) return "kvm-vm";
  if (target.startsWith("anon_inode:kvm-vcpu")) return "kvm-vcpu";
  if (target.startsWith("/memfd:ipre")) return "memfd:ipre";
  return "other";
}

/** fd -> target of every open fd (for diagnosing a growing count). */
export function fdTargets(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      out[fd] = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      out[fd] = "(gone)";
    }
  }
  return out;
}

export function resources(): Resources {
  const entries = readdirSync("/proc/self/fd");
  const fdKinds: Record<string, number> = { "/dev/kvm": 0, "kvm-vm": 0, "kvm-vcpu": 0, "memfd:ipre": 0, other: 0 };
  for (const fd of entries) {
    let target = "";
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      target = "(gone)"; // the directory handle of readdirSync itself
    }
    fdKinds[fdKind(target)]!++;
  }
  let memfdMaps = 0, memfdBytes = 0, vcpuMaps = 0, vcpuBytes = 0, allMaps = 0, anonBytes = 0;
  for (const line of readFileSync("/proc/self/maps", "utf8").split("\n")) {
    if (!line) continue;
    allMaps++;
    const m = /^([0-9a-f]+)-([0-9a-f]+)\s+\S+\s+\S+\s+\S+\s+\d+\s*(.*)$/.exec(line);
    if (!m) continue;
    const bytes = parseInt(m[2]!, 16) - parseInt(m[1]!, 16);
    const path = m[3]!;
    if (path.startsWith("/memfd:ipre")) {
      memfdMaps++;
      memfdBytes += bytes;
    } else if (path.startsWith("anon_inode:kvm-vcpu")) {
      vcpuMaps++;
      vcpuBytes += bytes;
    } else if (path === "") {
      anonBytes += bytes;
    }
  }
  return { fds: entries.length, fdKinds, memfdMaps, memfdBytes, vcpuMaps, vcpuBytes, allMaps, anonBytes };
}

/** Whether TIMEOUT_SIGNAL is pending for this thread or the process (/proc/thread-self/status). */
export function timeoutSignalPending(): boolean {
  const status = readFileSync("/proc/thread-self/status", "utf8");
  const bit = 1n << BigInt(TIMEOUT_SIGNAL - 1);
  for (const key of ["SigPnd", "ShdPnd"]) {
    const m = new RegExp(`^${key}:\\s*([0-9a-f]+)`, "m").exec(status);
    if (m && (BigInt(`0x${m[1]}`) & bit) !== 0n) return true;
  }
  return false;
}

/**
 * A one-shot POSIX timer that sends TIMEOUT_SIGNAL to this thread, armed around a single timed
 * call with a generous deadline: if the call's own timeout is lost (the exit loop ignores its
 * signal and keeps running a guest that never returns), the guard's signal stops it, so the
 * scenario reports a *late* timeout instead of hanging (a synchronous KVM_RUN loop cannot be
 * interrupted from JS). `disarm()` after the call stops the timer and drains a pending signal,
 * so no stray signal is left for the next KVM_RUN (which would otherwise see EINTR).
 */
export class GuardTimer {
  #buf = NativeBuffer.alloc(4096);
  #timerId: number;
  constructor() {
    Watchdog.forThisThread(); // blocks TIMEOUT_SIGNAL on this thread outside KVM_RUN
    const v = this.#buf.view;
    v.setInt32(8, TIMEOUT_SIGNAL, true); // struct sigevent: sigev_signo
    v.setInt32(12, 4, true); // SIGEV_THREAD_ID
    v.setInt32(16, libc.gettid(), true);
    if (libc.timer_create(CLOCK_MONOTONIC, this.#buf.address, this.#buf.address + 64) < 0) throw new Error(`timer_create: errno ${libc.errno()}`);
    this.#timerId = Number(v.getBigInt64(64, true));
    v.setBigUint64(256, 1n << BigInt(TIMEOUT_SIGNAL - 1), true); // sigset {TIMEOUT_SIGNAL}
  }
  #armed = false;
  /** timer_settime; the old value goes to +160 (struct itimerspec: it_interval, then it_value at +176). */
  #set(ms: number): void {
    const v = this.#buf.view;
    const ns = BigInt(Math.round(ms * 1e6));
    v.setBigInt64(128, 0n, true); // it_interval: one shot
    v.setBigInt64(136, 0n, true);
    v.setBigInt64(144, ns / 1_000_000_000n, true);
    v.setBigInt64(152, ns % 1_000_000_000n, true);
    if (libc.timer_settime(this.#timerId, 0, this.#buf.address + 128, this.#buf.address + 160) < 0) throw new Error(`timer_settime: errno ${libc.errno()}`);
  }
  arm(ms: number): void {
    this.#set(ms);
    this.#armed = true;
  }
  /** Stop the timer and drain its signal; true when it had fired (the call needed rescuing). */
  disarm(): boolean {
    this.#set(0);
    const v = this.#buf.view;
    const fired = this.#armed && v.getBigInt64(176, true) === 0n && v.getBigInt64(184, true) === 0n;
    this.#armed = false;
    while (libc.sigtimedwait(this.#buf.address + 256, this.#buf.address + 384, this.#buf.address + 512) === TIMEOUT_SIGNAL) { /* drain */ }
    return fired;
  }
  close(): void {
    this.disarm();
    libc.timer_delete(this.#timerId);
    this.#buf.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

// ------------------------------------------------------------------------------------------
// report types

/** A call that may time out: its outcome, the wall time around it and the error's own numbers. */
export interface Timed {
  outcome: Outcome;
  /** performance.now() around the call, in ms. */
  elapsedMs: number;
  /** elapsedMs - timeoutMs. */
  overshootMs: number;
  timeoutMs: number;
  /** TimeoutError.timeoutMs / elapsedMs, when it threw one. */
  errorTimeoutMs?: number;
  errorElapsedMs?: number;
}

export interface TimeoutsReport {
  /** invoke("spin", [], { timeoutMs: 100 }) three times on one machine, each followed by spin_for(1000). */
  invoke: Array<{ timed: Timed; after: Outcome }>;
  /** A state-holding machine (kvstore) times out in remote_spin: its memory is intact afterwards. */
  stateKept: { before: Outcome; timed: Timed; after: Outcome };
  /** Machine.create({ timeoutMs: 100 }) */
  machineDefault: {
    timeoutMs: number;
    call: Timed;
    callBigInt: Timed;
    /** invoke with { timeoutMs: 50 } overrides the default. */
    override: Timed;
    after: Outcome;
  };
  /** Machine.fork(snapshot, { timeoutMs: 60 }) */
  forkDefault: { call: Timed; after: Outcome };
  remote: RemoteTimeoutRound[];
  stale: StaleReport;
  short: ShortReport;
}

/**
 * Many short timeouts (20 us, 100 us, 0.5, 1 and 2 ms) of a guest that never returns: every one
 * must be stopped by its own watchdog. A guard timer (timeout + 2 s) rescues a call whose timeout
 * signal was lost, so a lost timeout is reported as a late one instead of hanging; after 5 late
 * ones the loop stops. How late each timeout stopped is measured and reported, not bounded: a
 * loaded 2-core machine may delay any of them.
 */
export interface ShortReport {
  calls: number;
  timeouts: number;
  /** The guard timer fired: the call was not stopped by its own watchdog. */
  late: Array<{ i: number; timeoutMs: number; elapsedMs: number }>;
  other: Outcome[];
  maxOvershootMs: number;
  p50OvershootMs: number;
  after: Outcome;
}

export interface RemoteTimeoutRound {
  /** caller.invoke("call_remote_spin", [], { timeoutMs: 100 }) */
  timed: Timed;
  callerNeedsReset?: string;
  remoteNeedsReset?: string;
  /** A second caller connected to the same remote, which did not time out. */
  otherNeedsReset?: string;
  /** Before any reset: every use of either machine is refused. */
  callerLocal: Outcome;
  callerIntoRemote: Outcome;
  remoteDirect: Outcome;
  /** The other caller's own code still runs... */
  otherLocal: Outcome;
  /** ...but it must not enter the remote that was stopped mid-function. */
  otherIntoRemote: Outcome;
  /** First reset: `first` ("caller" or "remote"), then the checks, then the second one. */
  first: "caller" | "remote";
  afterFirstReset: { resetOutcome: Outcome; firstLocal: Outcome; secondDirect: Outcome; callerIntoRemote: Outcome };
  afterBothResets: { resetOutcome: Outcome; remoteCount: Outcome; callerIntoRemote: Outcome; fill: Outcome; remoteCountAfterFill: Outcome; otherIntoRemote: Outcome };
  /** kv_count at the snapshot and after the fill above. */
  expectedCount: number;
}

export interface StaleReport {
  /** spin_for(n) untimed, median ms, and the timeout used (just above it). */
  n: number;
  medianMs: number;
  timeoutMs: number;
  calls: number;
  ok: number;
  timeouts: number;
  /** TimeoutErrors thrown before timeoutMs elapsed (must be 0). */
  premature: number;
  /** Results that were neither n nor a TimeoutError (must be 0). */
  wrong: Outcome[];
  /** Calls after which TIMEOUT_SIGNAL was still pending (must be 0). */
  pendingAfter: number;
  /** 200 short calls with a 1 s timeout: all return. */
  longTimeout: { calls: number; ok: number; pendingAfter: number };
  /** Untimed spin_for of ~30 ms after all that: returns, with its number of exits. */
  untimedLong: { outcome: Outcome; ms: number; exits: number };
  /** Timed (1 s) spin_for of ~30 ms: returns. */
  timedLong: { outcome: Outcome; ms: number; exits: number };
  /** Exits of a short untimed call (1 = the exit trap only). */
  shortExits: number;
}

export interface ResetReport {
  countAtSnapshot: number;
  /** kv_count after inserting more, then after reset, three rounds. */
  rounds: Array<{ mutated: number; lookupNew: number; afterReset: number; lookupNewAfter: number; lookupOld: number }>;
  memory: {
    address: number;
    original: number[];
    written: number[];
    afterReset: number[];
    /** kv_data_marker (.data) overwritten by the host, then reset. */
    marker: { before: string; written: string; afterReset: string };
    /** 256 pages written by the host, then reset: number of pages that differ from the original afterwards. */
    pagesDiffering: number;
  };
  /** Host bytes written before the snapshot survive reset; those written after do not. */
  preSnapshotWrite: { expected: number[]; afterReset: number[] };
  /** A second snapshot moves the reset point. */
  secondSnapshot: { atSecond: number; mutated: number; afterReset: number };
  /** reset after a fault and after a timeout (broken vCPU). */
  afterFault: { fault: Outcome; reset: Outcome; ok: Outcome };
  afterTimeout: { timeout: Outcome; reset: Outcome; after: Outcome };
  /**
   * No snapshot(): reset() returns to the implicit baseline, the state right after load() (kvstore
   * with 20 inserts, a host write and a changed .data marker, then reset); then a second load()
   * (add.elf over it) moves the baseline; a timeout without a snapshot is reset too.
   */
  noSnapshot: {
    countBefore: Outcome;
    reset: Outcome;
    countAfter: Outcome;
    lookupAfter: Outcome;
    markerAfter: string;
    hostWriteAfter: number[];
    reload: Outcome;
    resetAfterReload: Outcome;
    addAfterReset: Outcome;
    timeout: Outcome;
    resetAfterTimeout: Outcome;
    addAfterTimeout: Outcome;
  };
  closed: Outcome;
  /**
   * Page permissions changed with protect() after the snapshot, then reset: ok() on the reset
   * machine and on a fork of the same snapshot (informational: the runtime area is not reverted).
   */
  protectAfterSnapshot: { beforeReset: Outcome; afterReset: Outcome; fork: Outcome };
}

export interface ForkReport {
  countAtSnapshot: number;
  fork: { count: Outcome; lookup7: Outcome; window: number; memorySize: number; sameSymbol: boolean; name: string };
  /** Inserts in the fork and in the parent do not cross. */
  isolation: { forkCount: number; parentCount: number; forkLookupParentKey: number; parentLookupForkKey: number };
  /** Host writes in one are not visible in the other. */
  hostWrites: { forkWroteParentSees: number[]; parentWroteForkSees: number[]; forkSeesOwn: number[]; parentSeesOwn: number[] };
  /** A fork made after the parent changed sees the snapshot, not the parent. */
  lateFork: { count: number };
  forkReset: { count: number };
  /** connect(caller, fork): fill(70) from the caller. */
  asRemote: { fill: Outcome; forkCount: Outcome; parentCount: Outcome };
  /** A second fork serving a second caller. */
  scaled: { fill: Outcome; fork2Count: Outcome; fork1Count: Outcome; c1Serve65: Outcome; c2Serve65: Outcome; c2Serve55: Outcome };
  /** A fork of the first caller (snapshot with its cache), connected to fork 2. */
  callerFork: {
    missesAtSnapshot: number;
    misses: Outcome;
    beforeConnect: Outcome;
    afterConnect: Outcome;
    cachedServe65: Outcome;
    serve55: Outcome;
    missesAfter: Outcome;
  };
  /** Snapshot closed: no new forks, existing forks keep working (and resetting). */
  closedSnapshot: { fork: Outcome; existing: Outcome; existingReset: Outcome };
  /** Parent closed: its forks keep working. */
  parentClosed: { count: Outcome; reset: Outcome };
  /** Eight forks alive at once, each inserting i keys. */
  many: number[];
}

export interface CycleReport {
  name: string;
  cycles: number;
  /** Measured after the first 10% of cycles, and at the end. */
  early: Resources;
  end: Resources;
  ms: number;
  errors: string[];
}

export interface HygieneReport {
  before: Resources;
  cycles: CycleReport[];
  after: Resources;
}

/**
 * Unrelated signals: SIGWINCH with a JS listener (so the runtime installs a native handler) sent
 * to this thread every `periodMs` by a POSIX timer, while machines are created, forked, called,
 * protected and reset. A caught signal makes any blocking ioctl return EINTR (KVM_CREATE_VM,
 * KVM_RUN of the boot and of page-table service runs included): ipre must retry, as a profiler
 * (node --cpu-prof: SIGPROF every 1 ms), a child process (SIGCHLD) or a terminal resize can do
 * this to any program.
 */
export interface SignalsReport {
  periodMs: number;
  cycles: number;
  failures: number;
  /** Distinct error messages (at most 5). */
  messages: string[];
  /** Timed calls (200 ms timeout) of ~1 ms guests interrupted by the signals: all must return. */
  timedOk: number;
  /** Loops of 300 fast-path remote calls (one per cycle) that returned the right sum. */
  remoteLoops: number;
  /** Did the listener see signals (when the runtime ran its event loop afterwards: not checked). */
  fired: boolean;
}

export interface LifecycleReport {
  runtime: string;
  timeouts: TimeoutsReport;
  reset: ResetReport;
  fork: ForkReport;
  signals: SignalsReport;
  hygiene: HygieneReport;
}

// ------------------------------------------------------------------------------------------
// helpers

function timed(timeoutMs: number, fn: () => unknown): Timed {
  const t0 = performance.now();
  let err: unknown;
  const o = outcome(() => {
    try {
      return fn();
    } catch (e) {
      err = e;
      throw e;
    }
  });
  const elapsedMs = performance.now() - t0;
  const t: Timed = { outcome: o, elapsedMs, overshootMs: elapsedMs - timeoutMs, timeoutMs };
  const e = err as { timeoutMs?: unknown; elapsedMs?: unknown } | undefined;
  if (e && typeof e.timeoutMs === "number") t.errorTimeoutMs = e.timeoutMs;
  if (e && typeof e.elapsedMs === "number") t.errorElapsedMs = e.elapsedMs;
  return t;
}

function value(o: Outcome): number {
  if (!o.ok) throw new Error(`expected a value, got ${o.name}: ${o.message}`);
  return o.value as number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

// ------------------------------------------------------------------------------------------
// timeouts

function remoteRound(first: "caller" | "remote"): RemoteTimeoutRound {
  using remote = Machine.create({ window: 1, program: exampleElf("kvstore"), name: "kv" });
  using caller = Machine.create({ program: exampleElf("kvcaller"), name: "caller" });
  using other = Machine.create({ program: exampleElf("kvcaller"), name: "other" });
  connect(caller, remote);
  connect(other, remote);
  value(outcome(() => caller.call("fill", 10)));
  remote.snapshot();
  caller.snapshot();

  const t = timed(100, () => caller.invoke("call_remote_spin", [], { timeoutMs: 100 }));
  const round: RemoteTimeoutRound = {
    timed: t,
    callerNeedsReset: caller.needsReset,
    remoteNeedsReset: remote.needsReset,
    otherNeedsReset: other.needsReset,
    callerLocal: outcome(() => caller.call("serve_misses")),
    callerIntoRemote: outcome(() => caller.call("call_remote_n", 1)),
    remoteDirect: outcome(() => remote.call("kv_count")),
    otherLocal: outcome(() => other.call("serve_misses")),
    otherIntoRemote: outcome(() => other.call("call_remote_n", 1)),
    first,
    afterFirstReset: undefined as never,
    afterBothResets: undefined as never,
    expectedCount: 10,
  };
  const [a, b] = first === "caller" ? [caller, remote] : [remote, caller];
  const resetA = outcome(() => a.reset());
  round.afterFirstReset = {
    resetOutcome: resetA,
    firstLocal: first === "caller" ? outcome(() => caller.call("serve_misses")) : outcome(() => remote.call("kv_count")),
    secondDirect: first === "caller" ? outcome(() => remote.call("kv_count")) : outcome(() => caller.call("serve_misses")),
    callerIntoRemote: outcome(() => caller.call("call_remote_n", 1)),
  };
  const resetB = outcome(() => b.reset());
  round.afterBothResets = {
    resetOutcome: resetB,
    remoteCount: outcome(() => remote.call("kv_count")),
    callerIntoRemote: outcome(() => caller.call("call_remote_n", 2)),
    fill: outcome(() => caller.call("fill", 15)),
    remoteCountAfterFill: outcome(() => remote.call("kv_count")),
    otherIntoRemote: outcome(() => other.call("call_remote_n", 1)),
  };
  return round;
}

function staleSignals(): StaleReport {
  using m = Machine.create({ program: exampleElf("spin"), name: "stale" });
  // Calibrate spin_for(n) to about 1 ms.
  let n = 20_000;
  for (let i = 0; i < 12; i++) {
    const t0 = performance.now();
    m.call("spin_for", n);
    const ms = performance.now() - t0;
    if (ms > 0.8) break;
    n = Math.ceil(n * Math.min(8, 1 / Math.max(ms, 0.05)));
  }
  const samples: number[] = [];
  for (let i = 0; i < 21; i++) {
    const t0 = performance.now();
    m.call("spin_for", n);
    samples.push(performance.now() - t0);
  }
  const medianMs = median(samples);
  // Just above the runtime: some calls finish microseconds before the timer fires.
  const timeoutMs = Math.round((medianMs * 1.3 + 0.1) * 1000) / 1000;
  const report: StaleReport = {
    n, medianMs, timeoutMs, calls: 200, ok: 0, timeouts: 0, premature: 0, wrong: [], pendingAfter: 0,
    longTimeout: { calls: 200, ok: 0, pendingAfter: 0 },
    untimedLong: undefined as never, timedLong: undefined as never, shortExits: 0,
  };
  for (let i = 0; i < report.calls; i++) {
    const t = timed(timeoutMs, () => m.invoke("spin_for", [n], { timeoutMs }));
    if (t.outcome.ok && t.outcome.value === n) report.ok++;
    else if (t.outcome.name === "TimeoutError") {
      report.timeouts++;
      if (t.elapsedMs < timeoutMs || (t.errorElapsedMs ?? 0) < timeoutMs * 0.999) report.premature++;
    } else report.wrong.push(t.outcome);
    if (timeoutSignalPending()) report.pendingAfter++;
  }
  const small = Math.max(1, Math.floor(n / 20));
  for (let i = 0; i < report.longTimeout.calls; i++) {
    const o = outcome(() => m.invoke("spin_for", [small], { timeoutMs: 1000 }));
    if (o.ok && o.value === small) report.longTimeout.ok++;
    else report.wrong.push(o);
    if (timeoutSignalPending()) report.longTimeout.pendingAfter++;
  }
  const long = Math.ceil(n * (30 / Math.max(medianMs, 0.01)));
  const run = (fn: () => number) => {
    const e0 = m.exits;
    const t0 = performance.now();
    const o = outcome(fn);
    return { outcome: o, ms: performance.now() - t0, exits: m.exits - e0 };
  };
  report.untimedLong = run(() => m.call("spin_for", long));
  report.timedLong = run(() => m.invoke("spin_for", [long], { timeoutMs: 1000 }));
  if (!(report.untimedLong.outcome.ok && report.untimedLong.outcome.value === long)) report.wrong.push(report.untimedLong.outcome);
  if (!(report.timedLong.outcome.ok && report.timedLong.outcome.value === long)) report.wrong.push(report.timedLong.outcome);
  const e0 = m.exits;
  m.call("spin_for", 10);
  report.shortExits = m.exits - e0;
  return report;
}

export const SHORT_TIMEOUTS = [0.02, 0.1, 0.5, 1, 2];
/**
 * The guard fires this long after a short timeout: only a lost timeout (the exit loop ignored its
 * own signal) needs it. Long enough that a loaded machine's scheduling delay never looks like one.
 */
const GUARD_MS = 2000;

function shortTimeouts(calls: number): ShortReport {
  using m = Machine.create({ program: exampleElf("spin"), name: "short" });
  const report: ShortReport = { calls, timeouts: 0, late: [], other: [], maxOvershootMs: 0, p50OvershootMs: 0, after: undefined as never };
  const overshoots: number[] = [];
  {
    using guard = new GuardTimer();
    for (let i = 0; i < calls; i++) {
      const timeoutMs = SHORT_TIMEOUTS[i % SHORT_TIMEOUTS.length]!;
      guard.arm(timeoutMs + upperMs(GUARD_MS));
      const t = timed(timeoutMs, () => m.invoke("spin", [], { timeoutMs }));
      const rescued = guard.disarm();
      if (t.outcome.name !== "TimeoutError") report.other.push(t.outcome);
      else report.timeouts++;
      if (rescued) report.late.push({ i, timeoutMs, elapsedMs: t.elapsedMs });
      overshoots.push(t.overshootMs);
      if (report.late.length >= 5) {
        report.calls = i + 1;
        break;
      }
    }
  }
  report.maxOvershootMs = Math.max(...overshoots);
  report.p50OvershootMs = median(overshoots);
  report.after = outcome(() => m.invoke("spin_for", [1000], { timeoutMs: 1000 }));
  return report;
}

export function timeoutsReport(): TimeoutsReport {
  const invoke: TimeoutsReport["invoke"] = [];
  {
    using m = Machine.create({ program: exampleElf("spin"), name: "spinner" });
    for (let i = 0; i < 3; i++) {
      const t = timed(100, () => m.invoke("spin", [], { timeoutMs: 100 }));
      invoke.push({ timed: t, after: outcome(() => m.call("spin_for", 1000)) });
    }
  }
  let stateKept: TimeoutsReport["stateKept"];
  {
    using kv = Machine.create({ window: 1, program: exampleElf("kvstore"), name: "kv-spin" });
    for (let k = 1; k <= 25; k++) kv.call("kv_insert", k, k * 2);
    stateKept = {
      before: outcome(() => kv.call("kv_count")),
      timed: timed(100, () => kv.invoke("remote_spin", [], { timeoutMs: 100 })),
      after: outcome(() => kv.call("kv_lookup", 25)),
    };
  }
  let machineDefault: TimeoutsReport["machineDefault"];
  let forkDefault: TimeoutsReport["forkDefault"];
  {
    using m = Machine.create({ program: exampleElf("spin"), name: "default-timeout", timeoutMs: 100 });
    machineDefault = {
      timeoutMs: m.timeoutMs,
      call: timed(100, () => m.call("spin")),
      callBigInt: timed(100, () => m.callBigInt("spin")),
      override: timed(50, () => m.invoke("spin", [], { timeoutMs: 50 })),
      after: outcome(() => m.call("spin_for", 100)),
    };
    const snap = m.snapshot();
    using f = Machine.fork(snap, { timeoutMs: 60 });
    forkDefault = { call: timed(60, () => f.call("spin")), after: outcome(() => f.call("spin_for", 7)) };
  }
  const remote = [remoteRound("caller"), remoteRound("remote")];
  return { invoke, stateKept, machineDefault, forkDefault, remote, stale: staleSignals(), short: shortTimeouts(1500) };
}

// ------------------------------------------------------------------------------------------
// reset

export function resetReport(): ResetReport {
  using kv = Machine.create({ window: 1, program: exampleElf("kvstore"), name: "kv-reset" });
  for (let k = 1; k <= 50; k++) kv.call("kv_insert", k, k * 3);
  kv.snapshot();
  const countAtSnapshot = kv.call("kv_count");
  const rounds: ResetReport["rounds"] = [];
  for (let r = 0; r < 3; r++) {
    for (let k = 51; k <= 150 + r; k++) kv.call("kv_insert", k, k * 3);
    const mutated = kv.call("kv_count");
    const lookupNew = kv.call("kv_lookup", 120);
    kv.reset();
    rounds.push({ mutated, lookupNew, afterReset: kv.call("kv_count"), lookupNewAfter: kv.call("kv_lookup", 120), lookupOld: kv.call("kv_lookup", 7) });
  }

  // Host writes: a free page, the program's .data, and 256 pages.
  const address = kv.base + 20 * 1024 * 1024 + 123;
  const original = [...kv.read(address, 16)];
  const written = Array.from({ length: 16 }, (_, i) => (i * 37 + 11) & 0xff);
  kv.write(address, new Uint8Array(written));
  const writtenSeen = [...kv.read(address, 16)];
  const markerAddr = kv.symbol("kv_data_marker");
  const markerBefore = kv.readU64(markerAddr);
  kv.writeU64(markerAddr, 0xdeadbeefn);
  const markerWritten = kv.readU64(markerAddr);
  const bulkStart = kv.base + 8 * 1024 * 1024;
  const bulkOriginal = kv.read(bulkStart, 256 * 4096);
  for (let p = 0; p < 256; p++) kv.write(bulkStart + p * 4096 + (p % 4000), new Uint8Array([p & 0xff, 0xa5, 0x5a, 1 + (p & 0x7f)]));
  kv.reset();
  const bulkAfter = kv.read(bulkStart, 256 * 4096);
  let pagesDiffering = 0;
  for (let p = 0; p < 256; p++) {
    const a = bulkOriginal.subarray(p * 4096, (p + 1) * 4096), b = bulkAfter.subarray(p * 4096, (p + 1) * 4096);
    if (a.some((x, i) => x !== b[i])) pagesDiffering++;
  }
  const memory: ResetReport["memory"] = {
    address,
    original,
    written: writtenSeen,
    afterReset: [...kv.read(address, 16)],
    marker: { before: `0x${markerBefore.toString(16)}`, written: `0x${markerWritten.toString(16)}`, afterReset: `0x${kv.readU64(markerAddr).toString(16)}` },
    pagesDiffering,
  };

  // A second snapshot moves the reset point.
  for (let k = 200; k < 210; k++) kv.call("kv_insert", k, k);
  kv.snapshot();
  const atSecond = kv.call("kv_count");
  for (let k = 300; k < 310; k++) kv.call("kv_insert", k, k);
  const mutated = kv.call("kv_count");
  kv.reset();
  const secondSnapshot = { atSecond, mutated, afterReset: kv.call("kv_count") };

  let preSnapshotWrite: ResetReport["preSnapshotWrite"];
  let afterFault: ResetReport["afterFault"];
  let protectAfterSnapshot: ResetReport["protectAfterSnapshot"];
  {
    using f = Machine.create({ program: exampleElf("faults"), name: "faults-reset" });
    const at = f.userStart + 0x300000;
    const expected = [9, 8, 7, 6, 5, 4, 3, 2];
    f.write(at, new Uint8Array(expected));
    const snap = f.snapshot();
    f.write(at, new Uint8Array(8).fill(0xee));
    f.reset();
    preSnapshotWrite = { expected, afterReset: [...f.read(at, 8)] };
    afterFault = { fault: outcome(() => f.call("divide", 1, 0)), reset: outcome(() => f.reset()), ok: outcome(() => f.call("ok")) };
    const okPage = Math.floor(f.symbol("ok") / 4096) * 4096;
    f.protect(okPage, 4096, null);
    const beforeReset = outcome(() => f.call("ok"));
    f.reset();
    using fork = Machine.fork(snap);
    protectAfterSnapshot = { beforeReset, afterReset: outcome(() => f.call("ok")), fork: outcome(() => fork.call("ok")) };
  }
  let afterTimeout: ResetReport["afterTimeout"];
  {
    using s = Machine.create({ program: exampleElf("spin"), name: "spin-reset" });
    s.snapshot();
    afterTimeout = { timeout: outcome(() => s.invoke("spin", [], { timeoutMs: 20 })), reset: outcome(() => s.reset()), after: outcome(() => s.call("spin_for", 5)) };
  }
  let noSnapshot: ResetReport["noSnapshot"];
  let closed: Outcome;
  {
    const a = Machine.create({ window: 1, program: exampleElf("kvstore"), name: "no-snapshot" });
    for (let k = 1; k <= 20; k++) a.call("kv_insert", k, k);
    const countBefore = outcome(() => a.call("kv_count"));
    const at = a.base + 20 * 1024 * 1024 + 5; // far from the program image at +4 MiB
    a.write(at, new Uint8Array([1, 2, 3]));
    a.writeU64(a.symbol("kv_data_marker"), 0x777n);
    const reset = outcome(() => a.reset());
    const partial = {
      countBefore,
      reset,
      countAfter: outcome(() => a.call("kv_count")),
      lookupAfter: outcome(() => a.call("kv_lookup", 3)),
      markerAfter: `0x${a.readU64(a.symbol("kv_data_marker")).toString(16)}`,
      hostWriteAfter: [...a.read(at, 3)],
    };
    // add.elf links at window 0: a window-1 machine needs its own build, so use a flat program.
    const reload = outcome(() => (a.loadFlat(new Uint8Array([0x48, 0x8d, 0x04, 0x37, 0xc3]), { symbols: { add: 0 } }), a.call("add", 40, 2)));
    const resetAfterReload = outcome(() => a.reset());
    const addAfterReset = outcome(() => a.call("add", 1, 2));
    const spinForever = a.program!.entry + 0x100;
    const timeout = outcome(() => (a.loadFlat(new Uint8Array([0x48, 0x8d, 0x04, 0x37, 0xc3, ...new Array(0x100 - 5).fill(0x90), 0xeb, 0xfe]), { symbols: { add: 0 } }), a.invoke(spinForever, [], { timeoutMs: 20 })));
    noSnapshot = { ...partial, reload, resetAfterReload, addAfterReset, timeout, resetAfterTimeout: outcome(() => a.reset()), addAfterTimeout: outcome(() => a.call("add", 5, 6)) };
    a.close();
    closed = outcome(() => a.reset());
  }
  return { countAtSnapshot, rounds, memory, preSnapshotWrite, secondSnapshot, afterFault, afterTimeout, noSnapshot, closed, protectAfterSnapshot };
}

// ------------------------------------------------------------------------------------------
// fork

export function forkReport(): ForkReport {
  const parent = Machine.create({ window: 1, program: exampleElf("kvstore"), name: "kv-parent" });
  const cleanup: Machine[] = [parent];
  try {
    for (let k = 0; k < 50; k++) parent.call("kv_insert", k, k * 10 + 1);
    const snap = parent.snapshot();
    const countAtSnapshot = parent.call("kv_count");

    const f = Machine.fork(snap, { name: "kv-fork-1" });
    cleanup.push(f);
    const fork: ForkReport["fork"] = {
      count: outcome(() => f.call("kv_count")),
      lookup7: outcome(() => f.call("kv_lookup", 7)),
      window: f.window,
      memorySize: f.memorySize,
      sameSymbol: f.symbol("kv_count") === parent.symbol("kv_count"),
      name: f.name,
    };
    for (let k = 100; k < 110; k++) f.call("kv_insert", k, k);
    for (let k = 200; k < 205; k++) parent.call("kv_insert", k, k);
    const isolation = { forkCount: f.call("kv_count"), parentCount: parent.call("kv_count"), forkLookupParentKey: f.call("kv_lookup", 200), parentLookupForkKey: parent.call("kv_lookup", 100) };

    const a1 = parent.base + 24 * 1024 * 1024, a2 = a1 + 4096 * 3;
    f.write(a1, new Uint8Array([1, 2, 3, 4]));
    parent.write(a2, new Uint8Array([5, 6, 7, 8]));
    const hostWrites = {
      forkWroteParentSees: [...parent.read(a1, 4)],
      parentWroteForkSees: [...f.read(a2, 4)],
      forkSeesOwn: [...f.read(a1, 4)],
      parentSeesOwn: [...parent.read(a2, 4)],
    };

    let lateFork: ForkReport["lateFork"];
    {
      using late = Machine.fork(snap);
      lateFork = { count: late.call("kv_count") };
    }
    f.reset();
    const forkReset = { count: f.call("kv_count") };

    // The fork as a remote, and a second fork for a second caller.
    const c1 = Machine.create({ program: exampleElf("kvcaller"), name: "caller-1" });
    cleanup.push(c1);
    connect(c1, f);
    const asRemote = { fill: outcome(() => c1.call("fill", 70)), forkCount: outcome(() => f.call("kv_count")), parentCount: outcome(() => parent.call("kv_count")) };
    const f2 = Machine.fork(snap, { name: "kv-fork-2" });
    const c2 = Machine.create({ program: exampleElf("kvcaller"), name: "caller-2" });
    cleanup.push(f2, c2);
    connect(c2, f2);
    const scaled = {
      fill: outcome(() => c2.call("fill", 60)),
      fork2Count: outcome(() => f2.call("kv_count")),
      fork1Count: outcome(() => f.call("kv_count")),
      c1Serve65: outcome(() => c1.call("serve", 65)),
      c2Serve65: outcome(() => c2.call("serve", 65)),
      c2Serve55: outcome(() => c2.call("serve", 55)),
    };

    // Fork of a caller: its memory (the serve cache) comes along, its connections do not.
    const missesAtSnapshot = c1.call("serve_misses");
    const callerSnap = c1.snapshot();
    const fc = Machine.fork(callerSnap, { name: "caller-fork" });
    cleanup.push(fc);
    const misses = outcome(() => fc.call("serve_misses"));
    const beforeConnect = outcome(() => fc.call("call_remote_n", 1));
    connect(fc, f2);
    const callerFork = {
      missesAtSnapshot,
      misses,
      beforeConnect,
      afterConnect: outcome(() => fc.call("call_remote_n", 1)),
      cachedServe65: outcome(() => fc.call("serve", 65)),
      serve55: outcome(() => fc.call("serve", 55)),
      missesAfter: outcome(() => fc.call("serve_misses")),
    };

    snap.close();
    const closedSnapshot = {
      fork: outcome(() => Machine.fork(snap).close()),
      existing: outcome(() => f2.call("kv_count")),
      existingReset: outcome(() => {
        f2.reset();
        return f2.call("kv_count");
      }),
    };

    // Eight forks at once (from a fresh snapshot), then the parent goes away.
    const snap2 = parent.snapshot();
    const forks = Array.from({ length: 8 }, (_, i) => Machine.fork(snap2, { name: `many-${i}` }));
    cleanup.push(...forks);
    forks.forEach((m, i) => {
      for (let k = 0; k < i; k++) m.call("kv_insert", 1000 + k, k);
    });
    const many = forks.map((m) => m.call("kv_count"));
    parent.close();
    const survivor = forks[3]!;
    const parentClosed = {
      count: outcome(() => survivor.call("kv_count")),
      reset: outcome(() => {
        survivor.reset();
        return survivor.call("kv_count");
      }),
    };
    return { countAtSnapshot, fork, isolation, hostWrites, lateFork, forkReset, asRemote, scaled, callerFork, closedSnapshot, parentClosed, many };
  } finally {
    for (const m of cleanup.reverse()) m.close();
  }
}

// ------------------------------------------------------------------------------------------
// unrelated signals

const SIGWINCH = 28;

/** Add (or remove) a JS listener for SIGWINCH on Node, Bun or Deno. */
function sigwinchListener(fn: () => void, add: boolean): void {
  const g = globalThis as {
    Deno?: { addSignalListener(s: string, f: () => void): void; removeSignalListener(s: string, f: () => void): void };
    process?: { on(s: string, f: () => void): void; off(s: string, f: () => void): void };
  };
  if (g.Deno) add ? g.Deno.addSignalListener("SIGWINCH", fn) : g.Deno.removeSignalListener("SIGWINCH", fn);
  else if (g.process) add ? g.process.on("SIGWINCH", fn) : g.process.off("SIGWINCH", fn);
}

export function signalsReport(cycles = 60, periodMs = 2): SignalsReport {
  let fired = false;
  const listener = () => {
    fired = true;
  };
  sigwinchListener(listener, true);
  using buf = NativeBuffer.alloc(4096);
  const v = buf.view;
  v.setInt32(8, SIGWINCH, true); // struct sigevent: sigev_signo
  v.setInt32(12, 4, true); // SIGEV_THREAD_ID
  v.setInt32(16, libc.gettid(), true);
  if (libc.timer_create(CLOCK_MONOTONIC, buf.address, buf.address + 64) < 0) throw new Error(`timer_create: errno ${libc.errno()}`);
  const timerId = Number(v.getBigInt64(64, true));
  const ns = BigInt(Math.round(periodMs * 1e6));
  for (const off of [128, 144]) {
    v.setBigInt64(off, 0n, true);
    v.setBigInt64(off + 8, ns, true);
  }
  const report: SignalsReport = { periodMs, cycles: 2 * cycles, failures: 0, messages: [], timedOk: 0, remoteLoops: 0, fired: false };
  const spinElf = exampleElf("spin");
  const run = (fn: () => void) => {
    try {
      fn();
    } catch (e) {
      report.failures++;
      const msg = `${(e as Error).name}: ${(e as Error).message}`;
      if (report.messages.length < 5 && !report.messages.includes(msg)) report.messages.push(msg);
    }
  };
  let parent: Machine | undefined;
  // IPRE on the fast path under the same signals: a signal can end KVM_RUN inside the runtime's
  // #PF handler, mid-entry or mid-return (engine/exits.ts must not adopt that frame and resume).
  const store = Machine.create({ window: 1, program: exampleElf("kvstore"), name: "signals-store" });
  const client = Machine.create({ window: 0, program: exampleElf("kvcaller"), name: "signals-client" });
  try {
    connect(client, store);
    const keys = client.call("fill", 20);
    parent = Machine.create({ program: spinElf, name: "signals-parent" });
    const snap = parent.snapshot();
    const n = 3_000_000; // about 1 ms of spin_for on this host
    if (libc.timer_settime(timerId, 0, buf.address + 128, 0) < 0) throw new Error(`timer_settime: errno ${libc.errno()}`);
    for (let i = 0; i < cycles; i++) {
      run(() => {
        const m = Machine.create({ program: spinElf }); // KVM_CREATE_VM, boot, load (service run)
        try {
          if (m.invoke("spin_for", [n], { timeoutMs: 200 }) === n) report.timedOk++;
          m.protect(m.userStart + 0x800000, 4096, null); // page-table service run
          m.call("spin_for", 1000);
        } finally {
          m.close();
        }
      });
      run(() => {
        const f = Machine.fork(snap);
        try {
          if (f.invoke("spin_for", [n], { timeoutMs: 200 }) === n) report.timedOk++;
          f.reset();
          f.call("spin_for", 1000);
        } finally {
          f.close();
        }
      });
      run(() => {
        const calls = 300;
        const got = client.call("call_remote_n", calls);
        if (got !== calls * keys) throw new Error(`call_remote_n(${calls}) = ${got}, not ${calls * keys}`);
        report.remoteLoops++;
      });
    }
  } finally {
    libc.timer_delete(timerId);
    parent?.close();
    client.close();
    store.close();
    sigwinchListener(listener, false);
  }
  report.fired = fired;
  return report;
}

// ------------------------------------------------------------------------------------------
// hygiene

function cycles(name: string, n: number, body: (i: number) => void): CycleReport {
  const errors: string[] = [];
  const earlyAt = Math.max(1, Math.ceil(n / 10));
  let early: Resources | undefined;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    try {
      body(i);
    } catch (e) {
      if (errors.length < 5) errors.push(`cycle ${i}: ${(e as Error).name}: ${(e as Error).message}`);
    }
    if (i + 1 === earlyAt) early = resources();
  }
  const ms = performance.now() - t0;
  return { name, cycles: n, early: early!, end: resources(), ms, errors };
}

function expect(cond: boolean, what: string): void {
  if (!cond) throw new Error(what);
}

/** The ELF linked for window 1 (kvstore) loaded into a window-0 machine fails after setup. */
function expectThrows(fn: () => unknown, name: string): void {
  const o = outcome(fn);
  expect(!o.ok && o.name === name, `expected ${name}, got ${o.ok ? `value ${String(o.value)}` : `${o.name}: ${o.message}`}`);
}

export function hygieneReport(n: number): HygieneReport {
  const spinElf = exampleElf("spin");
  const kvElf = exampleElf("kvstore");
  const callerElf = exampleElf("kvcaller");
  const truncated = exampleElf("add").subarray(0, 200);
  const before = resources();
  const reports: CycleReport[] = [];

  reports.push(cycles("create/call/close", n, (i) => {
    const m = Machine.create({ program: spinElf, name: `cycle-${i}` });
    try {
      expect(m.call("spin_for", i) === i, "spin_for result");
      if (i % 25 === 0) expectThrows(() => m.invoke("spin", [], { timeoutMs: 20 }), "TimeoutError");
    } finally {
      m.close();
    }
  }));

  const parent = Machine.create({ window: 1, program: kvElf, name: "hygiene-parent" });
  try {
    for (let k = 0; k < 20; k++) parent.call("kv_insert", k, k);
    const snap = parent.snapshot();
    reports.push(cycles("fork/call/reset/close", n, (i) => {
      const f = Machine.fork(snap);
      try {
        expect(f.call("kv_insert", 1000 + i, i) === 1, "insert");
        expect(f.call("kv_count") === 21, "count after insert");
        f.reset();
        expect(f.call("kv_count") === 20, "count after reset");
      } finally {
        f.close();
      }
    }));
    reports.push(cycles("fork remote + caller + connect + call + close", Math.ceil(n / 3), (i) => {
      const f = Machine.fork(snap);
      const c = Machine.create({ program: callerElf });
      try {
        const conn = connect(c, f);
        expect(c.call("call_remote_n", 2) === 40, "call_remote_n");
        if (i % 2 === 0) conn.disconnect();
      } finally {
        // Alternate the close order: a remote closing first disconnects its callers.
        if (i % 2 === 0) {
          c.close();
          f.close();
        } else {
          f.close();
          c.close();
        }
      }
    }));
    const owner = Machine.create({ program: spinElf, name: "snapshot-owner" });
    const closedSnap = owner.snapshot();
    owner.close(); // closes the snapshot it owns
    reports.push(cycles("failed creates", n, (i) => {
      switch (i % 4) {
        case 0:
          return expectThrows(() => Machine.create({ program: kvElf }), "GuestMemoryError"); // linked for window 1
        case 1:
          return expectThrows(() => Machine.create({ program: truncated }), "ElfError");
        case 2:
          return expectThrows(() => Machine.fork(closedSnap), "MachineStateError");
        default:
          return expectThrows(() => Machine.create({ program: spinElf, memory: 4 * 1024 * 1024, stackSize: 3 * 1024 * 1024 }), "RangeError");
      }
    }));
  } finally {
    parent.close();
  }
  return { before, cycles: reports, after: resources() };
}

// ------------------------------------------------------------------------------------------

export function lifecycleReport(cycleCount = 300): LifecycleReport {
  return {
    runtime: libc.runtime,
    timeouts: timeoutsReport(),
    reset: resetReport(),
    fork: forkReport(),
    signals: signalsReport(scaled(60, 5)),
    hygiene: hygieneReport(cycleCount),
  };
}

if ((import.meta as ImportMeta & { main?: boolean }).main) {
  const cycleCount = Number(scenarioArgs()[0] ?? "") || 300;
  console.log(JSON.stringify(lifecycleReport(cycleCount)));
}
