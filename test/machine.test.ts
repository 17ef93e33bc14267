/**
 * Machine (vmcall) on Node, Bun and Deno against the real /dev/kvm: the scenario
 * test/scenarios/machine.ts runs in-process on Node and as a child under Bun and Deno, each with
 * its own random seed; every expected value is recomputed here from the inputs in the report.
 */
import { spawn } from "node:child_process";
import { beforeAll, describe, expect, it } from "vitest";
import { repoRoot, collectReports, ReportSet, RUNTIMES, type Runtime } from "./harness.ts";
import { describeKvm, upperMs } from "./kvm.ts";
import { CLOSED_PROBES, type HeldViews } from "./scenarios/closed.ts";
import { machineReport, type MachineReport } from "./scenarios/machine.ts";
import { expectError, expectScenarioRan, expectValue } from "./expect.ts";

const SCENARIO = "test/scenarios/machine.ts";
const SEED = Number(process.env.IPRE_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
const seedOf = (rt: Runtime) => (SEED + RUNTIMES.indexOf(rt)) >>> 0;

const i64 = (v: bigint) => BigInt.asIntN(64, v);

function checkCalls(c: MachineReport["calls"]): void {
  expect(c.add).toHaveLength(20);
  for (const [a, b, r] of c.add) expect(r).toBe(a + b);
  expect(c.add.some(([a, b]) => a + b < 0)).toBe(true); // negative results went through
  for (const [a, b, r] of c.mul) expect(r).toBe(a * b);
  expect(c.addNegative).toBe(-2);
  for (const [a, b, r] of c.addBig) expect(r).toBe(String(i64(BigInt(a) + BigInt(b))));
  expect(c.addBig[1]![2]).toBe(String(-(2n ** 63n))); // 2^62 + 2^62 wraps
  expect(BigInt(c.addBigAsNumber[0])).toBe(BigInt(c.addBigAsNumber[1]));
  expect(c.addBigAsNumber[1]).toBeGreaterThan(2 ** 40);
  for (const [s, n] of c.strLen) expect(n).toBe(new TextEncoder().encode(s).length);
  for (const [bytes, sum] of c.sumBytes) expect(sum).toBe(bytes.reduce((x, y) => x + y, 0));
  expect(c.sumBytes.at(-1)![0].length).toBeGreaterThanOrEqual(100);
  expect(c.sumBytesAt.result).toBe(c.sumBytesAt.bytes.reduce((x, y) => x + y, 0));
}

function checkHostcalls(h: MachineReport["hostcalls"]): void {
  expect(h.useHostcall).toHaveLength(4);
  for (const { x, result, seen } of h.useHostcall) {
    expect(seen).toEqual([x, x + 1]); // the JS handler got the guest's (x, x + 1), signed
    expect(result).toBe(x * (x + 1) + h.k + 1); // and the guest got the handler's result
  }
  expect(h.bigint.result).toBe(String(2n ** 52n + BigInt(h.bigint.x) + 1n));
  expect(h.printed).toEqual(["hello from guest\n"]);
  expect(h.greet).toBe(0);
  const m = h.many;
  expect(m.seenCount).toBe(m.n);
  expect(m.inOrder).toBe(true);
  expect([m.seenFirst, m.seenLast, m.seenSum]).toEqual([0, m.n - 1, (m.n * (m.n - 1)) / 2]);
  expect(m.result).toBe((m.c * m.n * (m.n - 1)) / 2 + m.n * m.d);
  // A JS exception thrown by a handler comes out of call() unchanged; the next call works.
  expect(h.thrown.outcome).toMatchObject({ ok: false, name: "Error", message: h.thrown.message, classes: [] });
  expect(h.thrown.sameError).toBe(true);
  expectValue(h.thrown.next, 2 * h.thrown.nextX + 2);
  // A gate without a handler: an IpreError that names the gate and the machine.
  expectError(h.missing.outcome, "IpreError");
  expect(h.missing.outcome.message).toMatch(/hostcall 1 .*no handler/);
  expect(h.missing.outcome.message).toContain(h.missingMachine);
  expectValue(h.missing.next, 3 * 10 - 11 + 1);
}

function checkReentrant(re: MachineReport["hostcalls"]["reentrant"]): void {
  // A call() on the machine from inside its own hostcall must be refused, and the outer call
  // must complete normally.
  expectError(re.inner, "MachineStateError");
  expectValue(re.outer, 2 * re.x + 2);
  expectValue(re.next.result, 2 * re.next.x + 2);
}

function checkFaults(f: MachineReport["faults"]): void {
  const byFn = (fn: string, i = 0) => f.cases.filter((c) => c.fn === fn)[i]!;
  for (const c of f.cases) {
    expect(c.result.ok, `${c.fn}(${c.args}) must fault`).toBe(false);
    expect(c.result.classes).toEqual(["IpreError", "GuestFault"]); // not a RemoteFault
    // The same machine keeps working after every fault.
    expectValue(c.after.ok, 7);
    expectValue(c.after.divide.result, Math.trunc(c.after.divide.a / c.after.divide.b));
  }
  const pf = (fn: string, i = 0) => {
    const r = byFn(fn, i).result;
    expect(r.vector).toBe(14);
    expect(r.message).toContain("#PF");
    expect(r.errorCode! & 4).toBe(4); // user mode
    return r;
  };
  const de = byFn("divide").result;
  expect(de.vector).toBe(0);
  expect(de.message).toContain("#DE");
  expect(byFn("divide", 1).result.vector).toBe(0);

  const unmapped = pf("touch");
  expect(unmapped.cr2).toBe(0x7000000);
  expect(unmapped.errorCode! & 0x13).toBe(0); // read, not present, not a fetch

  expect(byFn("undefined_insn").result).toMatchObject({ vector: 6 });
  expect(byFn("undefined_insn").result.message).toContain("#UD");

  const stack = pf("recurse");
  expect(stack.cr2).toBeGreaterThanOrEqual(f.stackGuard);
  expect(stack.cr2).toBeLessThan(f.stackGuard + 4096);
  expect(stack.errorCode! & 3).toBe(2); // write, page not present

  const code = pf("write_code");
  expect(code.errorCode! & 3).toBe(3); // write, protection violation
  expect(code.cr2).toBe(f.writeCode);

  const fetch = pf("jump_to");
  expect(fetch.errorCode! & 0x10).toBe(0x10); // instruction fetch
  expect(fetch.cr2).toBe(0x1234);
  expect(fetch.rip).toBe(0x1234);

  expect(byFn("general_protection").result.vector).toBe(13);

  const runtimeArea = pf("touch", 1);
  expect(runtimeArea.cr2).toBe(0x1000);
  expect(runtimeArea.errorCode! & 3).toBe(1); // read, protection violation (supervisor-only page)

  const pageTables = pf("poke");
  expect(pageTables.cr2).toBe(byFn("poke").args[0]);
  expect(pageTables.errorCode! & 3).toBe(3); // write, protection violation

  // int3 from ring 3: #BP, or #GP where the IDT gate's DPL 0 is enforced (hardware KVM).
  expect([3, 13]).toContain(byFn("breakpoint").result.vector);
}

function checkMemory(m: MachineReport["memory"]): void {
  expect(m.readBack).toEqual(m.written);
  expect(m.bytesView).toEqual(m.written);
  let le = 0n;
  for (let i = 7; i >= 0; i--) le = (le << 8n) | BigInt(m.written[i]!);
  expect(m.guestReadsU64.guest).toBe(String(i64(le))); // the guest read the host's bytes
  const v = BigInt(m.guestWritesU64.value);
  expect(m.guestWritesU64.readU64).toBe(String(BigInt.asUintN(64, v))); // the host reads the guest's store
  expect(m.guestWritesU64.readI64).toBe(Number(v));
  expect(m.guestWritesU64.viewSeesIt).toBe(true); // bytes() is a live view
  expect(m.writeU64.readU64).toBe(m.writeU64.value);
  expect(m.cString.read).toBe(m.cString.text);
  expect(m.cString.guestStrLen).toBe(new TextEncoder().encode(m.cString.text).length);
  const { lastByteOk, firstUserByteOk, ...bad } = m.outOfRange;
  expectValue(lastByteOk!, 1);
  expectValue(firstUserByteOk!, 1);
  expect(Object.keys(bad)).toHaveLength(10);
  for (const [what, o] of Object.entries(bad)) {
    expect(o.name, what).toBe("GuestMemoryError");
    expectError(o, "GuestMemoryError");
  }
  expect(bad.bytesInRuntimeArea!.address).toBe(m.base + 0x1000);
  expect(bad.readAtEnd!.address).toBe(m.memoryEnd);
}

function checkErrors(e: MachineReport["errors"]): void {
  expectError(e.garbageElf, "ElfError");
  expectError(e.truncatedElf, "ElfError");
  expectError(e.wrongWindow, "GuestMemoryError");
  expect(e.wrongWindow.message).toMatch(/window 1\b/);
  expect(e.wrongWindow.message).toMatch(/window 0\b/);
  expectValue(e.afterBadLoads, 1); // the loaded program survived the failed loads
  expectError(e.unknownSymbol, "IpreError");
  expect(e.unknownSymbol.classes).toEqual(["IpreError"]);
  expect(e.unknownSymbol.message).toContain("no_such_function");
  expectError(e.noProgram, "IpreError");
  expectError(e.afterClose, "MachineStateError");
  expectError(e.loadAfterClose, "MachineStateError");
  expectValue(e.closeTwice, "ok");
  expect(e.closed).toBe(true);
}

function checkMany(m: MachineReport["many"], count: number): void {
  expect(m.results).toHaveLength(count);
  let wrong = 0;
  for (let i = 0; i < count; i++) if (m.results[i] !== 2 * i + m.offsets[i & 15]!) wrong++;
  expect(wrong).toBe(0);
  // One KVM_RUN per vmcall; a few more when a signal (e.g. SIGCHLD of the scenario children)
  // interrupts KVM_RUN and the loop resumes it.
  expect(m.exits).toBeGreaterThanOrEqual(count);
  expect(m.exits).toBeLessThan(count + 20);
}

const COUNT = 10_000;

describeKvm("Machine on Node, Bun and Deno", () => {
  let set = new ReportSet<MachineReport>();
  beforeAll(async () => {
    set = await collectReports(SCENARIO, (rt) => [String(seedOf(rt)), String(COUNT)], () => machineReport(seedOf("node"), COUNT), 90_000);
    console.log(`machine scenario seed ${SEED} (IPRE_TEST_SEED to repeat); 10,000 vmcalls: ${set.summary((r) => `${r.many.elapsedMs.toFixed(0)} ms`)}`);
  }, upperMs(120_000));
  const report = (rt: Runtime): MachineReport => set.report(rt);

  describe.each(RUNTIMES)("%s", (rt) => {
    it("runs the scenario on this runtime, silently", () => expectScenarioRan(set, rt, seedOf(rt)));
    it("calls ELF functions: integers (negative, 64-bit), strings and byte buffers", () => checkCalls(report(rt).calls));
    it("hostcalls: JS handlers, print, 1000 in one call, thrown errors, missing handlers", () => checkHostcalls(report(rt).hostcalls));
    it("a call() from inside a hostcall of the same machine is refused and the outer call completes", () => checkReentrant(report(rt).hostcalls.reentrant));
    it("guest faults are GuestFaults with the right vector, address and error code; the machine survives each", () => checkFaults(report(rt).faults));
    it("memory helpers round-trip with the guest and reject ranges outside user memory", () => checkMemory(report(rt).memory));
    it("typed errors: ElfError, GuestMemoryError naming the window, IpreError, MachineStateError", () => checkErrors(report(rt).errors));
    it(`${COUNT} consecutive vmcalls are all correct`, () => checkMany(report(rt).many, COUNT));
    it("service runs in a row park every time (never resuming at the `out` that just exited)", () => {
      const sv = report(rt).service;
      expectValue(sv.completed, sv.runs, "consecutive serviceRun()s");
      expectValue(sv.withMailbox, "ok", "serviceRun() with mailbox work, then plain ones");
      expectValue(sv.after, 42, "add(20, 22) after the service runs");
      expectValue(sv.serviceAfterCrash, 3, "serviceRun() twice after the vCPU reboot, then add(1, 2)");
    });
    it("a fault in the runtime's ring-0 code is a GuestCrash naming the vector, the faulting RIP and the error code", () => {
      const sv = report(rt).service;
      const c = sv.crash;
      expectError(c, "GuestCrash", "page-table write to an unmapped address");
      expect(c.vector).toBe(14);
      expect(c.cr2).toBe(sv.badAddress);
      expect(c.errorCode! & 2, "a write").toBe(2);
      expect(c.errorCode! & 4, "from ring 0").toBe(0);
      expect(c.rip).toBeGreaterThanOrEqual(sv.runtimeStart);
      expect(c.rip).toBeLessThan(sv.runtimeEnd);
      expect(c.message).toContain("#PF page fault");
      expect(c.message).toContain(`rip=0x${c.rip!.toString(16)} (in the ipre runtime), ring 0`);
      expect(c.message).toMatch(/error code 0x[0-9a-f]+/);
      expect(c.message).toContain("page-table service run");
      expect(c.message).not.toMatch(/port=/);
      expectValue(sv.afterCrash, 42, "add(40, 2) after the crash (vCPU rebooted)");
    });
    it("flat binaries load at the ELF address, read-only and executable, with named offsets", () => {
      const f = report(rt).flat;
      expect(f.inc).toBe(f.x + 1);
      expect(f.neg).toBe(-f.x);
      expect(f.perm).toEqual({ write: false, exec: true });
      expectValue(f.intoCode, -f.x);
    });
  });
});

/** test/scenarios/closed.ts as a child process: a crash there must not take the test worker down. */
function runClosed(rt: Runtime): Promise<{ code: number | null; signal: string | null; lines: any[]; stderr: string }> {
  const script = "test/scenarios/closed.ts";
  const [cmd, args] =
    rt === "node" ? [process.execPath, ["--import", "./test/node-ts.mjs", script]]
    : rt === "bun" ? [`${repoRoot}node_modules/.bin/bun`, [script]]
    : [`${repoRoot}node_modules/.bin/deno`, ["run", "--allow-all", script]];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: repoRoot, env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), upperMs(30_000));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const lines = out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
      resolve({ code, signal, lines, stderr: err });
    });
  });
}

