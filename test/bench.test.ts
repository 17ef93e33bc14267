/**
 * `ipre bench latency|load|payload` with tiny iteration counts on Node (src/cli.ts main, in this
 * vitest process), Bun and Deno (spawned: `bun src/cli.ts bench …`, `deno run --allow-all …`):
 * the JSON schema, every required row, positive values, p50 <= p90 <= p99, and the files written.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runScenario, type ScenarioRuntime } from "./harness.ts";
import { describeKvm } from "./kvm.ts";
import { main } from "../src/cli.ts";

const outRoot = mkdtempSync(join(tmpdir(), "ipre-bench-test-"));
afterAll(() => rmSync(outRoot, { recursive: true, force: true }));

type Runtime = "node" | ScenarioRuntime;

/** Run `ipre bench <args> --json --quiet --out DIR` on a runtime; the parsed JSON and the out dir. */
async function runBench(runtime: Runtime, args: string[]): Promise<{ json: any; dir: string }> {
  const dir = join(outRoot, `${args[0]}-${runtime}`);
  const argv = ["bench", ...args, "--json", "--quiet", "--out", dir];
  if (runtime === "node") {
    let stdout = "";
    const write = process.stdout.write;
    process.stdout.write = ((chunk: string | Uint8Array) => {
      stdout += typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk);
      return true;
    }) as typeof process.stdout.write;
    let code: number;
    try {
      code = await main(argv);
    } finally {
      process.stdout.write = write;
    }
    expect(code).toBe(0);
    return { json: JSON.parse(stdout.trimEnd().split("\n").pop()!), dir };
  }
  const r = await runScenario(runtime, "src/cli.ts", argv, { timeoutMs: 50_000 });
  if (r.code !== 0 || r.json === undefined) throw new Error(`${runtime} exited ${r.code}\n${r.stderr}\n${r.stdout}`);
  return { json: r.json, dir };
}

function checkPercentiles(row: any, what: string): void {
  for (const k of ["p50_ns", "p90_ns", "p99_ns", "max_ns", "mean_ns"]) {
    expect(typeof row[k], `${what}.${k}`).toBe("number");
    expect(row[k], `${what}.${k}`).toBeGreaterThan(0);
  }
  expect(row.p50_ns, what).toBeLessThanOrEqual(row.p90_ns);
  expect(row.p90_ns, what).toBeLessThanOrEqual(row.p99_ns);
  expect(row.p99_ns, what).toBeLessThanOrEqual(row.max_ns);
  expect(row.n, what).toBeGreaterThan(0);
}

function checkMachine(json: any, runtime: Runtime): void {
  expect(json.runtime).toBe(runtime);
  expect(json.machine.runtime).toBe(runtime);
  expect(json.machine.cores).toBeGreaterThan(0);
  expect(typeof json.machine.cpu).toBe("string");
  expect(typeof json.machine.ffi).toBe("string");
  expect(json.machine.kvm.flavour).toMatch(/^(pvm|hardware|unknown)$/);
}

const RUNTIMES: Runtime[] = ["node", "bun", "deno"];

