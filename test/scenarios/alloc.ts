/**
 * Bytes the JS heap allocates per exit on the hot paths (run on Node with a small young
 * generation, see test/alloc.test.ts): a hostcall loop, an IPRE call loop, and a control whose
 * hostcall handler allocates on purpose, which shows that the measurement sees allocations.
 *
 * Allocated bytes = growth of the used heap + what each GC freed (node:v8 GCProfiler), taken at
 * the margin between a call of n and one of 2n iterations.
 */
import v8 from "node:v8";
import { Machine } from "../../src/machine/machine.ts";
import { connect } from "../../src/ipre/connect.ts";
import { exampleElf } from "../../src/examples.ts";
import { isMain, scaled } from "./common.ts";

interface GcStats {
  statistics: Array<{ beforeGC: { heapStatistics: { usedHeapSize: number } }; afterGC: { heapStatistics: { usedHeapSize: number } } }>;
}

function allocatedDuring(fn: () => void): number {
  const profiler = new v8.GCProfiler();
  profiler.start();
  const before = v8.getHeapStatistics().used_heap_size;
  fn();
  const after = v8.getHeapStatistics().used_heap_size;
  const { statistics } = profiler.stop() as unknown as GcStats;
  let freed = 0;
  for (const s of statistics) freed += s.beforeGC.heapStatistics.usedHeapSize - s.afterGC.heapStatistics.usedHeapSize;
  return after - before + freed;
}

let sink: number[] = [];
const N = scaled(20_000, 4) & ~1; // even: the IPRE loop makes N / 2 calls

export function allocReport() {
  using bench = Machine.create({ program: exampleElf("bench"), name: "bench", hostcalls: { 0: () => 1 } });
  using alloc = Machine.create({ program: exampleElf("bench"), name: "alloc", hostcalls: { 0: (a) => ((sink = [a, a]), sink.length - 1) } });
  using remote = Machine.create({ window: 1, program: exampleElf("kvstore"), name: "kvstore" });
  using caller = Machine.create({ window: 0, program: exampleElf("kvcaller"), name: "kvcaller" });
  // The host's path: its two exits per call are what this measures (the fast path makes none).
  using conn = connect(caller, remote, { path: "trap" });
  void conn;
  // Warm up: every path optimised before it is measured.
  for (let i = 0; i < 20; i++) {
    bench.call("hostcall_loop", 500);
    alloc.call("hostcall_loop", 500);
    caller.call("call_remote_n", 250);
  }
  const once = (m: Machine, fn: string, n: number) => {
    let result = 0;
    const exits0 = m.exits;
    const bytes = allocatedDuring(() => (result = m.call(fn, n)));
    return { result, exits: m.exits - exits0, bytes };
  };
  // Bytes per exit at the margin: a call with 2n iterations against one with n, so what a call
  // allocates once (its arguments, the profiler's own bookkeeping) cancels out.
  const measure = (m: Machine, fn: string, n: number) => {
    const small = once(m, fn, n);
    const big = once(m, fn, 2 * n);
    return { n, small, big, bytesPerExit: (big.bytes - small.bytes) / (big.exits - small.exits) };
  };
  return {
    n: N,
    hostcall: measure(bench, "hostcall_loop", N),
    ipre: measure(caller, "call_remote_n", N / 2),
    control: measure(alloc, "hostcall_loop", N),
  };
}

if (isMain(import.meta)) console.log(JSON.stringify(allocReport()));