describeKvm("a closed Machine", () => {
  it.each(RUNTIMES)("on %s: every method throws MachineStateError (and nothing touches unmapped memory)", async (rt) => {
    const res = await runClosed(rt);
    expect(res.lines[0]).toEqual({ runtime: rt, closed: true });
    const seen = res.lines.filter((l) => l.probe).map((l) => l.probe);
    const steps = res.lines.filter((l) => l.step).map((l) => l.step);
    const crashedAt = res.lines.some((l) => l.views) ? CLOSED_PROBES[seen.length] : `views: ${steps.at(-1)}`;
    const status = res.signal ? `signal ${res.signal}` : `exit ${res.code}`;
    expect(status, `the process died in the "${crashedAt}" probe:\n${res.stderr.slice(0, 1500)}`).toBe("exit 0");
    expect(seen).toEqual([...CLOSED_PROBES]);
    for (const { probe, outcome } of res.lines.filter((l) => l.probe)) {
      expect(outcome.name, `${probe} on a closed machine: ${JSON.stringify(outcome)}`).toBe("MachineStateError");
    }
    expect(res.lines.at(-1)).toEqual({ done: true });
    // Views held past close(): detached where the runtime can (Bun, Deno), else the zero
    // placeholder (Node 20 cannot detach koffi's buffers). Never the guest's old bytes.
    const { views } = res.lines.find((l) => l.views) as { views: HeldViews };
    if (views.bytes.length === 0 || rt !== "node") {
      expect(views).toEqual({ bytes: { length: 0, read: null, afterWrite: null }, raw: { length: 0, read: null }, nonzero: 0 });
    } else {
      expect(views.bytes).toEqual({ length: 8, read: 0, afterWrite: 0x5a });
      expect(views.raw.read).toBe(0);
      expect(views.nonzero).toBe(0);
    }
  });
});
