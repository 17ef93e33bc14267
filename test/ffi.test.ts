import { expect, test } from "vitest";
import { libc } from "../src/ffi/index.ts";
import {
  MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, MFD_CLOEXEC, NativeBuffer, O_CLOEXEC, O_RDWR, PROT_READ,
  PROT_WRITE,
} from "../src/ffi/native.ts";
import { runScenario } from "./harness.ts";
import { describeKvm, describePure } from "./kvm.ts";
import { E2BIG, ffiReport, TIMEOUT_SIGNAL, type FfiReport } from "./scenarios/ffi.ts";

const SCENARIO = "test/scenarios/ffi.ts";

/** The same expectations for every runtime. */
function checkReport(r: FfiReport, runtime: "node" | "bun" | "deno"): void {
  expect(r.runtime).toBe(runtime);
  expect(r.backend).toMatch(runtime === "node" ? /^koffi / : runtime === "bun" ? /^bun:ffi/ : /^Deno\.dlopen/);
  expect(r.pid).toBe(r.processPid);
  expect(r.tid).toBeGreaterThan(0);
  expect(r.tid).toBe(r.pid); // JS runs on the main thread
  expect(r.kvmFd).toBeGreaterThanOrEqual(0);
  expect(r.apiVersion).toBe(12);
  expect(r.capUserMemory).toBe(1);
  expect(r.badIoctl.ret).toBe(-1);
  expect([22, 25]).toContain(r.badIoctl.errno); // EINVAL (or ENOTTY)
  // Pointer argument: the kernel read nmsrs = 0, wrote the count, then filled the list.
  expect(r.msrList.probeRet).toBe(-1);
  expect(r.msrList.probeErrno).toBe(E2BIG);
  expect(r.msrList.count).toBeGreaterThan(0);
  expect(r.msrList.ret).toBe(0);
  expect(r.msrList.firstIndices.some((i) => i !== 0)).toBe(true);
  expect(r.closeBad).toEqual({ ret: -1, errno: 9 }); // EBADF
  expect(r.openMissing).toEqual({ ret: -1, errno: 2 }); // ENOENT
  expect(r.mmapFail).toEqual({ ret: -1, errno: 22 }); // MAP_FAILED, EINVAL
  expect(r.scratchAddress).toBeGreaterThan(0);
  expect(r.scratchAddress % 4096).toBe(0);
  expect(r.scratchAddress).toBeLessThan(2 ** 47);
  expect(r.roundTrip).toBe(true);
  expect(r.madviseZeroes).toBe(true);
  expect(r.memfd.fd).toBeGreaterThanOrEqual(0);
  expect(r.memfd).toMatchObject({ truncate: 0, distinct: true, aToB: true, bToA: true });
  expect(r.clock.ret).toBe(0);
  expect(r.clock.sec).toBeGreaterThan(0);
  expect(r.clock.nsec).toBeGreaterThanOrEqual(0);
  expect(r.clock.nsec).toBeLessThan(1e9);
  expect(r.clock.elapsedNs).toBeGreaterThanOrEqual(19e6);
  // Both are CLOCK_MONOTONIC: the C interval lies between the JS intervals read inside and around
  // it (1 ms of slack for a runtime that coarsens performance.now()), however loaded the machine.
  expect(r.clock.elapsedNs).toBeGreaterThanOrEqual(r.clock.jsInnerNs - 1e6);
  expect(r.clock.elapsedNs).toBeLessThanOrEqual(r.clock.jsOuterNs + 1e6);
  expect(r.sigmask).toEqual({ blockRet: 0, blockedAfter: true, restoreRet: 0, blockedRestored: false, wasBlocked: false });
  expect(r.timer).toMatchObject({ createRet: 0, setRet: 0, signal: TIMEOUT_SIGNAL, siginfoSigno: TIMEOUT_SIGNAL, deleteRet: 0 });
  expect(r.sigtimedwaitEmpty).toEqual({ ret: -1, errno: 11 }); // EAGAIN
  expect(r.disposedTwice).toBe(true);
  for (const v of Object.values(r.ns)) expect(v).toBeGreaterThan(0);
}

