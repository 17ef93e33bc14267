/**
 * `ipre demo`: the paper's storage pattern. A remote VM holds a key-value store; a caller VM
 * serves requests from a local cache and, on a miss, calls the remote's `kv_lookup` as a plain C
 * function (IPRE). Then the paper's verification: the remote scales a vector that lives in the
 * caller's memory, in place, and the host checks every element.
 */
import process from "node:process";
import { libc } from "./ffi/index.ts";
import { Machine } from "./machine/machine.ts";
import { connect } from "./ipre/connect.ts";
import { exampleElf } from "./examples.ts";
import { kvmFlavour } from "./kvm/system.ts";
import { percentile } from "./bench/stats.ts";
import { remoteCallStampedSamples } from "./bench/ipre.ts";

/**
 * Prints a line per step, or with `--json` one JSON document of the same facts at the end.
 * Returns the exit status: 0 when every answer and every vector element was right.
 */
export function demo(flags?: { options: ReadonlyMap<string, unknown> }): number {
  const json = flags?.options.has("json") ?? false;
  const report: Record<string, unknown> = { runtime: libc.runtime, ffi: libc.backend, flavour: kvmFlavour() };
  const say = (s: string) => {
    if (!json) process.stdout.write(s + "\n");
  };
  const us = (ms: number) => Math.round(ms * 10_000) / 10;
  say(`ipre demo on ${libc.runtime} (${libc.backend}), KVM flavour ${kvmFlavour()}`);
  using remote = Machine.create({ window: 1, program: exampleElf("kvstore"), name: "kvstore" });
  using caller = Machine.create({ window: 0, program: exampleElf("kvcaller"), name: "kvcaller" });
  using conn = connect(caller, remote);
  say(`connected kvcaller (window 0) -> kvstore (window 1); allowed entries: ${remote.program!.exports.join(", ")}`);

  const keys = 1000;
  const added = caller.call("fill", keys);
  report.fill = { keys, inserted: added, remoteCount: remote.call("kv_count") };
  say(`fill: the caller inserted ${added} keys through ${keys} remote kv_insert calls; remote kv_count = ${remote.call("kv_count")}`);

  // A request stream: keys 0..1499 (a third of them absent), skewed towards small keys.
  const requests = 10_000;
  let seed = 12345;
  let wrong = 0;
  const latency = new Float64Array(requests);
  for (let i = 0; i < requests; i++) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const key = Math.floor(((seed / 2 ** 31) ** 2) * 1500);
    const t = performance.now();
    const value = caller.call("serve", key);
    latency[i] = performance.now() - t;
    if (value !== (key < keys ? key * 10 + 1 : -1)) wrong++;
  }
  const misses = caller.call("serve_misses");
  latency.sort();
  report.serve = { requests, wrong, misses, p50_us: us(percentile(latency, 50)), p99_us: us(percentile(latency, 99)) };
  say(`serve: ${requests} requests, ${wrong} wrong answers, ${misses} cache misses went to the remote (${((100 * (requests - misses)) / requests).toFixed(1)}% hits)`);
  say(`       per request (vmcall, plus a remote call on a miss): p50 ${(percentile(latency, 50) * 1000).toFixed(1)} us, p99 ${(percentile(latency, 99) * 1000).toFixed(1)} us`);

  // Remote call latency: the guest times each call of a loop with its TSC (the fast path makes no
  // exit the host could time).
  const { samples } = remoteCallStampedSamples(caller, 2000, 50);
  const gaps = Float64Array.from(samples, (ns) => ns / 1e6).sort();
  report.remoteCall = { calls: gaps.length, p50_us: us(percentile(gaps, 50)), p90_us: us(percentile(gaps, 90)), p99_us: us(percentile(gaps, 99)) };
  say(`remote call (fault, merge, remote runs, return trap, unmerge: in the guest, no exit): p50 ${(percentile(gaps, 50) * 1000).toFixed(1)} us, p90 ${(percentile(gaps, 90) * 1000).toFixed(1)} us, p99 ${(percentile(gaps, 99) * 1000).toFixed(1)} us over ${gaps.length} calls`);

  // Zero copy: the remote multiplies the caller's vector in place, many times.
  const len = 1000;
  const rounds = 100;
  let ok = true;
  for (let r = 1; r <= rounds && ok; r++) {
    const sum = caller.call("scale_vector", len, r);
    const v = caller.bytes(caller.symbol("vec"), len * 8);
    const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
    for (let i = 0; i < len; i++) if (Number(dv.getBigInt64(i * 8, true)) !== i * r) ok = false;
    if (sum !== (r * len * (len - 1)) / 2) ok = false;
  }
  say(`vector: the remote scaled a ${len}-element vector in caller memory ${rounds} times; every element checked by the host: ${ok ? "all correct" : "MISMATCH"}`);
  const success = ok && wrong === 0;
  report.vector = { length: len, rounds, correct: ok };
  report.ok = success;
  if (json) process.stdout.write(JSON.stringify(report) + "\n");
  say(success ? "demo ok" : "demo FAILED");
  conn.disconnect();
  return success ? 0 : 1;
}
