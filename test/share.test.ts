/**
 * A remote shared with Workers (machine.share() / Remote.attach) on Node, Bun and Deno: N = 2 and 4
 * workers put and get concurrently through IPRE into one lock-free kvshared remote
 * (test/scenarios/share.ts). Every answer is checked in the worker against its own model, and the
 * final store against all of them here.
 */
import { expect, it } from "vitest";
import { callPathEnv, RUNTIMES, runScenario } from "./harness.ts";
import { describeKvm, scaled, upperMs } from "./kvm.ts";
import type { shareReport } from "./scenarios/share.ts";

type Report = Awaited<ReturnType<typeof shareReport>>;
const OPS = scaled(10_000, 20); // 500 in the nested harness, where each exit is emulated

describeKvm("fan-in: a remote shared with Workers", () => {
  for (const runtime of RUNTIMES) {
    for (const [workers, path] of [[2, "fast"], [4, "fast"], [2, "trap"]] as const) {
      it(`${runtime}: ${workers} workers x ${OPS} ops on the ${path} path, every result and the final store`, async () => {
        const r = await runScenario(runtime, "test/scenarios/share.ts", [String(workers), String(OPS)], { timeoutMs: 120_000, env: callPathEnv(path) });
        expect(r.code, r.stderr).toBe(0);
        const rep = r.json as Report;
        expect(rep.workers).toBe(workers);
        for (const k of ["close", "reset", "load"] as const) {
          expect(rep.whileAttached[k].name, k).toBe("MachineStateError");
          expect(rep.whileAttached[k].message).toMatch(/attached/);
        }
        expect(rep.whileAttached.ownCall.ok).toBe(true);
        expect(rep.results).toHaveLength(workers);
        for (const w of rep.results) {
          expect(w.mismatches, w.firstMismatch).toBe(0);
          expect(w.puts + w.gets).toBe(OPS);
          // The vmcall's exit trap; on the host's path also the remote entry and the return trap.
          expect(w.exits).toBe((path === "fast" ? 1 : 3) * OPS);
          expect(w.refused).toBe("RemoteAccessError");
          expect(w.afterRefusalOk).toBe(true);
          expect(w.keys).toBeGreaterThan(0);
        }
        expect(rep.wrong).toBe(0);
        expect(rep.lookups).toBe(rep.expectedCount);
        expect(rep.count).toBe(rep.expectedCount);
        expect(rep.bogusAttach.name).toBe("TypeError");
        expect(rep.closeAfter.ok).toBe(true);
        expect(rep.attachAfterClose.name).toBe("MachineStateError");
      }, upperMs(150_000));
    }
  }
});
