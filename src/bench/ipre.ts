/**
 * The IPRE-side measurements shared by the benchmarks: machines for bench.elf and the
 * kvcaller -> kvstore pair, and per-call samples taken between consecutive hook invocations.
 */
import { Machine } from "../machine/machine.ts";
import { connect, type Connection } from "../ipre/connect.ts";
import type { CallPath } from "../engine/fastpath.ts";
import { exampleElf } from "../examples.ts";
import { MiB } from "../guest/layout.ts";

export interface Pair {
  caller: Machine;
  remote: Machine;
  conn: Connection;
  close(): void;
}

/** kvcaller (window 0) connected to kvstore (window 1); caller memory and call path as requested. */
export function createPair(callerMemory = 32 * MiB, path: CallPath = "fast"): Pair {
  const remote = Machine.create({ window: 1, program: exampleElf("kvstore"), name: "kvstore", hostcalls: { 1: (a) => a } });
  let caller: Machine | undefined;
  try {
    caller = Machine.create({ window: 0, memory: callerMemory, program: exampleElf("kvcaller"), name: "kvcaller" });
    const conn = connect(caller, remote, { path });
    const c = caller;
    return {
      caller: c,
      remote,
      conn,
      close() {
        conn.disconnect();
        c.close();
        remote.close();
      },
    };
  } catch (e) {
    caller?.close();
    remote.close();
    throw e;
  }
}

/**
 * Remote-call round trips: a guest loop of remote calls (`call_remote_n`) with a timestamp taken
 * at every IPRE entry; consecutive entries are one round trip apart (entry fault exit, merge,
 * remote code, return-trap exit, unmerge, loop). Runs in chunks so that a duration limit can
 * stop it; the first gap of each chunk is not a round trip and is skipped. Samples in ns.
 */
export function remoteCallSamples(caller: Machine, iterations: number, warmup: number, limitMs = Infinity, chunk = 2000): { samples: Float64Array; exitsPerCall: number } {
  const samples = new Float64Array(iterations);
  let taken = 0;
  let toSkip = warmup;
  let last = -1;
  caller.onRemoteEntry = () => {
    const now = performance.now();
    if (last >= 0) {
      if (toSkip > 0) toSkip--;
      else if (taken < iterations) samples[taken++] = (now - last) * 1e6;
    }
    last = now;
  };
  const start = performance.now();
  const exits0 = caller.exits;
  let calls = 0;
  let chunks = 0;
  try {
    while (taken < iterations && performance.now() - start < limitMs) {
      const n = Math.min(chunk, iterations - taken + toSkip) + 1;
      last = -1;
      caller.call("call_remote_n", n);
      calls += n;
      chunks++;
    }
  } finally {
    caller.onRemoteEntry = undefined;
  }
  // Each chunk is one vmcall (one exit for its end) plus the exits of its remote calls.
  return { samples: samples.subarray(0, taken), exitsPerCall: calls ? (caller.exits - exits0 - chunks) / calls : NaN };
}

/** Calls per call_remote_stamped chunk (STAMPS in kvcaller.c and libc-bench.c). */
const STAMPED_CHUNK = 2048;

/** One guest loop that stamps the TSC into `call_stamps`: the gaps in ns, the TSC rate calibrated against performance.now() over the loop. */
function stampedGaps(caller: Machine, fn: string, want: number): Float64Array {
  const t0 = performance.now();
  const n = caller.call(fn, want);
  const t1 = performance.now();
  const raw = caller.read(caller.symbol("call_stamps"), (n + 1) * 8);
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const tsc = (i: number): number => Number(dv.getBigUint64(i * 8, true));
  const nsPerTick = ((t1 - t0) * 1e6) / (tsc(n) - tsc(0));
  const gaps = new Float64Array(n);
  for (let i = 0; i < n; i++) gaps[i] = (tsc(i + 1) - tsc(i)) * nsPerTick;
  return gaps;
}

/**
 * Remote-call round trips timed by the guest itself: call_remote_stamped(n) (kvcaller.c,
 * libc-bench.c) reads the TSC before each remote call and after the last, into `call_stamps`.
 * Calls on the fast path make no exit that the host could time. The TSC rate is calibrated
 * against performance.now() over each chunk (n calls; the vmcall's own entry and exit add
 * well under 0.1% at these chunk sizes). What one stamp costs (the median gap of
 * stamped_empty, the same loop without the call, measured first: `rdtsc` may trap)
 * is subtracted from every sample. Samples in ns.
 */
export function remoteCallStampedSamples(caller: Machine, iterations: number, warmup: number, limitMs = Infinity): { samples: Float64Array; exitsPerCall: number; stampNs: number } {
  const samples = new Float64Array(iterations);
  const stamps = caller.symbol("call_stamps");
  const empty = stampedGaps(caller, "stamped_empty", STAMPED_CHUNK).sort();
  const stampNs = empty[empty.length >> 1] ?? 0;
  let taken = 0;
  let toSkip = warmup;
  let calls = 0;
  let chunks = 0;
  const exits0 = caller.exits;
  const start = performance.now();
  while (taken < iterations && performance.now() - start < limitMs) {
    const want = Math.min(STAMPED_CHUNK, iterations - taken + toSkip);
    const t0 = performance.now();
    const n = caller.call("call_remote_stamped", want);
    const t1 = performance.now();
    calls += n;
    chunks++;
    const raw = caller.read(stamps, (n + 1) * 8);
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const tsc = (i: number): number => Number(dv.getBigUint64(i * 8, true));
    const nsPerTick = ((t1 - t0) * 1e6) / (tsc(n) - tsc(0));
    for (let i = 0; i < n && taken < iterations; i++) {
      if (toSkip > 0) toSkip--;
      else samples[taken++] = Math.max(0, (tsc(i + 1) - tsc(i)) * nsPerTick - stampNs);
    }
  }
  // Each chunk is one vmcall (one exit for its end) plus the exits of its remote calls.
  return { samples: samples.subarray(0, taken), exitsPerCall: calls ? (caller.exits - exits0 - chunks) / calls : NaN, stampNs };
}

/**
 * Remote-call round trips of a *request-driven* caller: the caller thread sleeps `paceUs` (a
 * timed Atomics.wait, so it blocks in the kernel like the baselines' threads do) before each
 * request; a request is a vmcall of call_remote_n(2) and the sample is the gap between its two
 * IPRE entries, i.e. one remote-call round trip started right after a wake-up. Samples in ns.
 */
export function remoteCallPacedSamples(caller: Machine, iterations: number, warmup: number, limitMs = Infinity, paceUs = 200): Float64Array {
  const samples = new Float64Array(iterations);
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  let first = 0;
  let second = 0;
  let k = 0;
  caller.onRemoteEntry = () => {
    const now = performance.now();
    if (k++ === 0) first = now;
    else second = now;
  };
  let taken = 0;
  const start = performance.now();
  try {
    for (let i = 0; i < iterations + warmup && performance.now() - start < limitMs; i++) {
      Atomics.wait(sleeper, 0, 0, paceUs / 1000);
      k = 0;
      caller.call("call_remote_n", 2);
      if (i >= warmup) samples[taken++] = (second - first) * 1e6;
    }
  } finally {
    caller.onRemoteEntry = undefined;
  }
  return samples.subarray(0, taken);
}
