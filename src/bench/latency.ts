/**
 * `ipre bench latency`: the paper's per-call latency protocol (10,000 iterations after 100
 * warm-up) for the four round trips ipre is built from:
 *
 *   kvm_run      one raw KVM_RUN of the parked runtime (ring-0 `out` loop): the exit floor
 *   hostcall     guest -> JS handler -> guest (bench.elf hostcall_loop; time between handler calls),
 *                through the ring-3 gate: its `out` exits (docs/ARCHITECTURE.md §4)
 *   hostcall_fault  the same loop through the fetch-fault gate (the machine's gate pages unmapped:
 *                the path remote code calling its caller's gates takes), measured in the same run
 *   vmcall       JS -> guest `nop` -> JS (time around Machine.call)
 *   remote_call  caller guest -> remote guest -> caller guest on the fast path (the runtime's
 *                #PF handler merges and unmerges, no exit: timed by the guest's TSC)
 *   remote_call_trap  the same call on the host's path (entry and return exit to the VMM; time
 *                between IPRE entries)
 *   syscall      a Linux program's `syscall` -> TS syscall layer -> program (libc-bench.elf
 *                syscall_loop: time between handler calls; on PVM the `syscall` arrives as a
 *                fetch fault at LSTAR, still one exit)
 *   remote_call_libc  the fast-path remote call between two glibc programs (libc-bench.elf ->
 *                counter.elf counter_calls, which reads the remote's TLS): the libc adds no exit
 */
import process from "node:process";
import type { Flags } from "../flags.ts";
import { Machine } from "../machine/machine.ts";
import { exampleElf, linuxElf } from "../examples.ts";
import { connect } from "../ipre/connect.ts";
import { cpuOf } from "../engine/facade.ts";
import { setGatePages } from "../engine/gates.ts";
import { reporter, writeResults } from "./common.ts";
import { intOption } from "../flags.ts";
import { describeMachine, machineLine, plotSubtitle } from "./machine-info.ts";
import { createPair, remoteCallSamples, remoteCallStampedSamples } from "./ipre.ts";
import { fmtNs, summarize, table, type Summary } from "./stats.ts";
import { formatNsAxis, linePlot } from "./svg.ts";

export interface LatencyRow extends Summary {
  name: "kvm_run" | "hostcall" | "hostcall_fault" | "vmcall" | "remote_call" | "remote_call_trap" | "syscall" | "remote_call_libc";
  /** KVM exits per operation (measured from Machine.exits). */
  exits_per_op: number;
  /** Rows timed by the guest's TSC: the cost of one stamp, subtracted from every sample (ns). */
  tsc_stamp_ns?: number;
  p99_over_p50: number;
}

function timeJs(iterations: number, warmup: number, op: () => void): Float64Array {
  for (let i = 0; i < warmup; i++) op();
  const s = new Float64Array(iterations);
  for (let i = 0; i < iterations; i++) {
    const t = performance.now();
    op();
    s[i] = (performance.now() - t) * 1e6;
  }
  return s;
}

function row(name: LatencyRow["name"], samples: Float64Array, exitsPerOp: number): LatencyRow {
  const s = summarize(samples);
  return { name, ...s, exits_per_op: Math.round(exitsPerOp * 1000) / 1000, p99_over_p50: Math.round((s.p99_ns / s.p50_ns) * 100) / 100 };
}

export interface LatencyResult {
  runtime: string;
  machine: ReturnType<typeof describeMachine>;
  config: { iterations: number; warmup: number };
  results: LatencyRow[];
  ratios: Record<string, number>;
}

/** The steps measureLatency reports through `progress` (one per operation measured). */
export const LATENCY_STEPS = 7;

/** getppid: the syscall the syscall row makes (a user handler that only takes a timestamp). */
const NR_GETPPID = 110;

/**
 * Timestamps taken by a handler (hostcall or syscall) that a guest loop calls `total` times:
 * consecutive ones are one round trip apart (exit, handler, resume, loop).
 */
