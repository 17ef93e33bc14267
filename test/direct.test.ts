/**
 * Direct calls from JS (`Connection.call`) on Node, Bun and Deno against the real /dev/kvm: a
 * remote's allowed function runs on the caller machine's vCPU with one exit (the exit trap), and
 * behaves like a guest-made remote call in everything else (test/scenarios/direct.ts: kvcaller
 * and kvstore, a flat remote for forged returns, counter.elf for a Linux remote); and from
 * Workers through attached Remotes (test/scenarios/direct-share.ts). Exit counts are exact.
 */
import { expect, it } from "vitest";
import { describeScenario, RUNTIMES, runScenario, type Runtime } from "./harness.ts";
import { describeKvm, scaled, upperMs } from "./kvm.ts";
import type { Outcome } from "./scenarios/common.ts";
import { DIRECT_LOOP, directReport, type DirectReport } from "./scenarios/direct.ts";
import type { directShareReport } from "./scenarios/direct-share.ts";
import { expectError, expectValue } from "./expect.ts";

const SEED = Number(process.env.IPRE_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
const seedOf = (rt: Runtime) => (SEED + 40 + RUNTIMES.indexOf(rt)) >>> 0;
const GIB = 2 ** 30;
/** kvstore.c's remote_hostcall handler in the scenario: x * 3 + 1. */
const handler = (x: number) => x * 3 + 1;

/** A call that returned `value` with exactly `exits` exits of the caller. */
function expectCounted(c: { outcome: Outcome; exits: number }, value: unknown, exits: number, what = ""): void {
  expectValue(c.outcome, value, what);
  expect(c.exits, what).toBe(exits);
}

/** The same error, field by field, from a direct and a guest-made call (the stack pointer aside). */
function expectSameError(direct: Outcome, guest: Outcome): void {
  const { message: _m, ...d } = direct;
  const { message: _g, ...g } = guest;
  expect(d).toEqual(g);
  expect(direct.message).toBe(guest.message);
}

/** A #PF of caller code reading an address that is not mapped (the remote, outside calls). */
function expectUnreachable(o: Outcome, address: number): void {
  expectError(o, "GuestFault");
  expect(o.classes).not.toContain("RemoteFault");
  expect(o.vector).toBe(14);
  expect(o.cr2).toBe(address);
  expect(o.errorCode! & 0x17).toBe(4); // not present, read, user, no fetch
}

/** The caller's fetch #PF at one of its traps: a forged return refused. */
function expectTrapFault(o: Outcome, trap: number): void {
  expectError(o, "GuestFault");
  expect(o.classes).not.toContain("RemoteFault");
  expect(o.vector).toBe(14);
  expect(o.rip).toBe(trap);
  expect(o.cr2).toBe(trap);
  expect(o.errorCode! & 0x10).toBe(0x10);
}

describeScenario<DirectReport>(
  "direct calls from JS into a remote (Connection.call) on Node, Bun and Deno",
  { script: "test/scenarios/direct.ts", report: () => directReport(seedOf("node")), args: (rt) => [String(seedOf(rt))], timeoutMs: 60_000 },
  (rt, get) => {
    it("runs the scenario with its seed", () => {
      expect(get().runtime).toBe(rt);
      expect(get().seed).toBe(seedOf(rt));
    });

    it("results are the remote's, one exit per direct call (by name and by address, number and bigint)", () => {
      const r = get();
      for (const c of r.inserts) expectCounted(c, 1, 1);
      r.lookups.forEach((c, i) => expectCounted(c, r.keys[i]! * 10 + 1, 1));
      expectCounted(r.absent, -1, 1);
      expect(r.loop).toEqual({ n: DIRECT_LOOP, wrong: 0, exits: DIRECT_LOOP });
      expectCounted(r.count.direct, r.keys.length, 1);
      expect(r.count.byOwner).toBe(r.keys.length);
      expectCounted(r.big, "-1n", 1);
      expectCounted(r.invoked, r.keys[0]! * 10 + 1, 1);
      // A guest-made call (a miss of kvcaller's cache: a vmcall, the remote call on the fast path) and a direct one mix.
      expectCounted(r.mixed.serve, r.keys[1]! * 10 + 1, 1);
      expectCounted(r.mixed.direct, r.keys[1]! * 10 + 1, 1);
    });

    it("arguments: bytes copied to the caller's stack, caller buffers read and written in place", () => {
      const r = get();
      let h = 2166136261;
      for (const b of r.checksum.bytes) h = Math.imul(h ^ b, 16777619) >>> 0;
      expectCounted(r.checksum.direct, h, 1);
      expectValue(r.checksum.guest, h);
      const sum = r.sum64.words.reduce((a, w) => BigInt.asUintN(64, a + BigInt(w)), 0n);
      expectCounted(r.sum64.direct, `${sum}`, 1);
      expectValue(r.sum64.guest, `${sum}`);
      const scaledVec = r.vecScale.vector.map((v) => v * r.vecScale.k);
      expectCounted(r.vecScale.direct, scaledVec.reduce((a, v) => a + v, 0), 1);
      expect(r.vecScale.after).toEqual(scaledVec);
    });

    it("entries outside the allow-list are refused like a guest-made call's, before anything runs", () => {
      const { allow, sym } = get();
      for (const c of [allow.secret, allow.secretByAddress]) {
        expectError(c.outcome, "RemoteAccessError");
        expect(c.outcome.address).toBe(sym.kv_secret);
        expect(c.exits).toBe(0);
        expectSameError(c.outcome, allow.guestSecret);
      }
      expectError(allow.notInRemote.outcome, "RemoteAccessError"); // caller code is no entry of the remote
      expect(allow.notInRemote.exits).toBe(0);
      expectError(allow.noSymbol, "IpreError");
      expect(allow.noSymbol.message).toContain("no_such_function");
      expectError(allow.narrowed, "RemoteAccessError"); // allow: ["kv_lookup"]
      expect(allow.narrowed.address).toBe(sym.kv_insert);
      expectValue(allow.narrowedOk, get().keys[0]! * 10 + 1);
      expectError(allow.tooManyArgs, "RangeError");
      expectCounted(allow.after, get().keys[0]! * 10 + 1, 1);
    });

    it("hostcalls of the remote run its handlers (2 exits); a busy remote refuses a direct call like a guest-made one", () => {
      const { hostcall, busy } = get();
      expectCounted(hostcall.direct, handler(hostcall.x), 2);
      expectCounted(hostcall.guest, handler(hostcall.x), 3); // the hostcall, the return (the host took the call over), the vmcall's end
      expect(hostcall.handlerCalls).toBe(2);
      expectCounted(busy.call, handler(-1), 2);
      expect(busy.inside).not.toBeNull();
      const inside = busy.inside!;
      expect(inside.busy).toBe("kvcaller");
      expectError(inside.otherDirect, "RemoteAccessError");
      expect(inside.otherDirect.message).toMatch(/busy with a call from kvcaller/);
      expectSameError(inside.otherDirect, inside.otherGuest);
      expectError(inside.ownDirect, "MachineStateError"); // the caller itself is running that call
      expect(busy.busyAfter).toBeNull();
      expectValue(busy.otherAfter, get().keys[0]! * 10 + 1);
    });

    it("a callback into caller code runs unmerged and returns (3 exits)", () => {
      const { callback } = get();
      expectCounted(callback.direct, 2 * callback.x + 1, 3);
      expectCounted(callback.guest, 2 * callback.x + 1, 4); // the callback, its return, the return, the vmcall's end
    });

    it("a fault inside the remote is the same RemoteFault as a guest-made call's; both machines work afterwards", () => {
      const { fault, keys } = get();
      expectError(fault.direct.outcome, "RemoteFault");
      expect(fault.direct.outcome.vector).toBe(6);
      expect(fault.direct.outcome.rip).toBeGreaterThanOrEqual(GIB);
      expect(fault.direct.outcome.rip).toBeLessThan(2 * GIB);
      expect(fault.direct.outcome.remoteName).toBe("kvstore");
      expect(fault.direct.exits).toBe(1);
      expectSameError(fault.direct.outcome, fault.guest.outcome);
      expect(fault.busyAfter).toBeNull();
      expect(fault.inRemoteCallAfter).toBe(false);
      expectValue(fault.directAfter, keys[2]! * 10 + 1);
      expectValue(fault.guestAfter, keys[3]! * 10 + 1);
      expectValue(fault.ownerAfter, keys[2]! * 10 + 1);
    });

    it("after a direct call caller code cannot reach remote memory", () => {
      const { isolation, sym } = get();
      expectUnreachable(isolation.readData, sym.kv_data_marker);
      expectUnreachable(isolation.readCode, sym.kv_lookup);
      expectError(isolation.callSecret, "RemoteAccessError");
      expect(isolation.busyAfter).toBeNull();
    });

    it("the remote runs with its FSBASE, and the caller's next code with its own", () => {
      const { fsbase } = get();
      expect(fsbase.caller).not.toBe(fsbase.remote);
      expectCounted(fsbase.direct, fsbase.remote, 1);
      expect(fsbase.trip).toEqual([fsbase.caller, fsbase.remote, fsbase.caller]);
    });

    it("forged returns are refused: a wrong stack at the exit trap, a jump to the return trap", () => {
      const { forged } = get();
      expectCounted(forged.ok, 7, 1);
      expectValue(forged.okGuest, 7);
      expectTrapFault(forged.rsp.outcome, forged.exitTrap);
      expect(forged.rsp.exits).toBe(1);
      // A guest-made call (a vmcall at the remote's address, return address the exit trap) with the
      // same forged return: the fast path leaves the return address in place, so the fetch that
      // exits is where the remote went; the host's path put its return trap there instead.
      expectTrapFault(forged.rspGuest, forged.exitTrap);
      expectTrapFault(forged.rspGuestHostPath.outcome, forged.returnTrap);
      expectValue(forged.rspGuestHostPath.ok, 7);
      // A `ret` (RSP as a real return leaves it) into the remote's own no-execute memory: the
      // remote's fault on both paths, not a return; the remote works after its reset.
      for (const r of [forged.retData, forged.rspGuestHostPath.retData]) {
        expectError(r.outcome, "RemoteFault");
        expect(r.outcome.vector).toBe(14);
        expect(r.outcome.rip).toBe(forged.noExec);
        expectValue(r.after, 7);
      }
      expectTrapFault(forged.trap.outcome, forged.returnTrap);
      expect(forged.busyAfter).toBeNull();
      expectValue(forged.after, 7);
      expectValue(forged.afterGuest, get().keys[4]! * 10 + 1);
    });

    it("a timeout inside the remote: caller and remote must be reset, as after a guest-made call; then both work", () => {
      const { timeouts } = get();
      for (const t of [timeouts.direct, timeouts.guest, timeouts.defaultMs]) {
        expectError(t.outcome, "TimeoutError");
        expect(t.outcome.message).toMatch(/remote call from kvcaller into kvstore/);
        expectError(t.callerRefuses, "MachineStateError");
        expectError(t.ownerRefuses, "MachineStateError");
        expectError(t.otherRefused, "MachineStateError");
        expect(t.otherRefused.message).toMatch(/must be reset/);
        expectValue(t.after, 1);
        expectValue(t.afterLookup, 51);
      }
      expectSameError({ ...timeouts.direct.outcome, message: "" }, { ...timeouts.guest.outcome, message: "" });
    });

    it("a disconnected connection refuses direct calls", () => {
      expectError(get().disconnected, "MachineStateError");
    });

    it("a Linux remote: its syscalls during a direct call, its abort is the same RemoteFault", () => {
      const { linux } = get();
      expectCounted(linux.errno, 9, 2); // close(-1): EBADF, one syscall exit plus the exit trap
      expectValue(linux.keep.outcome, 6); // strlen("direct"): the string was copied to the caller's stack
      expectValue(linux.keepGuest, 5);
      expectValue(linux.dump, 3);
      expect(linux.dumpOut).toBe("add 100\ndirect\nguest\ntotal 0\n");
      for (const a of [linux.abort.direct, linux.abort.guest]) {
        expectError(a.outcome, "RemoteFault");
        expect(a.signal).toBe(6);
        expect(a.remoteMustReset).toBe(true);
      }
      expect(linux.abort.direct.output).toMatch(/counter: direct\n$/);
      expect(linux.abort.guest.output).toMatch(/counter: guest\n$/);
      expect(linux.abort.direct.outcome.rip).toBe(linux.abort.guest.outcome.rip);
      expectError(linux.abort.refusedBeforeReset, "MachineStateError");
      expectValue(linux.after, 9);
    });
  },
);

type ShareReport = Awaited<ReturnType<typeof directShareReport>>;
const SHARE_OPS = scaled(2000, 20);

describeKvm("direct calls from Workers through attached Remotes", () => {
  for (const runtime of RUNTIMES) {
    it(`${runtime}: 2 workers x ${SHARE_OPS} direct calls, one exit each; refusals; the owner's direct calls meanwhile`, async () => {
      const r = await runScenario(runtime, "test/scenarios/direct-share.ts", ["2", String(SHARE_OPS)], { timeoutMs: 120_000 });
      expect(r.code, r.stderr).toBe(0);
      const rep = r.json as ShareReport;
      expect(rep.runtime).toBe(runtime);
      expect(rep.results).toHaveLength(2);
      rep.results.forEach((w, index) => {
        expect(w.mismatches, w.firstMismatch).toBe(0);
        expect(w.checksums + w.lookups).toBe(SHARE_OPS);
        expect(w.exits).toBe(SHARE_OPS); // one exit per direct call
        expectError(w.refused.outcome, "RemoteAccessError");
        expect(w.refused.exits).toBe(0);
        // The worker's own hostcall handler (x * 3 + 1 + index), a callback into its caller's code.
        expectCounted(w.hostcall, 3 * (100 + index) + 1 + index, 2);
        expectCounted(w.callback, 2 * (100 + index) + 1, 3);
        expectError(w.fault.outcome, "RemoteFault");
        expect(w.fault.outcome.remoteName).toBe(`kvstore@worker${index}`);
        expect(w.fault.exits).toBe(1);
        expect(w.afterFault).toBe(true);
        expectError(w.readAfter, "GuestFault"); // caller code cannot read the remote after the calls
        expect(w.readAfter.errorCode! & 1).toBe(0);
      });
      expect(rep.owner.wrong).toBe(0);
      expect(rep.owner.exits).toBe(rep.owner.n);
      expect(rep.count).toBe(rep.expectedCount);
      expect(rep.closeAfter.ok).toBe(true);
    }, upperMs(150_000));
  }
});
