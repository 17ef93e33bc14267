/**
 * The two paths of IPRE calls (ConnectOptions.path, docs/ARCHITECTURE.md §3) on Node, Bun and
 * Deno: exits per operation on each (fast: 0 per call; trap: 2), and the same answers, refusals
 * and faults on both. The IPRE suites (remote, adversarial, pointers, recovery) also run once per
 * path; this file compares the paths within one run.
 */
import { expect, it } from "vitest";
import { describeScenario } from "./harness.ts";
import type { Outcome } from "./scenarios/common.ts";
import { fastPathReport, type PathReport } from "./scenarios/fastpath.ts";

/** What must be equal in an error outcome on both paths (a timeout's message carries the time it took). */
function sameError(a: Outcome, b: Outcome, timing = false): void {
  expect(a.ok).toBe(false);
  const pick = (o: Outcome) => ({ name: o.name, classes: o.classes, vector: o.vector, cr2: o.cr2, errorCode: o.errorCode, rip: o.rip, address: o.address, remoteName: o.remoteName, message: timing ? undefined : o.message });
  expect(pick(a)).toEqual(pick(b));
}

describeScenario("IPRE calls on the fast path and on the host's path", { script: "test/scenarios/fastpath.ts", report: fastPathReport, timeoutMs: 120_000 }, (_rt, get) => {
  const both = (): [PathReport, PathReport] => {
    const [fast, trap] = get().paths;
    expect(fast!.path).toBe("fast");
    expect(trap!.path).toBe("trap");
    return [fast!, trap!];
  };

  it("each connection reports its path; the calls give the same results", () => {
    const [fast, trap] = both();
    for (const p of [fast, trap]) {
      expect(p.connPath).toBe(p.path);
      expect(p.loop.result).toBe(p.loop.n * p.loop.calls);
      expect(p.hostcall.result).toBe(3 * 14 + 1);
      expect(p.callback.result).toBe(2 * 20 + 1);
      expect(p.busyThenFree).toBe(2 * p.loop.n);
      expect(p.afterFault.result).toBe(10 * p.loop.n);
      expect(p.afterTimeout.result).toBe(0); // both reset: the store is empty again
    }
  });

  it("exits: 0 per call on the fast path, 2 on the host's path (plus the vmcall's own)", () => {
    const [fast, trap] = both();
    expect(fast.loop.exits).toBe(1);
    expect(fast.oneCall).toBe(1);
    expect(trap.loop.exits).toBe(1 + 2 * trap.loop.calls);
    expect(trap.oneCall).toBe(3);
    // After a fault and after a timeout (and reset) the fast path is back.
    expect(fast.afterFault.exits).toBe(1);
    expect(fast.afterTimeout.exits).toBe(1);
    expect(trap.afterFault.exits).toBe(21);
    expect(trap.afterTimeout.exits).toBe(21);
  });

  it("a call the host must see (a hostcall or a callback inside it) is taken over: one exit fewer than the host's path, the entry", () => {
    const [fast, trap] = both();
    expect(trap.hostcall.exits).toBe(4); // entry, hostcall, return, vmcall end
    expect(fast.hostcall.exits).toBe(trap.hostcall.exits - 1);
    expect(trap.callback.exits).toBe(5); // entry, callback, its return, return, vmcall end
    expect(fast.callback.exits).toBe(trap.callback.exits - 1);
  });

  it("a forged entry, a busy remote, a fault inside the remote, a timeout and a disconnected entry behave identically on both paths", () => {
    const [fast, trap] = both();
    expect(fast.forged.name).toBe("RemoteAccessError");
    expect(fast.forged.message).toContain("is not an allowed entry point");
    sameError(fast.forged, trap.forged);
    sameError(fast.forgedAddress, trap.forgedAddress);
    expect(fast.busy.name).toBe("RemoteAccessError");
    expect(fast.busy.message).toContain("busy");
    sameError(fast.busy, trap.busy);
    expect(fast.fault.classes).toContain("RemoteFault");
    expect(fast.fault.vector).toBe(6);
    sameError(fast.fault, trap.fault);
    expect(fast.timeout.name).toBe("TimeoutError");
    sameError(fast.timeout, trap.timeout, true);
    expect(fast.afterDisconnect.name).toBe("GuestFault");
    expect(fast.afterDisconnect.cr2).toBe(fast.afterDisconnect.rip);
    sameError(fast.afterDisconnect, trap.afterDisconnect);
  });

  it("Machine.onRemoteEntry sees every call: while it is set, calls take the host's path", () => {
    const [fast, trap] = both();
    for (const p of [fast, trap]) {
      expect(p.hooked.entries).toBe(5);
      expect(p.hooked.exits).toBe(11);
    }
    expect(fast.hooked.afterUnhook).toBe(1);
    expect(trap.hooked.afterUnhook).toBe(11);
  });

  it("between two glibc programs the fast path takes no exit either", () => {
    const { linux } = get();
    expect(linux.exits).toBe(1); // the vmcall's end only
  });
});
