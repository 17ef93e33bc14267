/**
 * Bad input on Node (in this vitest process, koffi), Bun and Deno (test/scenarios/badinput.ts
 * spawned): malformed and misfitting ELF images, wild calls and jumps, every CPU exception a
 * ring-3 guest can raise, hostcalls with bogus pointers, guests poking at the runtime area, bad
 * options. After every case the host is alive and the machine still works.
 */
import { beforeAll, describe, expect, test } from "vitest";
import { runScenario } from "./harness.ts";
import { describeKvm } from "./kvm.ts";
import type { BadInputReport, CallCase, ProgramCase } from "./scenarios/badinput.ts";
import { expectError, expectValue } from "./expect.ts";

const SCENARIO = "test/scenarios/badinput.ts";
type Runtime = "node" | "bun" | "deno";

const PF_PRESENT = 1, PF_WRITE = 2, PF_USER = 4, PF_FETCH = 16;


function byName<T extends { name: string }>(list: T[], name: string): T {
  const found = list.find((c) => c.name === name);
  if (!found) throw new Error(`no case "${name}" in the report (have: ${list.map((c) => c.name).join(", ")})`);
  return found;
}

/** A GuestFault of `vector` (page faults: with all of `pfBits` set and none of `pfClear`). */
function expectFault(c: CallCase, vector: number, pf?: { set?: number; clear?: number; cr2?: number }): void {
  const r = c.result;
  expectError(r, "GuestFault", c.name);
  expect(r.classes).toContain("IpreError");
  expect(r.vector, `${c.name}: ${r.message}`).toBe(vector);
  if (pf) {
    expect(r.errorCode! & (pf.set ?? 0), `${c.name}: error code 0x${r.errorCode!.toString(16)} has bits 0x${(pf.set ?? 0).toString(16)}`).toBe(pf.set ?? 0);
    expect(r.errorCode! & (pf.clear ?? 0), `${c.name}: error code 0x${r.errorCode!.toString(16)} lacks bits 0x${(pf.clear ?? 0).toString(16)}`).toBe(0);
    if (pf.cr2 !== undefined) expect(r.cr2, c.name).toBe(pf.cr2);
  }
}

function checkPrograms(r: BadInputReport): void {
  expectValue(r.control.plain, 7, "hand-built ELF (control)");
  expectValue(r.control.upToStackGuard, 7, "hand-built ELF whose bss ends exactly at the stack guard (control)");
  const elfCases: Array<[string, RegExp]> = [
    ["empty", /truncated: file is 0 bytes/],
    ["truncated header (40 bytes of add.elf)", /truncated/],
    ["truncated program headers (100 bytes of add.elf)", /program headers out of file bounds/],
    ["truncated segment (file ends inside it)", /outside the file/],
    ["not an ELF (shell script)", /bad magic/],
    ["ELFCLASS32", /ELFCLASS64/],
    ["big-endian", /little-endian/],
    ["EM_AARCH64", /EM_X86_64/],
    ["EM_386", /EM_X86_64/],
    ["ET_DYN (PIE / shared object)", /ET_DYN/],
    ["ET_REL (object file)", /ET_REL/],
    ["PT_INTERP (dynamically linked)", /PT_INTERP/],
    ["overlapping PT_LOADs", /overlapping/],
    ["two PT_LOADs sharing a page with different permissions", /share the page/],
    ["p_memsz 2 GiB", /p_memsz 0x80000000/],
    ["p_filesz > p_memsz", /p_filesz/],
    ["non-canonical p_vaddr", /canonical/],
    ["entry point outside every segment (0x7000000)", /entry point 0x7000000/],
    ["no PT_LOAD", /no PT_LOAD/],
  ];
  expect(r.elf.map((c) => c.name)).toEqual(elfCases.map(([n]) => n));
  for (const [name, message] of elfCases) {
    const c: ProgramCase = byName(r.elf, name);
    for (const [how, o] of [["Machine.create", c.create], ["load", c.load]] as const) {
      expectError(o, "ElfError", `${name} (${how})`);
      expect(o.message, `${name} (${how})`).toMatch(message);
      expect(o.classes).toContain("IpreError");
    }
    expectValue(c.after, 7, `ok() after loading "${name}" failed`);
  }

  const fitCases: Array<[string, RegExp]> = [
    ["linked for window 1 (kvstore.elf) in window 0", /linked for window 1/],
    ["window-0 program (add.elf) in a window-1 machine", /linked for window 0/],
    ["4 MiB machine: the program starts at its end", /does not fit/],
    ["segment over the IDT (0x1000)", /0x1000\+0x1000 does not fit/],
    ["segment over the page tables (0x100000)", /0x100000\+0x1000 does not fit/],
    ["segment over the runtime code (0x10000)", /0x10000\+0x1000 does not fit/],
    ["p_memsz 512 MiB (beyond memory)", /does not fit/],
    ["bss running into the stack guard page", /does not fit/],
    ["segment in the trap region (exit trap page)", /does not fit/],
  ];
  expect(r.fit.map((c) => c.name)).toEqual(fitCases.map(([n]) => n));
  for (const [name, message] of fitCases) {
    const c = byName(r.fit, name);
    expectError(c.create, "GuestMemoryError", `${name} (Machine.create)`);
    expect(c.create.message).toMatch(message);
    if (c.load !== null) {
      expectError(c.load, "GuestMemoryError", `${name} (load)`);
      expect(c.load.message).toMatch(message);
    }
    expectValue(c.after, 7, `ok() after "${name}"`);
  }
  // Checked before anything is written: program, runtime area and code unchanged.
  expect(r.loadIntegrity).toEqual({ programKept: true, runtimeAreaUnchanged: true, codeUnchanged: true });
}

