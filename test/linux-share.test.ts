/**
 * A Linux program shared with Workers on Node, Bun and Deno (test/scenarios/linux-share.ts): a
 * Worker's attached Remote has its own syscall layer, so the program's printf and malloc work
 * inside calls from the Worker's caller VM; its output goes to the Worker's sink, or to the
 * process's stdout by default; memory that needs a new mapping is ENOMEM there (malloc gives
 * NULL), and the owner sees what the calls left in the program's memory.
 */
import { expect, it } from "vitest";
import { RUNTIMES, runScenario } from "./harness.ts";
import { describeKvm, upperMs } from "./kvm.ts";
import type { linuxShareReport } from "./scenarios/linux-share.ts";

type Report = Awaited<ReturnType<typeof linuxShareReport>>;
/** sum(i % 256) for i < n: what counter_heap(n) computes in the guest. */
const heapSum = (n: number) => {
  let s = 0;
  for (let i = 0; i < n; i++) s += i % 256;
  return s;
};

describeKvm("linux: a Linux program shared with Workers", () => {
  for (const runtime of RUNTIMES) {
    it(`${runtime}: syscalls (printf, malloc) inside calls from a Worker; stdout to its sink or the process's`, async () => {
      const r = await runScenario(runtime, "test/scenarios/linux-share.ts", [], { timeoutMs: 120_000 });
      expect(r.code, r.stderr).toBe(0);
      const rep = r.json as Report;
      expect(rep.runtime).toBe(runtime);
      expect(rep.captured).toEqual({ add: 5, heapSmall: heapSum(1000), heapBig: -1, dump: 2, out: "add 100\nadd 5\ntotal 5\n" });
      expect(rep.toStdout).toEqual({ add: 10, heapSmall: heapSum(1000), heapBig: -1, dump: 3, out: "" });
      // The second Worker had no sink: its printf went to the process's stdout, before the report.
      expect(r.stdout.split("\n").slice(0, -2).join("\n")).toBe("add 100\nadd 5\nadd 5\ntotal 10");
      expect(rep.ownerOut).toBe(""); // nothing of the Workers' output reached the owner's sink
      expect(rep.ownerDump).toBe(3);
      expect(rep.ownerDumpOut).toBe("add 100\nadd 5\nadd 5\ntotal 10\n");
      expect(rep.ownerHeapBig).toBe(heapSum(300_000)); // the owner still maps memory
      expect(rep.ownerCalls).toBe(4); // the program's TLS counter: main's 1 (+1 in counter_add(100)) and the Workers' 2
    }, upperMs(150_000));
  }
});