// The libc report opens /dev/kvm and issues KVM ioctls: a KVM suite.
describeKvm("ffi libc report (libc calls and KVM ioctls)", () => {
  test("on Node (koffi)", () => {
    const r = ffiReport(100_000);
    console.log(`node ns/call: ${JSON.stringify(r.ns)} (${r.backend})`);
    checkReport(r, "node");
  });

  test.each(["bun", "deno"] as const)("on %s, from the scenario script", async (runtime) => {
    const res = await runScenario(runtime, SCENARIO, ["100000"]);
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    expect(res.json).toBeDefined();
    const r = res.json as FfiReport;
    console.log(`${runtime} ns/call: ${JSON.stringify(r.ns)} (${r.backend})`);
    checkReport(r, runtime);
  });
});

describePure("ffi on Node (koffi)", () => {
  test("NativeBuffer: C strings, bounds, zero-copy view, idempotent close", () => {
    const buf = NativeBuffer.alloc(4096);
    expect(buf.address % 4096).toBe(0);
    expect(buf.length).toBe(4096);
    expect(buf.bytes.length).toBe(4096);
    expect(buf.view.byteLength).toBe(4096);
    const addr = buf.writeCString(100, "héllo");
    expect(addr).toBe(buf.address + 100);
    expect([...buf.bytes.subarray(100, 107)]).toEqual([0x68, 0xc3, 0xa9, 0x6c, 0x6c, 0x6f, 0]);
    expect(() => buf.writeCString(4090, "too long")).toThrow(RangeError);
    expect(() => buf.writeCString(0, "a\0b")).toThrow(RangeError);
    // A second view over the same native address sees writes through the first.
    buf.view.setBigUint64(8, 0x0123456789abcdefn, true);
    expect(new DataView(libc.view(buf.address + 8, 8)).getBigUint64(0, true)).toBe(0x0123456789abcdefn);
    // The path written by writeCString is read by the kernel.
    const fd = libc.open(buf.writeCString(0, "/dev/null"), O_RDWR | O_CLOEXEC);
    expect(fd).toBeGreaterThanOrEqual(0);
    expect(libc.close(fd)).toBe(0);
    expect(buf.closed).toBe(false);
    buf.close();
    expect(buf.closed).toBe(true);
    expect(() => buf.close()).not.toThrow();
    expect(() => buf[Symbol.dispose]()).not.toThrow();
  });

  test("NativeBuffer rejects bad lengths", () => {
    expect(() => NativeBuffer.alloc(0)).toThrow(RangeError);
    expect(() => NativeBuffer.alloc(1.5)).toThrow(RangeError);
  });

  test("mmap returns -1 on failure and an address otherwise; memfd mapped twice shares bytes", () => {
    expect(libc.mmap(0, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)).toBe(-1);
    expect(libc.errno()).toBe(22);
    using name = NativeBuffer.alloc(4096);
    const fd = libc.memfd_create(name.writeCString(0, "ipre-test"), MFD_CLOEXEC);
    expect(fd).toBeGreaterThanOrEqual(0);
    expect(libc.ftruncate(fd, 1 << 20)).toBe(0);
    const a = libc.mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    const b = libc.mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    expect(a).toBeGreaterThan(0);
    expect(b).toBeGreaterThan(0);
    expect(a).not.toBe(b);
    const va = new Float64Array(libc.view(a, 1 << 20));
    const vb = new Float64Array(libc.view(b, 1 << 20));
    va[1000] = Math.PI;
    expect(vb[1000]).toBe(Math.PI);
    vb[(1 << 17) - 1] = -2.5;
    expect(va[(1 << 17) - 1]).toBe(-2.5);
    expect(libc.munmap(a, 1 << 20)).toBe(0);
    expect(libc.munmap(b, 1 << 20)).toBe(0);
    expect(libc.close(fd)).toBe(0);
  });
});