function checkCalls(r: BadInputReport, runtime: Runtime): void {
  const c = (name: string) => byName(r.calls, name);
  const m = r.machine;
  for (const x of r.calls) expectValue(x.after, 7, `ok() after "${x.name}"`);

  expectFault(c("#DE divide by zero"), 0);
  expectFault(c("#DE LONG_MIN / -1"), 0);
  // int3 from ring 3: #BP when the IDT gate allows DPL 3, else #GP; PVM may deliver it differently.
  const bp = c("#BP int3").result;
  expectError(bp, "GuestFault", "int3");
  console.log(`${runtime}: int3 arrives as vector ${bp.vector} (${bp.message})`);
  expect([3, 13]).toContain(bp.vector);
  expectFault(c("#UD ud2"), 6);
  expectFault(c("#GP hlt in ring 3"), 13);
  expectFault(c("#GP non-canonical read"), 13);
  expectFault(c("#PF read of unmapped memory"), 14, { set: PF_USER, clear: PF_PRESENT | PF_WRITE | PF_FETCH, cr2: 0x5000000 });
  expectFault(c("#PF read of the remote window (nothing connected)"), 14, { set: PF_USER, clear: PF_PRESENT, cr2: 0x40400000 });
  expectFault(c("#PF write to code"), 14, { set: PF_PRESENT | PF_WRITE | PF_USER, cr2: m.symbols.write_code });
  const so = c("#PF stack overflow");
  expectFault(so, 14, { set: PF_WRITE | PF_USER, clear: PF_PRESENT });
  expect(so.result.cr2!).toBeGreaterThanOrEqual(m.stackGuard);
  expect(so.result.cr2!).toBeLessThan(m.stackGuard + 4096);

  expectFault(c("call of an address outside memory"), 14, { set: PF_FETCH | PF_USER, clear: PF_PRESENT, cr2: 0x7000000 });
  expect(c("call of an address outside memory").result.rip).toBe(0x7000000);
  expectFault(c("call of address 0 (runtime area)"), 14, { set: PF_FETCH | PF_USER | PF_PRESENT, cr2: 0 });
  expectFault(c("call of a non-canonical address"), 13);

  expectFault(c("wild jump beyond memory"), 14, { set: PF_FETCH | PF_USER, clear: PF_PRESENT, cr2: 0x123456789 });
  expectFault(c("wild jump into data (no-execute)"), 14, { set: PF_FETCH | PF_USER | PF_PRESENT, cr2: 0x1000000 });
  expectFault(c("wild jump onto the stack (no-execute)"), 14, { set: PF_FETCH | PF_USER | PF_PRESENT, cr2: m.stackTop - 64 });
  expectFault(c("wild jump to the stack guard page"), 14, { set: PF_FETCH | PF_USER, clear: PF_PRESENT, cr2: m.stackGuard });
  expectFault(c("wild jump into the runtime code"), 14, { set: PF_FETCH | PF_USER | PF_PRESENT, cr2: 0x10000 });
  expectFault(c("wild jump to a non-canonical address"), 13);
  // The gate page is mapped (ring-3 gates, docs/ARCHITECTURE.md §4): gate+3 is its hlt padding, a #GP there.
  const mid = c("wild jump to a misaligned hostcall gate");
  expectFault(mid, 13);
  expect(mid.result.rip, mid.name).toBe(m.gateBase + 3);
  const gate = c("wild jump to a hostcall gate without handler").result;
  expectError(gate, "IpreError", "hostcall gate without handler");
  expect(gate.message).toMatch(/hostcall 5 .*has no handler/);
  expectError(c("wild jump to the print gate with a bogus pointer").result, "GuestMemoryError", "print gate with a bogus pointer");
}

function checkTopOfAddressSpace(r: BadInputReport): void {
  // jump_to(-8): a fetch fault at 0xfffffffffffffff8. The fault must name that address (a
  // number above 2^53 cannot: 0xfffffffffffffff8 rounds to 2^64, printed as 0x10000000000000000).
  const top = byName(r.calls, "wild jump to the top of the address space");
  expectFault(top, 14, { set: PF_FETCH | PF_USER, clear: PF_PRESENT });
  expect(top.result.message).toContain("addr=0xfffffffffffffff8");
}

