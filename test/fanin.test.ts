/**
 * `ipre bench fanin` (src/bench/fanin*.ts). The baselines need no KVM, so this runs everywhere:
 *  - the workload and its checking, in-process (a correct store passes, a wrong one is caught);
 *  - `bench fanin --workers 1,2 --ops 500 --json` on Node (the compiled CLI, bin/ipre.js: its
 *    module workers load dist/bench/fanin-worker.js), Bun and Deno (src/cli.ts): the JSON shape,
 *    every row, both baselines at every worker count, ipre (a vmcall into the remote: 3 exits per
 *    op) and ipre_direct (Connection.call: 1 exit per op) measured wherever /dev/kvm is usable
 *    (else reported as skipped, with the reason), and the files written.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cliCommand, ensureDist } from "./cli-run.ts";
import { JsKv, KV_MISSING, keyBase, runWorkload, type FaninClient } from "../src/bench/fanin-workload.ts";
import { repoRoot } from "./harness.ts";
import { describeKvmOptional, describePure, HAVE_KVM, upperMs } from "./kvm.ts";

const outRoot = mkdtempSync(join(tmpdir(), "ipre-fanin-test-"));
afterAll(() => rmSync(outRoot, { recursive: true, force: true }));

describePure("fan-in workload", () => {
  it("JsKv answers like kvshared.c: 1 new, 0 updated, the value or KV_MISSING", () => {
    const kv = new JsKv();
    expect(kv.get(5)).toBe(KV_MISSING);
    expect(kv.put(5, 50)).toBe(1);
    expect(kv.put(5, 51)).toBe(0);
    expect(kv.get(5)).toBe(51);
    expect(kv.serve(1, 6, 60)).toBe(1);
    expect(kv.serve(2, 6, 0)).toBe(60);
    expect(kv.serve(3, 0, 0)).toBe(2);
    expect(kv.serve(9, 0, 0)).toBe(-2);
  });

  it("two workers on one store: every reply as modelled, ranges disjoint, the sequence deterministic", async () => {
    const kv = new JsKv();
    const client: FaninClient = { put: (k, v) => kv.put(k, v), get: (k) => kv.get(k) };
    let barriers = 0;
    const a = await runWorkload(client, { index: 0, ops: 3000, warmup: 100, keys: 64 }, () => void barriers++);
    const b = await runWorkload(client, { index: 1, ops: 3000, warmup: 100, keys: 64 }, async () => void barriers++);
    expect(barriers).toBe(2);
    for (const r of [a, b]) {
      expect(r.errors, r.firstError).toBe(0);
      expect(r.samples.length).toBe(3000);
      expect(r.samples.every((s) => s >= 0)).toBe(true);
      expect(r.puts).toBeGreaterThan(1200); // about half of 3000
      expect(r.puts).toBeLessThan(1800);
      expect(r.keysStored).toBe(64); // 3100 ops over 64 keys put every one
    }
    expect(kv.count).toBe(128);
    expect(kv.get(keyBase(1))).not.toBe(KV_MISSING);
    // The same seed gives the same sequence: a second store ends with the same contents.
    const kv2 = new JsKv();
    await runWorkload({ put: (k, v) => kv2.put(k, v), get: (k) => kv2.get(k) }, { index: 1, ops: 3000, warmup: 100, keys: 64 }, () => {});
    for (let k = 0; k < 64; k++) expect(kv2.get(keyBase(1) + k)).toBe(kv.get(keyBase(1) + k));
  });

  it("a wrong store is caught: a lost update, a missing key", async () => {
    const kv = new JsKv();
    let n = 0;
    // Drops every 100th put but answers as if it had stored it.
    const lossy: FaninClient = { put: (k, v) => (n++ % 100 === 99 ? (kv.get(k) === KV_MISSING ? 1 : 0) : kv.put(k, v)), get: (k) => kv.get(k) };
    const r = await runWorkload(lossy, { index: 0, ops: 2000, warmup: 0, keys: 32 }, () => {});
    expect(r.errors).toBeGreaterThan(0);
    expect(r.firstError).toMatch(/^worker 0: (final )?get\(\d+\) replied/);
    const forgetful: FaninClient = { put: () => 1, get: () => Promise.resolve(KV_MISSING) };
    const f = await runWorkload(forgetful, { index: 3, ops: 200, warmup: 0, keys: 8 }, () => {});
    expect(f.errors).toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------- the CLI on three runtimes

const RUNTIMES = ["node", "bun", "deno"] as const;

describeKvmOptional("ipre bench fanin", () => describe.each(RUNTIMES)("%s", (rt) => {
  it("--workers 1,2 --ops 500 --json: both baselines at both counts, every row sane, ipre and ipre_direct measured where KVM is usable", () => {
    if (rt === "node") ensureDist(["cli.js", "mod.js", "bench/fanin-worker.js"]);
    const dir = join(outRoot, rt);
    const [cmd, argv] = cliCommand(rt, ["bench", "fanin", "--workers", "1,2", "--ops", "500", "--warmup", "50", "--json", "--quiet", "--out", dir]);
    const r = spawnSync(cmd, argv, { cwd: repoRoot, encoding: "utf8", timeout: upperMs(90_000), env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" } });
    expect(r.status, `${r.stderr}\n${r.stdout}`).toBe(0);
    const json = JSON.parse(r.stdout.trimEnd().split("\n").pop()!);
    expect(json.runtime).toBe(rt);
    expect(json.machine.runtime).toBe(rt);
    expect(json.config).toMatchObject({ workers: [1, 2], ops: 500, warmup: 50 });
    for (const row of json.results) {
      expect(["ipre", "ipre_direct", "atomics_server", "unix_socket"]).toContain(row.system);
      expect([1, 2]).toContain(row.workers);
      expect(row.ops_per_s, `${row.system} x${row.workers}`).toBeGreaterThan(0);
      expect(row.p50_ns).toBeGreaterThan(0);
      expect(row.p50_ns).toBeLessThanOrEqual(row.p99_ns);
      expect(row.p99_ns).toBeLessThanOrEqual(row.max_ns);
      expect(row.n).toBe(row.workers * 500);
      // 550 ops per worker, half of them puts over 1024 keys: about 240 distinct keys each.
      expect(row.keys_stored).toBeGreaterThan(row.workers * 100);
    }
    for (const system of ["atomics_server", "unix_socket"]) {
      for (const workers of [1, 2]) expect(json.results.filter((x: any) => x.system === system && x.workers === workers), `${system} x${workers}`).toHaveLength(1);
    }
    // Same workload on every system: the store ends with the same number of keys.
    for (const workers of [1, 2]) expect(new Set(json.results.filter((x: any) => x.workers === workers).map((x: any) => x.keys_stored)).size).toBe(1);
    // Exits per op are exact: a vmcall into the caller, whose code calls the remote on the fast
    // path, takes 1 (the exit trap); a direct call 1 (the exit trap); the baselines have none.
    const exits = { ipre: 1, ipre_direct: 1, atomics_server: null, unix_socket: null } as Record<string, number | null>;
    for (const row of json.results) expect(row.exits_per_op, `${row.system} x${row.workers}`).toBe(exits[row.system]);
    // Where KVM is required (CI) the ipre rows must be there, never "skipped".
    if (HAVE_KVM || process.env.IPRE_REQUIRE_KVM === "1") {
      for (const system of ["ipre", "ipre_direct"]) expect(json.results.filter((x: any) => x.system === system), `${system} ${JSON.stringify(json.skipped)}`).toHaveLength(2);
      expect(readFileSync(join(dir, "summary.txt"), "utf8")).toMatch(/^ipre_direct\s+1\s+\d+ .* 1$/m);
      expect(readFileSync(join(dir, "summary.txt"), "utf8")).toMatch(/^ipre_direct \/ ipre ops\/s \(same run\): 1 worker [\d.]+x, 2 workers [\d.]+x$/m);
    } else {
      expect(json.skipped).toEqual(["ipre", "ipre_direct"].map((system) => ({ system, reason: expect.stringMatching(/\/dev\/kvm/) })));
    }
    for (const f of ["results.json", "machine.json", "summary.txt", "fanin.svg", "fanin-latency.svg"]) expect(existsSync(join(dir, f)), f).toBe(true);
    expect(readFileSync(join(dir, "fanin.svg"), "utf8")).toMatch(/^<svg [\s\S]*<polyline/);
    expect(readFileSync(join(dir, "summary.txt"), "utf8")).toMatch(/atomics_server\s+2\s+\d+/);
  });
}));
