/**
 * guests/examples/kvshared.c, the thread-safe remote of the fan-in benchmark:
 *  - its C source compiled for the host with test/native/kvshared-threads.c and run by 2 and 4
 *    pthreads doing 10,000 mixed puts and gets each (every result and the final contents
 *    checked): the concurrency of the store itself, without KVM;
 *  - kvshared.elf loaded in window 1 and called from the host (KVM): the ABI of the guest build.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { repoRoot } from "./harness.ts";
import { describeKvm, describePure } from "./kvm.ts";

const haveGcc = spawnSync("gcc", ["--version"], { stdio: "ignore" }).status === 0;
const dir = mkdtempSync(join(tmpdir(), "ipre-kvshared-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MISSING = -1n; // KV_MISSING (~0) as the signed 64-bit result

describePure("kvshared.c on host threads", () => {
  const exe = join(dir, "kvshared-threads");
  it.skipIf(!haveGcc).each([2, 4])(`%i threads x 10,000 mixed puts and gets: every result and the final contents${haveGcc ? "" : " [skipped: needs gcc on PATH, not found]"}`, (threads) => {
    const build = spawnSync("gcc", ["-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-o", exe, "test/native/kvshared-threads.c", "guests/examples/kvshared.c"], { cwd: repoRoot, encoding: "utf8" });
    expect(build.status, build.stderr).toBe(0);
    const r = spawnSync(exe, [String(threads), "10000"], { encoding: "utf8" });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({ threads, ops: 10_000, errors: 0, final_errors: 0 });
    expect(report.puts + report.gets).toBe(threads * 10_000);
    expect(report.count).toBe(report.own_keys + report.shared_keys);
    expect(report.own_keys).toBeGreaterThan(threads * 900); // ~1024 own keys per thread are touched
  });
});

describeKvm("kvshared.elf in window 1", () => {
  it("put, get, has, count, clear and the refused sentinels", async () => {
    const { Machine } = await import("../src/machine/machine.ts");
    const { exampleElf } = await import("../src/examples.ts");
    using m = Machine.create({ window: 1, program: exampleElf("kvshared"), name: "kvshared" });
    expect(m.call("kv_capacity")).toBe(65536);
    expect(m.call("kv_put", 7, 70)).toBe(1);
    expect(m.call("kv_put", 7, 71)).toBe(0);
    // u64 keys and values as signed 64-bit arguments: key 2^63, value 2^64 - 2 (~1).
    expect(m.call("kv_put", -(2n ** 63n), -2n)).toBe(1);
    expect(m.callBigInt("kv_get", 7)).toBe(71n);
    expect(m.callBigInt("kv_get", -(2n ** 63n))).toBe(-2n);
    expect(m.callBigInt("kv_get", 8)).toBe(MISSING);
    expect(m.call("kv_has", 7)).toBe(1);
    expect(m.call("kv_has", 8)).toBe(0);
    expect(m.call("kv_put", 0, 1)).toBe(-2);
    expect(m.call("kv_put", 9, -1)).toBe(-2);
    expect(m.call("kv_count")).toBe(2);
    expect(m.call("kv_clear")).toBe(2);
    expect(m.call("kv_count")).toBe(0);
    expect(m.callBigInt("kv_get", 7)).toBe(MISSING);
  });
});
