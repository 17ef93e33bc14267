/**
 * Hostcall gates (test/scenarios/gates.ts) on Node, Bun and Deno: the ring-3 gate, the fetch-fault
 * gate and the #GP fallback give the same results, 64-bit ones included, with one exit per
 * hostcall; handlers that make service runs or throw on the ring-3 gate; the remote's own gate and
 * its caller's inside a remote call. docs/ARCHITECTURE.md §4.
 */
import { expect, it } from "vitest";
import { describeScenario } from "./harness.ts";
import { expectError, expectValue } from "./expect.ts";
import { gatesReport, PATHS } from "./scenarios/gates.ts";
import { PORT } from "../src/guest/layout.ts";

/** The port of the exit that ran a handler on each path: the gate's own, the #PF stub's, the #GP stub's. */
const PATH_PORT = { gate: PORT.HOSTCALL, fault: PORT.VECTOR_BASE + 14, refused: PORT.VECTOR_BASE + 13 } as const;

describeScenario("hostcall gates: ring 3, fetch fault and #GP, on Node, Bun and Deno", { script: "test/scenarios/gates.ts", report: gatesReport, timeoutMs: 60_000 }, (rt, get) => {
  it("runs on this runtime", () => {
    expect(get().runtime).toBe(rt);
  });

  for (const [i, path] of PATHS.entries()) {
    it(`${path}: 64-bit results (BigInt and number), six signed arguments, print, one exit per hostcall`, () => {
      const r = get();
      const p = r.paths[i]!;
      expect(p.path).toBe(path);
      expect(p.results.map((o) => o.value)).toEqual(r.results.map((v) => `${v}n`));
      expectValue(p.six, "-1234567n");
      // The handlers saw the guest's arguments, each hostcall through this path's exit.
      expect(p.seen.slice(0, r.results.length).map((s) => s.args)).toEqual(r.results.map((_, k) => [k]));
      expect(p.seen[r.results.length]!.args).toEqual(r.six);
      expect(new Set(p.seen.map((s) => s.port))).toEqual(new Set([PATH_PORT[path]]));
      // bench.elf hostcall_loop(n): n hostcalls of 2, n + 1 exits (the last ends the vmcall).
      expectValue(p.loop.result, 2 * p.loop.n);
      expect(p.loop.exits).toBe(p.loop.n + 1);
      expect(p.seen.length).toBe(r.results.length + 1 + p.loop.n);
      // ipre_print without a handler: the print sink, one exit for it.
      expectValue(p.print.result, 0);
      expect(p.print.printed).toEqual(["hello from guest\n"]);
      expect(p.print.exits).toBe(2);
    });
  }

  it("gate: handlers that make service runs (protect, serviceRun) or throw: the call resumes at the gate's ret, or ends with that error and the next call works", () => {
    const h = get().handlers;
    const by = Object.fromEntries(h.steps.map((s) => [`${s.n}/${s.k}`, s]));
    expectValue(by["5/21"]!.outcome, 42);
    expectValue(by["6/22"]!.outcome, 66);
    expectValue(by["5/25"]!.outcome, 50);
    for (const k of ["7/23", "8/24"]) {
      expect(by[k]!.outcome).toMatchObject({ ok: false, name: "Error", message: "boom in a hostcall handler" });
      expect(by[k]!.same).toBe(true); // the handler's own error object
    }
    for (const s of h.steps) {
      expect(s.exits, `${s.n}/${s.k}`).toBe(s.outcome.ok ? 2 : 1); // the hostcall (+ the exit trap)
      expectValue(s.after, s.k + 1);
    }
    expect(h.ports).toEqual(Array(10).fill(PORT.HOSTCALL));
    // protect() inside a handler was applied: the page is read-only for the guest.
    expectError(h.write, "GuestFault");
    expect(h.write.vector).toBe(14);
    expect(h.write.cr2).toBe(h.page);
    expect(h.write.errorCode).toBe(7);
  });

  it("inside a remote call: the remote's own gate is a ring-3 exit, its caller's gate a fetch fault; 64-bit results; exits per call", () => {
    const rem = get().remote;
    for (const c of rem.calls) {
      expectValue(c.result, 3 * c.x + 1 - 7);
      expect(c.exits).toBe(4); // own gate (the host takes the fast-path call over), caller's gate, return, exit trap
    }
    expectValue(rem.big, `${-(2n ** 62n) - 3n}n`);
    expect(rem.bigExits).toBe(3); // own gate, return, exit trap (the entry made no exit)
    const expected = [];
    for (let i = 0; i < rem.calls.length; i++) expected.push({ machine: "gremote", port: PORT.HOSTCALL }, { machine: "gcaller", port: PORT.VECTOR_BASE + 14 });
    expected.push({ machine: "gremote", port: PORT.HOSTCALL });
    expect(rem.ports).toEqual(expected);
    expectError(rem.unmapWhileConnected, "MachineStateError");
    expect(rem.unmapWhileConnected.message).toMatch(/connected as a remote/);
  });
});