function checkHostcalls(r: BadInputReport): void {
  expectValue(r.hostcalls.valid, 49, "use_hostcall on 16 bytes of 3: 48 + 1");
  const names = [
    "pointer beyond memory", "negative pointer", "pointer into the runtime area (IDT)", "pointer into the page tables",
    "range straddling the end of memory", "pointer at 2^52", "pointer into another window", "C string at address 0 (readCString)",
  ];
  expect(r.hostcalls.cases.map((c) => c.name)).toEqual(names);
  for (const c of r.hostcalls.cases) {
    expectError(c.result, "GuestMemoryError", c.name);
    expect(c.result.classes).toContain("IpreError");
    expect(c.result.address, c.name).toBe(c.fn === "hostcall_many" ? 0 : Number(c.args[0]));
    expectValue(c.after, 49, `use_hostcall after "${c.name}"`);
  }
  expectValue(r.hostcalls.afterAll, 0, "greet() after everything");
}

function checkRuntimeArea(r: BadInputReport): void {
  expect(r.runtimeArea.cases).toHaveLength(12);
  for (const c of r.runtimeArea.cases) {
    const write = c.fn === "poke";
    expectFault(c, 14, { set: PF_PRESENT | PF_USER | (write ? PF_WRITE : 0), clear: PF_FETCH, cr2: Number(c.args[0]) });
    expectValue(c.after, 7, `ok() after "${c.name}"`);
  }
  expect(r.runtimeArea.unchanged).toEqual({ descriptors: true, runtimeCode: true, pageTables: true, programCode: true });
}

function checkOptions(r: BadInputReport): void {
  const expected: Record<string, [string, RegExp]> = {
    "memory 1 MiB": ["RangeError", /memory must be between/],
    "memory 1 GiB": ["RangeError", /memory must be between/],
    "window 512": ["RangeError", /window/],
    "window -1": ["RangeError", /window/],
    "window 1.5": ["RangeError", /window/],
    "stack larger than memory": ["RangeError", /stackSize/],
    "7 call arguments": ["RangeError", /6 arguments/],
    "unknown symbol": ["IpreError", /no symbol "no_such_function"/],
    "bytes() outside user memory": ["GuestMemoryError", /outside user memory/],
    "write() past the end of memory": ["GuestMemoryError", /outside user memory/],
    "readU64() of a negative address": ["GuestMemoryError", /outside user memory/],
  };
  expect(r.options.map((o) => o.name)).toEqual(Object.keys(expected));
  for (const o of r.options) {
    const [name, message] = expected[o.name]!;
    expectError(o.outcome, name, o.name);
    expect(o.outcome.message).toMatch(message);
  }
  expectValue(r.final, 7, "ok() at the very end");
  // Every machine (including the failed creates) released its fds and mappings.
  const view = (x: BadInputReport["resources"]["before"]) => ({ fds: x.fds, fdKinds: x.fdKinds, memfdMaps: x.memfdMaps, vcpuMaps: x.vcpuMaps });
  expect(view(r.resources.after)).toEqual(view(r.resources.before));
}

function checkAll(get: () => BadInputReport, runtime: Runtime): void {
  test("report comes from the right runtime", () => expect(get().runtime).toBe(runtime));
  test("malformed ELF -> ElfError, misfitting ELF -> GuestMemoryError; nothing written", () => checkPrograms(get()));
  test("every ring-3 exception, wild calls and jumps -> GuestFault; the machine keeps working", () => checkCalls(get(), runtime));
  test("a fault at the top of the address space names the right address", () => checkTopOfAddressSpace(get()));
  test("hostcall handlers given bogus guest pointers -> GuestMemoryError from call()", () => checkHostcalls(get()));
  test("the guest cannot read or write the runtime area (#PF protection violation)", () => checkRuntimeArea(get()));
  test("bad options and host-side accessors; no fd or mapping left behind", () => checkOptions(get()));
}

describeKvm("bad input", () => {
  describe("on Node (koffi, in this process)", () => {
    let report: BadInputReport;
    beforeAll(async () => {
      const { badInputReport } = await import("./scenarios/badinput.ts");
      report = badInputReport();
    });
    checkAll(() => report, "node");
  });

  describe.each(["bun", "deno"] as const)("on %s", (runtime) => {
    let report: BadInputReport;
    beforeAll(async () => {
      const res = await runScenario(runtime, SCENARIO, []);
      if (res.code !== 0 || res.json === undefined) throw new Error(`${runtime} exited ${res.code}\n${res.stderr}\n${res.stdout.slice(-2000)}`);
      if (res.stderr) console.log(`${runtime} stderr: ${res.stderr}`);
      report = res.json as BadInputReport;
    });
    checkAll(() => report, runtime);
  });
});
