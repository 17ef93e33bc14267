/**
 * The memory calls of Linux programs (src/linux/memory.ts) on Node (in this vitest process), Bun
 * and Deno, through guests/linux/memtest.elf (test/scenarios/linux-mem.ts): munmap returns any
 * range for reuse, mremap grows in place or moves, mprotect and mmap's prot set real page
 * permissions (a write to a read-only page is a GuestFault at that address), reset() and fork()
 * restore the snapshot's permissions, an IPRE caller sees the remote's permissions inside calls
 * whichever vCPU changed them, and the rules while the program is shared hold.
 */
import { expect, it } from "vitest";
import { describeScenario } from "./harness.ts";
import { memReport } from "./scenarios/linux-mem.ts";

type Any = any;

const EINVAL = -22;
const ENOMEM = -12;
const EPERM = -1;
/** A #PF at `addr` of the kind `why` (a write to a read-only page, …). */
const pf = (addr: number, why: string, name = "GuestFault") => ({ error: name, vector: 14, cr2: addr, message: expect.stringContaining(`addr=0x${addr.toString(16)} (${why}`) });

describeScenario("linux: memory calls (munmap, mremap, mprotect) and page permissions", { script: "test/scenarios/linux-mem.ts", report: memReport, timeoutMs: 180_000 }, (rt, get) => {
    it("munmap returns any mapping or part of one; later mmaps reuse it, zeroed", () => {
      const r = get() as Any;
      expect(r.runtime).toBe(rt);
      expect(r.ready).toBe("memtest: ready\n");
      expect(r.layout).toEqual({ bBelowA: 8192, cBelowB: 4096 }); // top-down
      expect([r.unmapB, r.unmapBAgain, r.unmapUnaligned, r.unmapZero]).toEqual([0, 0, EINVAL, EINVAL]);
      expect([r.reuseB, r.unmapMiddle, r.reuseMiddle, r.zeroedOnReuse]).toEqual([true, 0, true, true]);
    });

    it("mremap grows in place when the pages above are free, else moves (MREMAP_MAYMOVE) and frees the old range", () => {
      const r = get() as Any;
      expect(r.growNoRoom).toBe(ENOMEM);
      expect(r.moved).toEqual({ away: true, kept: 1234, oldFreed: true });
      expect(r.inPlace).toBe(true);
    });

    it("mprotect sets real permissions: read-only, none, executable; a write to a read-only page is a GuestFault at it", () => {
      const r = get() as Any;
      const p = r.faultAddress;
      expect(r.pokeRw).toEqual({ value: 7 });
      expect(r.protectR).toBe(0);
      expect(r.pokeR).toEqual(pf(p, "write, protection violation"));
      expect(r.peekR).toEqual({ value: 7 });
      expect([r.protectRw, r.pokeAgain]).toEqual([0, { value: 9 }]);
      expect(r.protectNone).toBe(0);
      expect(r.peekNone).toEqual(pf(p, "read, page not present"));
      expect(r.jitNx).toEqual(pf(p, "instruction fetch, protection violation")); // RW data is no-execute
      expect([r.protectRx, r.jitRx]).toEqual([0, { value: 42 }]);
      expect([r.protectUnaligned, r.protectGuard, r.protectUnmapped]).toEqual([EINVAL, ENOMEM, ENOMEM]);
      expect(r.mapReadOnly).toEqual({ peek: { value: 0 }, poke: pf(r.mapReadOnly.faultAt, "write, protection violation"), faultAt: r.mapReadOnly.faultAt });
    });

    it("reset() and fork() restore the snapshot's mappings and permissions; a machine that faulted works after reset()", () => {
      const r = get() as Any;
      expect(r.afterReset).toEqual({ sameFirst: true, poke: { value: 5 }, wasProtected: { value: 5 } });
      const q = r.snapshotProt.faultAt;
      expect(r.snapshotProt).toEqual({ before: { value: 12 }, afterReset: pf(q, "write, protection violation"), read: { value: 11 }, faultAt: q });
      expect(r.fork).toEqual({ poke: pf(q, "write, protection violation"), read: { value: 11 } });
      expect(r.faultThenReset).toEqual({ fault: pf(q, "write, protection violation"), poke: { value: 16 } });
    });

    it("IPRE: a caller sees the remote's permissions inside calls, whichever vCPU changed them", () => {
      const r = get() as Any;
      const s = r.ipre.faultAt;
      expect(r.ipre).toEqual({
        before: { value: 1 },
        afterOwnerProtect: pf(s, "write, protection violation", "RemoteFault"),
        faultAt: s,
        unprotect: 0,
        ownerPoke: { value: 3 },
        callerPoke: { value: 4 },
        protectInCall: 0,
        ownerPeek: pf(s, "read, page not present"),
        callerPeek: pf(s, "read, page not present", "RemoteFault"),
        afterReset: { value: 5 },
      });
    });

    it("shared: the owner's permissions are frozen while attached; an attached Remote's program prints and mallocs but grows nothing", () => {
      const r = get() as Any;
      expect(r.shared).toEqual({
        ownerProtect: EPERM,
        ownerProtectSame: 0,
        ownerMap: true,
        ownerMapNone: EPERM,
        remoteHello: { value: 13 },
        remoteMap: { value: ENOMEM },
        remoteProtect: { value: EPERM },
        remoteUnmap: { value: 0 },
        remotePoke: { value: 6 },
        remoteOut: "memtest: xxx\n",
      });
      expect(r.afterDetach).toBe(0);
    });
});
