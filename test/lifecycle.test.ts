/**
 * Timeouts, reset, fork and resource hygiene on Node (in this vitest process, koffi), Bun and Deno
 * (test/scenarios/lifecycle.ts spawned): the same report, the same assertions.
 */
import { beforeAll, describe, expect, test } from "vitest";
import { runScenario } from "./harness.ts";
import { describeKvm, scaled } from "./kvm.ts";
import type { CycleReport, LifecycleReport, Resources, Timed } from "./scenarios/lifecycle.ts";
import { expectError, expectValue } from "./expect.ts";

const SCENARIO = "test/scenarios/lifecycle.ts";
/** Cycles per hygiene loop (IPRE_SOAK_CYCLES overrides; bench/soak.ts does 10,000). */
const CYCLES = Number(process.env.IPRE_SOAK_CYCLES ?? "") || scaled(300);

type Runtime = "node" | "bun" | "deno";

function expectTimeout(t: Timed, what: string): void {
  expectError(t.outcome, "TimeoutError", what);
  expect(t.errorTimeoutMs, what).toBe(t.timeoutMs);
  expect(t.errorElapsedMs!, what).toBeGreaterThanOrEqual(t.timeoutMs * 0.999);
  // Never early; how late is reported (checkTimeouts prints it), not bounded: a loaded machine
  // may delay the signal, which the code does not control.
  expect(t.elapsedMs, `${what}: elapsed`).toBeGreaterThanOrEqual(t.timeoutMs);
}

/** Only what a leak would grow: fds (by kind) and the guest-memory / vCPU mappings. */
function leakView(r: Resources) {
  return { fds: r.fds, fdKinds: r.fdKinds, memfdMaps: r.memfdMaps, memfdBytes: r.memfdBytes, vcpuMaps: r.vcpuMaps, vcpuBytes: r.vcpuBytes };
}

function checkTimeouts(r: LifecycleReport, runtime: Runtime): void {
  const t = r.timeouts;
  const overshoots = [
    ...t.invoke.map((x) => x.timed),
    t.stateKept.timed,
    t.machineDefault.call,
    t.machineDefault.callBigInt,
    t.machineDefault.override,
    t.forkDefault.call,
    ...t.remote.map((x) => x.timed),
  ].map((x) => `${x.timeoutMs}ms:+${x.overshootMs.toFixed(2)}`);
  console.log(`${runtime} timeout overshoots (ms): ${overshoots.join(" ")}; short timeouts (0.02/0.1/0.5/1/2 ms x${t.short.calls}): p50 +${t.short.p50OvershootMs.toFixed(3)} max +${t.short.maxOvershootMs.toFixed(2)}`);

  // invoke("spin", [], { timeoutMs: 100 }), and the same machine works afterwards (vCPU reboot).
  expect(t.invoke).toHaveLength(3);
  t.invoke.forEach((x, i) => {
    expectTimeout(x.timed, `invoke #${i}`);
    expect(x.timed.outcome.message).toContain("spinner");
    expectValue(x.after, 1000, `spin_for after timeout #${i}`);
  });
  // A timeout reboots the vCPU only: guest memory is kept.
  expectValue(t.stateKept.before, 25, "kv_count before");
  expectTimeout(t.stateKept.timed, "remote_spin called directly");
  expectValue(t.stateKept.after, 50, "kv_lookup(25) after the timeout");

  // Machine default, per-call override, fork option.
  expect(t.machineDefault.timeoutMs).toBe(100);
  expectTimeout(t.machineDefault.call, "call() with the machine default");
  expectTimeout(t.machineDefault.callBigInt, "callBigInt() with the machine default");
  expect(t.machineDefault.override.timeoutMs).toBe(50);
  expectTimeout(t.machineDefault.override, "invoke() overriding the default");
  expectValue(t.machineDefault.after, 100, "call after default timeouts");
  expectTimeout(t.forkDefault.call, "fork with timeoutMs");
  expectValue(t.forkDefault.after, 7, "fork after its timeout");

  // Many short timeouts: each one stopped by its own timer (none rescued by the guard timer).
  expect(t.short.calls).toBe(1500);
  expect(t.short.timeouts).toBe(t.short.calls);
  expect(t.short.other).toEqual([]);
  expect(t.short.late, `timeouts that did not fire (rescued by the guard timer 2 s later): ${JSON.stringify(t.short.late.slice(0, 5))}`).toEqual([]);
  expectValue(t.short.after, 1000, "spin_for after 1500 short timeouts");

  // No stale signal: timed calls just above their runtime, then short and long untimed calls.
  const s = t.stale;
  expect(s.wrong).toEqual([]);
  expect(s.premature).toBe(0);
  expect(s.ok + s.timeouts).toBe(s.calls);
  expect(s.pendingAfter).toBe(0);
  expect(s.longTimeout).toEqual({ calls: 200, ok: 200, pendingAfter: 0 });
  expect(s.untimedLong.outcome.ok).toBe(true);
  expect(s.timedLong.outcome.ok).toBe(true);
  expect(s.shortExits, "a short call after all that takes exactly one exit (no EINTR from a stale signal)").toBe(1);
  expect(s.untimedLong.exits).toBeLessThanOrEqual(2);
  expect(s.timedLong.exits).toBeLessThanOrEqual(2);
}

