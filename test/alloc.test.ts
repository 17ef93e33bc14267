/**
 * The README's promise "no allocation on the hostcall/IPRE paths", measured: on Node with a 1 MiB
 * young generation (so that allocation shows as scavenges), the heap bytes allocated per exit of
 * a hostcall loop and of an IPRE call loop, against a control whose handler allocates an array
 * per hostcall. V8 only (Deno runs the same engine; Bun's JSC has no equivalent of GCProfiler).
 */
import { spawn } from "node:child_process";
import { expect, it } from "vitest";
import { repoRoot } from "./harness.ts";
import { describeKvm, upperMs } from "./kvm.ts";
import type { allocReport } from "./scenarios/alloc.ts";

type Report = ReturnType<typeof allocReport>;

function run(): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--max-semi-space-size=1", "--import", `${repoRoot}test/node-ts.mjs`, "test/scenarios/alloc.ts"], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), upperMs(60_000));
    child.on("error", reject);
    child.on("close", (code) => (clearTimeout(timer), resolve({ code: code ?? -1, stdout, stderr })));
  });
}

describeKvm("allocation on the exit paths (Node, V8 GC profiler)", () => {
  it("hostcall and IPRE loops allocate nothing per exit; an allocating handler is seen", async () => {
    const r = await run();
    expect(r.code, r.stderr).toBe(0);
    const rep = JSON.parse(r.stdout.trim().split("\n").pop()!) as Report;
    // The calls did what they should, with the exits they should.
    for (const [what, k] of [["small", 1], ["big", 2]] as const) {
      expect(rep.hostcall[what].result).toBe(k * rep.n);
      expect(rep.hostcall[what].exits).toBe(k * rep.n + 1);
      expect(rep.ipre[what].exits).toBe(2 * k * (rep.n / 2) + 1);
      expect(rep.control[what].exits).toBe(k * rep.n + 1);
    }
    // The control allocates a 2-element array per hostcall (>= 16 bytes on V8): the method sees it.
    expect(rep.control.bytesPerExit, JSON.stringify(rep.control)).toBeGreaterThan(16);
    // The measured paths: under a byte per exit at the margin (any real allocation is >= 16).
    expect(rep.hostcall.bytesPerExit, JSON.stringify(rep.hostcall)).toBeLessThan(1);
    expect(rep.ipre.bytesPerExit, JSON.stringify(rep.ipre)).toBeLessThan(1);
  }, upperMs(70_000));
});
