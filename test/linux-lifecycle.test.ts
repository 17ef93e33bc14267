/**
 * Linux programs that serve calls, and IPRE between two of them (test/scenarios/linux-lifecycle.ts)
 * on Node (in this vitest process), Bun and Deno: Machine.create({ program }) runs main() to
 * ipre_wait_for_requests(); call() uses the program's libc (heap, TLS, errno, stdout); reset()
 * and fork() return to / start from that state; exit or abort inside a call is a typed error and
 * the machine stays usable (after reset() for an abort). Over IPRE the remote's heap, TLS, errno
 * and output are the remote's, ipre_remote() finds only allowed functions, and an abort in the
 * remote is a RemoteFault with its message, after which both machines work again once reset.
 */
import { expect, it } from "vitest";
import { describeScenario } from "./harness.ts";
import { lifecycleReport } from "./scenarios/linux-lifecycle.ts";

/** sum(i % 256) for i < n: what counter_heap(n) computes in the guest. */
const heapSum = (n: number) => {
  let s = 0;
  for (let i = 0; i < n; i++) s += i % 256;
  return s;
};

const CALLER_OUT = (found: string) =>
  [
    `caller: found the remote at ${found}`,
    "caller: total 15, remote calls 7",
    "caller: remote errno 9, mine 1234",
    `caller: remote heap sums ${heapSum(1000)} ${heapSum(300_000)}`,
    "caller: the remote printed 7 lines",
    "caller: ok",
    "",
  ].join("\n");
const REMOTE_OUT = ["add 100", "add 1", "add 2", "add 3", "add 4", "add 5", "a caller string of 54 characters, on the caller's stack", "total 15", ""].join("\n");

describeScenario("linux: programs that wait for requests, and IPRE between Linux programs", { script: "test/scenarios/linux-lifecycle.ts", report: lifecycleReport, timeoutMs: 180_000 }, (rt, get) => {
    it("create() runs main() to ipre_wait_for_requests(); calls use the program's libc", () => {
      const r = get();
      expect(r.runtime).toBe(rt);
      expect(r.created).toEqual({ phase: "waiting", stdout: "counter: ready\n" });
      // main counted one call and added 100 (then zeroed the total)
      expect(r.calls).toEqual({ add5: 5, add7: 12, calls: 4, errno: 9, heapSmall: heapSum(1000), heapBig: heapSum(300_000), keep: 13, dump: 4 });
      expect(r.callStdout).toBe("add 100\nadd 5\nadd 7\nfrom the host\ntotal 12\n");
    });

    it("reset() returns to the waiting state, fork() starts from a snapshot with its own output", () => {
      const r = get();
      expect(r.afterReset).toEqual({ calls: 2, add: 1, dump: 2 });
      expect(r.afterResetStdout).toBe("add 100\nadd 1\ntotal 1\n");
      expect(r.fork).toEqual({ calls: 4, add: 1012, parentCalls: 4, stdout: "add 100\nadd 5\nadd 7\nfrom the host\nadd 1000\ntotal 1012\n" });
    });

    it("exit() inside a call is a LinuxProgramError and needs reset(); abort() too, with its message; then the machine works", () => {
      const r = get();
      expect(r.exitInCall).toMatchObject({ name: "LinuxProgramError" });
      expect((r.exitInCall as { message: string }).message).toContain("exit_group(3) inside a call");
      expect(r.exitNeedsReset).toContain("exit_group(3) inside a call");
      expect(r.afterExitInCall).toBe(2); // after reset(): main's state again
      expect(r.abortInCall).toMatchObject({ name: "LinuxProgramError", signal: 6 });
      expect((r.abortInCall as { message: string }).message).toContain("counter: boom");
      expect(r.afterAbort).toBe(2);
    });

    it("IPRE between Linux programs: ipre_remote(), the remote's heap, TLS, errno and stdout stay the remote's", () => {
      const r = get();
      expect(r.ipre.error).toBeUndefined();
      const found = /found the remote at (0x[0-9a-f]+)/.exec(r.ipre.stdout)?.[1] ?? "?";
      expect(Number(found)).toBeGreaterThanOrEqual(0x4040_0000); // window 1
      expect(r.ipre.stdout).toBe(CALLER_OUT(found));
      expect(r.ipre.stderr).toBe("");
      expect(r.ipre.exitCode).toBe(0);
      expect(r.ipre.remoteStdout).toBe(REMOTE_OUT); // printed by the remote's printf, to the remote's sink
      expect(r.ipre.remoteCalls).toBe(7); // the remote's TLS counter: main's 2 + 5 from the caller
    });

    it("abort() in the remote is a RemoteFault with the remote's message; both work again after reset()", () => {
      const r = get();
      expect(r.ipreAbort.error).toMatchObject({ name: "RemoteFault", signal: 6, remoteName: "machine@1", output: "counter: the caller asked for it\n" });
      expect((r.ipreAbort.error as { message: string }).message).toContain("counter: the caller asked for it");
      expect(r.ipreAbort.remoteNeedsReset).toContain("signal 6");
      expect(r.ipreAbort.callerStdout).toContain("the remote printed 7 lines");
      const found = /found the remote at (0x[0-9a-f]+)/.exec(r.ipreAgain.stdout)?.[1] ?? "?";
      expect(r.ipreAgain).toEqual({ exitCode: 0, stdout: CALLER_OUT(found), remoteStdout: REMOTE_OUT, stderr: "" });
    });
});