function checkRemoteTimeouts(r: LifecycleReport): void {
  expect(r.timeouts.remote.map((x) => x.first)).toEqual(["caller", "remote"]);
  for (const round of r.timeouts.remote) {
    const w = `remote timeout, ${round.first} reset first`;
    expectTimeout(round.timed, w);
    expect(round.timed.outcome.message).toMatch(/remote call from caller into kv/);
    expect(round.callerNeedsReset).toMatch(/timeout/);
    expect(round.remoteNeedsReset).toMatch(/timeout/);
    expect(round.otherNeedsReset).toBeUndefined();
    expectError(round.callerLocal, "MachineStateError", `${w}: caller's own code`);
    expectError(round.callerIntoRemote, "MachineStateError", `${w}: caller into remote`);
    expectError(round.remoteDirect, "MachineStateError", `${w}: remote called directly`);
    expectValue(round.otherLocal, 0, `${w}: another caller's own code`);
    expectError(round.otherIntoRemote, "MachineStateError", `${w}: another caller entering the remote stopped mid-function`);

    expect(round.afterFirstReset.resetOutcome.ok).toBe(true);
    if (round.first === "caller") {
      expectValue(round.afterFirstReset.firstLocal, 0, `${w}: caller after its reset`);
      expectError(round.afterFirstReset.secondDirect, "MachineStateError", `${w}: remote not reset yet`);
      expectError(round.afterFirstReset.callerIntoRemote, "MachineStateError", `${w}: reset caller entering the remote that is not reset`);
    } else {
      expectValue(round.afterFirstReset.firstLocal, round.expectedCount, `${w}: remote after its reset`);
      expectError(round.afterFirstReset.secondDirect, "MachineStateError", `${w}: caller not reset yet`);
      expectError(round.afterFirstReset.callerIntoRemote, "MachineStateError", `${w}: caller not reset yet, into remote`);
    }
    const b = round.afterBothResets;
    expect(b.resetOutcome.ok).toBe(true);
    expectValue(b.remoteCount, round.expectedCount, `${w}: remote count at its snapshot`);
    expectValue(b.callerIntoRemote, 2 * round.expectedCount, `${w}: call_remote_n(2)`);
    expectValue(b.fill, 5, `${w}: fill(15) adds 5`);
    expectValue(b.remoteCountAfterFill, 15, `${w}: remote count after fill`);
    expectValue(b.otherIntoRemote, 15, `${w}: the other caller sees the same remote`);
  }
}