describeKvm("ipre bench on Node, Bun and Deno", () => describe.each(RUNTIMES)("%s", (runtime) => {
  it("latency: seven rows with percentiles, histogram, exits per operation and ratios", async () => {
    const { json, dir } = await runBench(runtime, ["latency", "--iterations", "50", "--warmup", "5"]);
    checkMachine(json, runtime);
    const names = json.results.map((r: any) => r.name);
    expect(names).toEqual(["kvm_run", "hostcall", "hostcall_fault", "vmcall", "remote_call", "remote_call_trap", "syscall", "remote_call_libc"]);
    for (const r of json.results) {
      checkPercentiles(r, `${runtime} ${r.name}`);
      expect(r.n).toBe(50);
      expect(Array.isArray(r.histogram)).toBe(true);
      expect(r.histogram.reduce((a: number, b: any) => a + b.count, 0)).toBe(50);
    }
    const byName = Object.fromEntries(json.results.map((r: any) => [r.name, r]));
    expect(byName.remote_call.exits_per_op).toBe(0); // the fast path: merge and unmerge in the guest
    expect(byName.remote_call_trap.exits_per_op).toBe(2); // the host's path: entry and return
    expect(byName.hostcall.exits_per_op).toBe(1);
    expect(byName.vmcall.exits_per_op).toBe(1);
    expect(byName.syscall.exits_per_op).toBe(1); // one exit per syscall, on either route
    expect(byName.remote_call_libc.exits_per_op).toBe(0); // the libc adds no exit
    expect(byName.kvm_run.exits_per_op).toBe(1);
    expect(byName.hostcall_fault.exits_per_op).toBe(1); // the fetch-fault gate
    expect(json.ratios.remote_call_libc_over_remote_call).toBeGreaterThan(0);
    expect(json.ratios.remote_call_over_remote_call_trap).toBeGreaterThan(0);
    expect(json.ratios.remote_call_over_hostcall).toBeGreaterThan(0);
    // No bound against the floor: on hardware KVM a fast-path call (no exit) can beat one KVM_RUN.
    expect(json.ratios.remote_call_over_kvm_run).toBeGreaterThan(0);
    expect(json.ratios.remote_call_trap_over_kvm_run).toBeGreaterThan(0);
    expect(json.ratios.hostcall_over_hostcall_fault).toBeGreaterThan(0);
    for (const f of ["results.json", "machine.json", "summary.txt", "latency.svg"]) expect(existsSync(join(dir, f)), f).toBe(true);
    expect(readFileSync(join(dir, "latency.svg"), "utf8")).toMatch(/^<svg /);
  });

  it("load: every system at levels 0 and 100", async () => {
    const { json, dir } = await runBench(runtime, ["load", "--iterations", "50", "--warmup", "5", "--levels", "0,100", "--pace-us", "50"]);
    checkMachine(json, runtime);
    expect(json.config.levels).toEqual([0, 100]);
    for (const system of ["ipre", "atomics", "unix_socket", "ipre_paced"]) {
      for (const load of [0, 100]) {
        const row = json.results.find((r: any) => r.system === system && r.load === load);
        expect(row, `${system} @ ${load}%`).toBeDefined();
        checkPercentiles(row, `${runtime} ${system}@${load}`);
        expect(row.p99_degradation).toBeGreaterThan(0);
        expect(row.busy_processes).toBe(load === 0 ? 0 : json.machine.cores);
      }
    }
    for (const f of ["results.json", "machine.json", "summary.txt", "load.svg"]) expect(existsSync(join(dir, f)), f).toBe(true);
  });

  it("payload: both ops, every system at every size, positive throughput", async () => {
    const { json, dir } = await runBench(runtime, ["payload", "--max-size", "1MiB", "--iterations", "3"]);
    checkMachine(json, runtime);
    const sizes = [64, 256, 1024, 4096, 16384, 65536, 262144, 1048576];
    const systems = ["ipre", "ipre_direct", "worker_postmessage", "unix_socket", "local_js"];
    expect(json.config.sizes).toEqual(sizes);
    expect(json.config.ops).toEqual(["checksum", "sum64"]);
    expect(json.config.direct_remote_vmcall.ok).toBe(true);
    for (const op of ["checksum", "sum64"]) {
      for (const system of systems) {
        for (const bytes of sizes) {
          const rows = json.results.filter((r: any) => r.op === op && r.system === system && r.bytes === bytes);
          expect(rows, `${op} ${system} @ ${bytes}`).toHaveLength(1);
          expect(rows[0].ns_per_op).toBeGreaterThan(0);
          expect(rows[0].throughput_mib_s).toBeGreaterThan(0);
          expect(rows[0].n).toBe(3);
          // Exact exits per op: kvcaller's vmcall plus its remote call 3, a direct call from JS 1.
          expect(rows[0].exits_per_op, `${op} ${system} @ ${bytes}`).toBe(system === "ipre" || system === "ipre_direct" ? 1 : null); // via the caller: its fast-path call makes no exit
        }
      }
    }
    expect(json.results).toHaveLength(2 * systems.length * sizes.length);
    // Checksum rows come first: a lookup by system and size alone (older consumers) finds them.
    expect(json.results.find((r: any) => r.system === "ipre" && r.bytes === 64).op).toBe("checksum");
    for (const f of ["results.json", "machine.json", "summary.txt", "payload-time.svg", "payload-throughput.svg", "payload-sum64-time.svg", "payload-sum64-throughput.svg"]) {
      expect(existsSync(join(dir, f)), f).toBe(true);
    }
    expect(readFileSync(join(dir, "payload-sum64-time.svg"), "utf8")).toContain("u64 sum");
    expect(readFileSync(join(dir, "summary.txt"), "utf8")).toMatch(/^sum64: /m);
  });
}));
