/**
 * After a TimeoutError (in caller code, remote code or a callback), a GuestFault, a RemoteFault or
 * a GuestCrash (of either machine), each of close(), disconnect(), protect(), reset() and
 * snapshot() returns (no hang) with success or a typed error, and both machines are usable again
 * or cleanly closed. Connected and unconnected machines, the API on either side, on Node, Bun and
 * Deno. test/scenarios/recovery.ts runs as a child process per runtime with its own time limit.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { CALL_PATHS, callPathEnv, runScenario, RUNTIMES, type Runtime } from "./harness.ts";
import { describeKvm, upperMs } from "./kvm.ts";
import { expectError, expectValue } from "./expect.ts";
import { APIS, CONNECTED_ONLY, FAULTS, FAULT_CLASS, type Combo, type RecoveryReport } from "./scenarios/recovery.ts";

const SCENARIO = "test/scenarios/recovery.ts";
/** An API that needs more than this after a fault is treated as a hang (it is microseconds natively). */
const API_LIMIT_MS = upperMs(1000);
const CHILD_LIMIT_MS = 120_000;

/** The combinations the scenario must report, in its order. */
function expectedCombos(): string[] {
  const out: string[] = [];
  for (const connected of [false, true]) {
    for (const fault of FAULTS) {
      if (!connected && CONNECTED_ONLY.has(fault)) continue;
      for (const api of APIS) {
        for (const side of ["caller", "remote"]) {
          if (api === "disconnect" && (!connected || side === "remote")) continue;
          if (!connected && side === "remote") continue;
          out.push(`${fault}/${api}/${side}/${connected ? "connected" : "unconnected"}`);
        }
      }
    }
  }
  return out;
}
const key = (c: Combo) => `${c.fault}/${c.api}/${c.side}/${c.connected ? "connected" : "unconnected"}`;
const EXPECTED = expectedCombos();

function checkCombo(c: Combo): void {
  const what = key(c);
  expectError(c.trigger, FAULT_CLASS[c.fault], `${what}: the fault`);
  if (c.fault === "GuestFault") expect(c.trigger.classes, what).not.toContain("RemoteFault");
  // A timeout inside a remote call (remote code or a callback) leaves both machines needing a reset.
  const insideCall = c.fault === "timeout in remote code" || c.fault === "timeout in a callback";
  expect(c.needsReset, what).toEqual({ caller: insideCall, remote: insideCall });
  expect(c.apiMs, `${what}: the API took ${c.apiMs.toFixed(1)} ms`).toBeLessThan(API_LIMIT_MS);

  const target = c.side === "caller" ? "caller" : "remote";
  const mustResetFirst = insideCall && c.api === "snapshot";
  if (mustResetFirst) {
    // A state torn by a timeout mid-call is not snapshotted: the documented answer is reset().
    expectError(c.result, "MachineStateError", what);
    expect(c.result.message, what).toContain("must be reset");
  } else {
    expect(c.result, `${what}: ${JSON.stringify(c.result)}`).toMatchObject({ ok: true });
  }
  if (c.api === "protect" && c.result.ok) expect(c.result.value, what).toBe("--");
  expect(c.closed, what).toBe(c.api === "close");

  // Usable afterwards: every machine that is not closed works (after a reset where it asks for one).
  if (c.api === "close" && target === "caller") expect(c.callerAfter, what).toBeNull();
  else expectValue(c.callerAfter!, 42, `${what}: the caller afterwards`);
  if (c.api === "close" && target === "remote") expect(c.remoteAfter, what).toBeNull();
  else expectValue(c.remoteAfter!, 70, `${what}: the remote afterwards`);
  // The connection survives everything but close and disconnect (reset included).
  if (!c.connected || c.api === "close" || c.api === "disconnect") expect(c.ipreAfter, what).toBeNull();
  else expectValue(c.ipreAfter!, 90, `${what}: an IPRE call afterwards`);
}

for (const path of CALL_PATHS) describeKvm(`recovery after timeouts, faults and crashes (${path} path)`, () => {
  const reports = new Map<Runtime, RecoveryReport | Error>();
  beforeAll(async () => {
    // One runtime at a time: each is timing-sensitive (30 ms timeouts), and a hang in one must not hide the others.
    for (const rt of RUNTIMES) {
      const res = await runScenario(rt, SCENARIO, [], { timeoutMs: CHILD_LIMIT_MS, env: callPathEnv(path) });
      const last = res.stderr.trimEnd().split("\n").filter((l) => l.startsWith("recovery: ")).pop();
      reports.set(rt, res.code === 0 && res.json ? (res.json as RecoveryReport) : new Error(`${rt}: scenario exited ${res.code} (last combination started: ${last ?? "none"})\n${res.stderr.slice(-3000)}`));
    }
    console.log(`recovery: ${RUNTIMES.map((rt) => { const r = reports.get(rt); return `${rt} ${r instanceof Error ? "failed" : `${r!.combos.length} combinations`}`; }).join(", ")}`);
  }, upperMs(CHILD_LIMIT_MS) * RUNTIMES.length + 10_000);

  const report = (rt: Runtime): RecoveryReport => {
    const r = reports.get(rt);
    if (r instanceof Error || r === undefined) throw r ?? new Error(`no ${rt} report`);
    return r;
  };

  describe.each(RUNTIMES)("%s", (rt) => {
    it(`reports all ${EXPECTED.length} combinations of fault × API × side × connected`, () => {
      expect(report(rt).runtime).toBe(rt);
      expect(report(rt).combos.map(key)).toEqual(EXPECTED);
    });
    it.each(EXPECTED)("%s: no hang, success or a typed error, both machines usable or closed", (name) => {
      const c = report(rt).combos.find((x) => key(x) === name);
      expect(c, name).toBeDefined();
      checkCombo(c!);
    });
    it("a remote-call pair that timed out, with no snapshot, works again after reset() of both, still connected", () => {
      const p = report(rt).pair;
      expectError(p.timeout, "TimeoutError");
      expectError(p.refusedBefore, "MachineStateError");
      expect(p.refusedBefore.message).toContain("must be reset");
      expect(p.resetCaller).toMatchObject({ ok: true });
      expect(p.resetRemote).toMatchObject({ ok: true });
      // Back to the state right after load(): the insert made before the timeout is gone.
      expectValue(p.ipre, [-1, 1, 20]);
      expect(p.connected).toBe(true);
    });
    it("a ring-0 runtime that never parks is a GuestCrash after serviceRunLimitMs, not a hang; the machine recovers", () => {
      const w = report(rt).serviceWatchdog;
      expectError(w.run, "GuestCrash");
      expect(w.run.message).toContain(`did not park within ${w.limitMs} ms`);
      expect(w.elapsedMs).toBeGreaterThanOrEqual(w.limitMs * 0.999);
      expect(w.elapsedMs).toBeLessThan(w.limitMs + upperMs(500));
      expectValue(w.after, 42, "a call after the stuck service run (vCPU rebooted, runtime rewritten)");
      expectValue(w.protect, "ok", "protect() and service runs afterwards");
      expectValue(w.close, true, "close()");
    });
    it("leaks nothing: fds and guest mappings are the same before and after all combinations", () => {
      const { before, after } = report(rt);
      expect({ fds: after.fds, kinds: after.fdKinds, maps: after.memfdMaps, vcpu: after.vcpuMaps }).toEqual({ fds: before.fds, kinds: before.fdKinds, maps: before.memfdMaps, vcpu: before.vcpuMaps });
    });
  });
});