function checkReset(r: LifecycleReport): void {
  const x = r.reset;
  expect(x.countAtSnapshot).toBe(50);
  expect(x.rounds).toEqual([0, 1, 2].map((i) => ({ mutated: 150 + i, lookupNew: 360, afterReset: 50, lookupNewAfter: -1, lookupOld: 21 })));
  expect(x.memory.original).toEqual(new Array(16).fill(0));
  expect(x.memory.written).not.toEqual(x.memory.original);
  expect(x.memory.afterReset).toEqual(x.memory.original);
  expect(x.memory.marker).toEqual({ before: "0x1234", written: "0xdeadbeef", afterReset: "0x1234" });
  expect(x.memory.pagesDiffering).toBe(0);
  expect(x.preSnapshotWrite.afterReset).toEqual(x.preSnapshotWrite.expected);
  expect(x.secondSnapshot).toEqual({ atSecond: 60, mutated: 70, afterReset: 60 });
  expect(x.afterFault.fault).toMatchObject({ ok: false, name: "GuestFault", vector: 0 });
  expect(x.afterFault.reset.ok).toBe(true);
  expectValue(x.afterFault.ok, 7, "ok() after fault + reset");
  expectError(x.afterTimeout.timeout, "TimeoutError", "timeout before reset");
  expect(x.afterTimeout.reset.ok).toBe(true);
  expectValue(x.afterTimeout.after, 5, "call after timeout + reset");
  // Without snapshot(): back to the state right after load().
  const n = x.noSnapshot;
  expectValue(n.countBefore, 20, "kv_count after 20 inserts");
  expect(n.reset).toMatchObject({ ok: true });
  expectValue(n.countAfter, 0, "kv_count after reset to the load() baseline");
  expectValue(n.lookupAfter, -1, "kv_lookup(3) after reset");
  expect(n.markerAfter, "the .data marker as loaded").toBe("0x1234");
  expect(n.hostWriteAfter, "a host write after load() is dropped").toEqual([0, 0, 0]);
  expectValue(n.reload, 42, "a second load() (flat add)");
  expect(n.resetAfterReload).toMatchObject({ ok: true });
  expectValue(n.addAfterReset, 3, "the second program survives reset (it is in the baseline)");
  expectError(n.timeout, "TimeoutError", "timeout without a snapshot");
  expect(n.resetAfterTimeout).toMatchObject({ ok: true });
  expectValue(n.addAfterTimeout, 11, "call after timeout + reset without a snapshot");
  expectError(x.closed, "MachineStateError", "reset of a closed machine");
  // protect() after the snapshot: the fork of that snapshot has the snapshot's permissions.
  // (The reset machine keeps the runtime area, page tables included: reported, not asserted.)
  expect(x.protectAfterSnapshot.beforeReset).toMatchObject({ ok: false, name: "GuestFault", vector: 14 });
  expectValue(x.protectAfterSnapshot.fork, 7, "fork of the snapshot taken before protect()");
}

function checkFork(r: LifecycleReport): void {
  const f = r.fork;
  expect(f.countAtSnapshot).toBe(50);
  expectValue(f.fork.count, 50, "fork sees the snapshot");
  expectValue(f.fork.lookup7, 71, "fork lookup");
  expect(f.fork).toMatchObject({ window: 1, memorySize: 32 * 1024 * 1024, sameSymbol: true, name: "kv-fork-1" });
  expect(f.isolation).toEqual({ forkCount: 60, parentCount: 55, forkLookupParentKey: -1, parentLookupForkKey: -1 });
  expect(f.hostWrites).toEqual({ forkWroteParentSees: [0, 0, 0, 0], parentWroteForkSees: [0, 0, 0, 0], forkSeesOwn: [1, 2, 3, 4], parentSeesOwn: [5, 6, 7, 8] });
  expect(f.lateFork.count).toBe(50);
  expect(f.forkReset.count).toBe(50);
  expectValue(f.asRemote.fill, 20, "caller fill(70) into the fork");
  expectValue(f.asRemote.forkCount, 70, "fork count after fill");
  expectValue(f.asRemote.parentCount, 55, "parent untouched by the fork's caller");
  expectValue(f.scaled.fill, 10, "second caller fill(60) into the second fork");
  expectValue(f.scaled.fork2Count, 60, "second fork count");
  expectValue(f.scaled.fork1Count, 70, "first fork count");
  expectValue(f.scaled.c1Serve65, 651, "caller 1 serve(65)");
  expectValue(f.scaled.c2Serve65, -1, "caller 2 serve(65): not in its fork");
  expectValue(f.scaled.c2Serve55, 551, "caller 2 serve(55)");
  const c = f.callerFork;
  expect(c.missesAtSnapshot).toBe(1);
  expectValue(c.misses, 1, "caller fork keeps the caller's memory");
  expect(c.beforeConnect).toMatchObject({ ok: false, name: "GuestFault", vector: 14, cr2: 0x404001c0 });
  expect(c.beforeConnect.errorCode! & 0x10).toBe(0x10); // instruction fetch: the remote is not mapped
  expectValue(c.afterConnect, 60, "caller fork calls its remote after connect");
  expectValue(c.cachedServe65, 651, "served from the snapshotted cache");
  expectValue(c.serve55, 551, "cache miss goes to the remote");
  expectValue(c.missesAfter, 2, "one more miss");
  expectError(f.closedSnapshot.fork, "MachineStateError", "fork of a closed snapshot");
  expectValue(f.closedSnapshot.existing, 60, "existing fork after snapshot.close()");
  expectValue(f.closedSnapshot.existingReset, 50, "existing fork resets after snapshot.close()");
  expect(f.many).toEqual([55, 56, 57, 58, 59, 60, 61, 62]);
  expectValue(f.parentClosed.count, 58, "fork after its parent closed");
  expectValue(f.parentClosed.reset, 55, "fork resets after its parent closed");
}

