/**
 * kvm-hello-world on ipre's raw handles (test/scenarios/kvm-hello.ts): open, VM, memslot, vCPU,
 * sregs, regs, then KVM_RUN through `out`, `in` and `hlt`, on Node (in process), Bun and Deno.
 * It documents the src/kvm/ layer: the scenario is the canonical flow in one screen.
 */
import { expect, it } from "vitest";
import { describeScenario } from "./harness.ts";
import { CODE, CODE_GPA, helloReport, IN_BYTE, PORT } from "./scenarios/kvm-hello.ts";

const OUT = 1;
const IN = 0;

describeScenario("kvm-hello: the raw kvm/ handles run a real-mode guest to hlt", { script: "test/scenarios/kvm-hello.ts", report: helloReport, timeoutMs: 60_000 }, (rt, get) => {
    it("exits on each out/in with port, direction, size and data, then KVM_EXIT_HLT after the last byte of code", () => {
      const r = get();
      expect(r.runtime).toBe(rt);
      expect(r.apiVersion).toBe(12);
      expect(r.exits).toEqual([
        { port: PORT, direction: OUT, size: 1, count: 1, data: [0x48] },
        { port: PORT, direction: OUT, size: 2, count: 1, data: [0x69, 0x0a] },
        { port: PORT, direction: IN, size: 1, count: 1, data: [IN_BYTE] },
        { port: PORT, direction: OUT, size: 1, count: 1, data: [IN_BYTE] },
      ]);
      expect(r.text).toBe("Hi\n!");
      expect(r.last).toBe("KVM_EXIT_HLT");
      // RIP points past the hlt: the whole code ran, once.
      expect(r.rip).toBe(CODE_GPA + CODE.length);
      // AL holds what the host answered to `in` (AH still 0x0a from `mov ax, 0x0a69`).
      expect(r.rax & 0xffff).toBe(0x0a00 | IN_BYTE);
    });
});