class Stamps {
  readonly total: number;
  readonly #t: Float64Array;
  #k = 0;
  constructor(readonly iterations: number, readonly warmup: number) {
    this.total = iterations + warmup + 1;
    this.#t = new Float64Array(this.total);
  }
  /** The handler: one timestamp, result 0. */
  readonly take = (): number => {
    if (this.#k < this.total) this.#t[this.#k++] = performance.now();
    return 0;
  };
  /** The round trips after the warm-up, in ns. */
  gaps(): Float64Array {
    const g = new Float64Array(this.iterations);
    for (let i = 0; i < this.iterations; i++) g[i] = ((this.#t[this.warmup + i + 1] ?? 0) - (this.#t[this.warmup + i] ?? 0)) * 1e6;
    return g;
  }
}

export function measureLatency(iterations: number, warmup: number, progress: (s: string) => void): LatencyRow[] {
  const rows: LatencyRow[] = [];
  {
    const stamps = new Stamps(iterations, warmup);
    using m = Machine.create({ name: "bench", program: exampleElf("bench"), hostcalls: { 0: stamps.take } });
    progress(`kvm_run: ${iterations} + ${warmup} warm-up raw KVM_RUN round trips`);
    // serviceRun does not count in Machine.exits: it is one KVM_RUN by construction. Its
    // watchdog (a timer armed and disarmed around every service run: three more syscalls) is
    // off here, so that the row is the raw KVM_RUN round trip it claims to be.
    const limit = Machine.serviceRunLimitMs;
    Machine.serviceRunLimitMs = 0;
    try {
      rows.push(row("kvm_run", timeJs(iterations, warmup, () => m.serviceRun()), 1));
    } finally {
      Machine.serviceRunLimitMs = limit;
    }

    progress(`hostcall: ${iterations} + ${warmup} warm-up hostcalls in one guest loop`);
    let e0 = m.exits;
    m.call("hostcall_loop", stamps.total);
    rows.push(row("hostcall", stamps.gaps(), (m.exits - e0 - 1) / stamps.total));

    progress(`hostcall_fault: ${iterations} + ${warmup} warm-up hostcalls through the fetch-fault gate`);
    const faults = new Stamps(iterations, warmup);
    m.hostcalls.set(0, faults.take);
    setGatePages(cpuOf(m), false);
    e0 = m.exits;
    m.call("hostcall_loop", faults.total);
    rows.push(row("hostcall_fault", faults.gaps(), (m.exits - e0 - 1) / faults.total));
    setGatePages(cpuOf(m), true);

    progress(`vmcall: ${iterations} + ${warmup} warm-up calls of nop()`);
    e0 = m.exits;
    rows.push(row("vmcall", timeJs(iterations, warmup, () => m.call("nop")), (m.exits - e0) / (iterations + warmup)));
  }
  {
    const pair = createPair();
    try {
      progress(`remote_call: ${iterations} + ${warmup} warm-up remote calls on the fast path (kvcaller -> kvstore.kv_count)`);
      const { samples, exitsPerCall, stampNs } = remoteCallStampedSamples(pair.caller, iterations, warmup);
      rows.push({ ...row("remote_call", samples, exitsPerCall), tsc_stamp_ns: Math.round(stampNs) });
    } finally {
      pair.close();
    }
  }
  {
    const pair = createPair(undefined, "trap");
    try {
      progress(`remote_call_trap: ${iterations} + ${warmup} warm-up remote calls on the host's path (kvcaller -> kvstore.kv_count)`);
      const { samples, exitsPerCall } = remoteCallSamples(pair.caller, iterations, warmup);
      rows.push(row("remote_call_trap", samples, exitsPerCall));
    } finally {
      pair.close();
    }
  }
  rows.push(...measureLinux(iterations, warmup, progress));
  return rows;
}

/** The syscall and remote_call_libc rows: libc-bench.elf (window 0) connected to counter.elf (window 1). */
function measureLinux(iterations: number, warmup: number, progress: (s: string) => void): LatencyRow[] {
  const rows: LatencyRow[] = [];
  const stamps = new Stamps(iterations, warmup);
  const quiet = { stdout: () => {}, stderr: () => {} };
  using remote = Machine.create({ window: 1, name: "counter", program: linuxElf("counter"), linux: quiet });
  using caller = Machine.create({ window: 0, name: "libc-bench" });
  using _conn = connect(caller, remote);
  caller.exec(linuxElf("libc-bench"), {
    ...quiet,
    syscalls: { [NR_GETPPID]: stamps.take },
  });
  progress(`syscall: ${iterations} + ${warmup} warm-up getppid syscalls of a glibc program`);
  const e0 = caller.exits;
  caller.call("syscall_loop", stamps.total);
  rows.push(row("syscall", stamps.gaps(), (caller.exits - e0 - 1) / stamps.total));
  progress(`remote_call_libc: ${iterations} + ${warmup} warm-up remote calls between glibc programs (libc-bench -> counter.counter_calls)`);
  const { samples, exitsPerCall, stampNs } = remoteCallStampedSamples(caller, iterations, warmup);
  rows.push({ ...row("remote_call_libc", samples, exitsPerCall), tsc_stamp_ns: Math.round(stampNs) });
  return rows;
}

export function latencyRatios(rows: LatencyRow[]): Record<string, number> {
  const p50 = (n: string) => rows.find((r) => r.name === n)?.p50_ns ?? NaN;
  const r2 = (v: number) => Math.round(v * 100) / 100;
  return {
    remote_call_over_remote_call_trap: r2(p50("remote_call") / p50("remote_call_trap")),
    remote_call_trap_over_kvm_run: r2(p50("remote_call_trap") / p50("kvm_run")),
    remote_call_over_hostcall: r2(p50("remote_call") / p50("hostcall")),
    remote_call_over_kvm_run: r2(p50("remote_call") / p50("kvm_run")),
    remote_call_over_vmcall: r2(p50("remote_call") / p50("vmcall")),
    hostcall_over_kvm_run: r2(p50("hostcall") / p50("kvm_run")),
    hostcall_fault_over_kvm_run: r2(p50("hostcall_fault") / p50("kvm_run")),
    hostcall_over_hostcall_fault: r2(p50("hostcall") / p50("hostcall_fault")),
    vmcall_over_kvm_run: r2(p50("vmcall") / p50("kvm_run")),
    syscall_over_hostcall: r2(p50("syscall") / p50("hostcall")),
    syscall_over_kvm_run: r2(p50("syscall") / p50("kvm_run")),
    remote_call_libc_over_remote_call: r2(p50("remote_call_libc") / p50("remote_call")),
  };
}

function latencySvg(rows: LatencyRow[], title: string, subtitle: string): string {
  return linePlot(
    rows.map((r) => ({
      name: `${r.name} (p50 ${fmtNs(r.p50_ns).replace(" us", " µs")})`,
      // An empty bucket (count 0) breaks the line: isolated tail samples show as lone points.
      points: r.histogram.map((b) => [Math.sqrt(b.lo_ns * b.hi_ns), b.count] as [number, number]),
    })),
    { title, subtitle, xLabel: "latency per operation (log scale; buckets of 10 per decade)", yLabel: "operations per bucket", logX: true, logY: true, xFormat: formatNsAxis, width: 860 },
  );
}

export async function latencyCommand(flags: Flags): Promise<number> {
  const rep = reporter(flags);
  const iterations = intOption(flags, "iterations", 10_000);
  const warmup = intOption(flags, "warmup", 100, 0);
  const machine = describeMachine();
  rep.progress(`latency on ${machineLine(machine)}`);
  rep.plan(LATENCY_STEPS);
  let rows: LatencyRow[];
  try {
    rows = measureLatency(iterations, warmup, rep.step);
  } finally {
    rep.done();
  }
  const ratios = latencyRatios(rows);
  const result: LatencyResult = { runtime: machine.runtime, machine, config: { iterations, warmup }, results: rows, ratios };

  const lines: string[] = [];
  lines.push(`ipre bench latency: ${iterations} iterations after ${warmup} warm-up`);
  lines.push(machineLine(machine));
  lines.push("");
  lines.push(
    table([
      ["operation", "n", "p50", "p90", "p99", "max", "mean", "p99/p50", "exits/op"],
      ...rows.map((r) => [r.name, String(r.n), fmtNs(r.p50_ns), fmtNs(r.p90_ns), fmtNs(r.p99_ns), fmtNs(r.max_ns), fmtNs(r.mean_ns), r.p99_over_p50.toFixed(2), String(r.exits_per_op)]),
    ]),
  );
  lines.push("");
  lines.push(`remote_call / remote_call_trap = ${fixed2(ratios.remote_call_over_remote_call_trap)} (p50; the fast path, no exit, over the host's path, two exits)`);
  const stamp = rows.find((r) => r.name === "remote_call")?.tsc_stamp_ns;
  if (stamp !== undefined) lines.push(`remote_call and remote_call_libc are timed by the guest's TSC; one rdtsc stamp (${fmtNs(stamp)}, measured in the same run) is subtracted from each sample`);
  lines.push(`remote_call / kvm_run  = ${fixed2(ratios.remote_call_over_kvm_run)}, remote_call_trap / kvm_run = ${fixed2(ratios.remote_call_trap_over_kvm_run)} (p50; cost over the raw KVM_RUN floor)`);
  lines.push(`remote_call / hostcall = ${fixed2(ratios.remote_call_over_hostcall)} (p50)`);
  lines.push(`remote_call / vmcall   = ${fixed2(ratios.remote_call_over_vmcall)}, hostcall / kvm_run = ${fixed2(ratios.hostcall_over_kvm_run)}, vmcall / kvm_run = ${fixed2(ratios.vmcall_over_kvm_run)}`);
  lines.push(`hostcall / hostcall_fault = ${fixed2(ratios.hostcall_over_hostcall_fault)}, hostcall_fault / kvm_run = ${fixed2(ratios.hostcall_fault_over_kvm_run)} (p50; the ring-3 gate against the fetch-fault gate, one exit each)`);
  lines.push(`syscall / hostcall = ${fixed2(ratios.syscall_over_hostcall)}, syscall / kvm_run = ${fixed2(ratios.syscall_over_kvm_run)}, remote_call_libc / remote_call = ${fixed2(ratios.remote_call_libc_over_remote_call)} (p50; the libc must add no exit)`);
  const text = lines.join("\n") + "\n";

  const dir = writeResults(flags, "latency", {
    "results.json": JSON.stringify(result, null, 2) + "\n",
    "machine.json": JSON.stringify(machine, null, 2) + "\n",
    "summary.txt": text,
    "latency.svg": latencySvg(rows, "ipre latency distribution: one round trip per sample", plotSubtitle(machine, `${iterations} samples per row after ${warmup} warm-up`)),
  });
  rep.progress(`results written to ${dir}`);
  if (rep.json) process.stdout.write(JSON.stringify(result) + "\n");
  else rep.say(text.trimEnd());
  return 0;
}

/** A ratio with two decimals ("NaN" for one that a run did not measure). */
function fixed2(x: number | undefined): string {
  return (x ?? NaN).toFixed(2);
}