function checkSignals(r: LifecycleReport, runtime: Runtime): void {
  const x = r.signals;
  console.log(`${runtime} SIGWINCH every ${x.periodMs} ms over ${x.cycles} create/fork cycles: ${x.failures} failures ${JSON.stringify(x.messages)}`);
  expect(x.cycles).toBe(2 * scaled(60, 5));
  expect(x.messages, "errors while unrelated signals arrived").toEqual([]);
  expect(x.failures).toBe(0);
  expect(x.timedOk).toBe(x.cycles);
  expect(x.remoteLoops).toBe(x.cycles / 2); // 300 fast-path remote calls per cycle, each loop's sum right
}

function checkHygiene(r: LifecycleReport, runtime: Runtime): void {
  const h = r.hygiene;
  const names = ["create/call/close", "fork/call/reset/close", "fork remote + caller + connect + call + close", "failed creates"];
  expect(h.cycles.map((c) => c.name)).toEqual(names);
  const line = (c: CycleReport) =>
    `${c.name} x${c.cycles} ${c.ms.toFixed(0)} ms: fds ${c.early.fds}->${c.end.fds}, memfd maps ${c.early.memfdMaps}->${c.end.memfdMaps} (${c.end.memfdBytes} B), vcpu maps ${c.early.vcpuMaps}->${c.end.vcpuMaps}, anon ${(c.early.anonBytes / 2 ** 20).toFixed(1)}->${(c.end.anonBytes / 2 ** 20).toFixed(1)} MiB (info)`;
  console.log(`${runtime} hygiene:\n  ${h.cycles.map(line).join("\n  ")}`);
  for (const c of h.cycles) {
    expect(c.errors, c.name).toEqual([]);
    expect(c.cycles).toBe(c.name.startsWith("fork remote") ? Math.ceil(CYCLES / 3) : CYCLES);
    expect(leakView(c.end), `${c.name}: end vs after 10% of the cycles`).toEqual(leakView(c.early));
  }
  // Nothing of ipre is open before and after the loops (all machines closed).
  for (const s of [h.before, h.after]) {
    expect(s.fdKinds).toMatchObject({ "/dev/kvm": 0, "kvm-vm": 0, "kvm-vcpu": 0, "memfd:ipre": 0 });
    expect(s.memfdMaps + s.vcpuMaps).toBe(0);
  }
  expect(h.after.fds).toBe(h.before.fds);
  // During the fork loops only the parent (guest memory mapping + memfd of its snapshot) is open.
  const fork = h.cycles[1]!.end;
  expect(fork.fdKinds).toMatchObject({ "/dev/kvm": 1, "kvm-vm": 1, "kvm-vcpu": 1, "memfd:ipre": 1 });
  expect(fork.memfdMaps).toBe(1);
  expect(fork.vcpuMaps).toBe(1);
}

function checkAll(get: () => LifecycleReport, runtime: Runtime): void {
  test("report comes from the right runtime", () => expect(get().runtime).toBe(runtime));
  test("timeouts: invoke, machine default, fork option, short timeouts, no stale signal", () => checkTimeouts(get(), runtime));
  test("timeouts inside a remote call: caller and remote refuse calls until both are reset", () => checkRemoteTimeouts(get()));
  test("reset: kvstore state, host writes, second snapshot, after fault/timeout, no snapshot", () => checkReset(get()));
  test("fork: isolation, as a remote, horizontal scaling, fork of a caller, closed snapshot/parent", () => checkFork(get()));
  test("unrelated signals (SIGWINCH with a listener, every 2 ms) do not break create, fork, calls, protect, reset", () => checkSignals(get(), runtime));
  test(`resource hygiene over ${CYCLES} cycles: fds and guest mappings stay flat`, () => checkHygiene(get(), runtime));
}

describeKvm("lifecycle", () => {
  describe("on Node (koffi, in this process)", () => {
    let report: LifecycleReport;
    beforeAll(async () => {
      const { lifecycleReport } = await import("./scenarios/lifecycle.ts");
      report = lifecycleReport(CYCLES);
    });
    checkAll(() => report, "node");
  });

  describe.each(["bun", "deno"] as const)("on %s", (runtime) => {
    let report: LifecycleReport;
    beforeAll(async () => {
      const res = await runScenario(runtime, SCENARIO, [String(CYCLES)], { timeoutMs: 150_000 });
      if (res.code !== 0 || res.json === undefined) throw new Error(`${runtime} exited ${res.code}\n${res.stderr}\n${res.stdout.slice(-2000)}`);
      if (res.stderr) console.log(`${runtime} stderr: ${res.stderr}`);
      report = res.json as LifecycleReport;
    });
    checkAll(() => report, runtime);
  });
});
