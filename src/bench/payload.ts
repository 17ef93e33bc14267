/**
 * `ipre bench payload`: what moving the data costs. The same operation over 64 B ... 64 MiB
 *
 *   ipre                the caller guest calls the remote's function on a buffer in caller
 *                       memory; the remote reads it in place (zero copy). Timed from JS around
 *                       the vmcall, so it includes a vmcall and one remote call (on the
 *                       fast path: 1 exit, the vmcall's).
 *   ipre_direct         the same function on the same buffer, called directly from JS on the
 *                       connection (Connection.call: the remote runs on the caller's vCPU, 1 exit)
 *   worker_postmessage  postMessage of the bytes to a worker thread (structured clone: a copy,
 *                       not a transfer), the operation there in JS, reply
 *   unix_socket         the bytes over a Unix domain socket to a child process, the operation
 *                       there in JS as they stream in, reply
 *   local_js            the operation in JS on the calling thread: the compute-only reference
 *
 * Two operations (--op): `checksum`, FNV-1a (a multiply per byte, about 1 GiB/s: at 1 MiB the
 * consumer's own work hides most of the copy), and `sum64`, a wrapping sum of u64 words (bound by
 * memory bandwidth: there the copy that zero copy saves dominates).
 */
import process from "node:process";
import type { Flags } from "../flags.ts";
import { IpreError } from "../errors.ts";
import { MAX_MEMORY, MiB } from "../guest/layout.ts";
import { reporter, writeResults } from "./common.ts";
import { intOption, sizeOption, UsageError } from "../flags.ts";
import { describeMachine, machineLine, plotSubtitle } from "./machine-info.ts";
import { createPair, type Pair } from "./ipre.ts";
import { PayloadWorker, SocketChild, workerApi } from "./ipc.ts";
import { fnv1a, PAYLOAD_OPS, sum64, type OpResult, type PayloadOp } from "./payload-ops.ts";
import { fmtBytes, fmtNs, percentile, table } from "./stats.ts";
import { formatBytesAxis, formatNsAxis, linePlot } from "./svg.ts";

export const PAYLOAD_SYSTEMS = ["ipre", "ipre_direct", "worker_postmessage", "unix_socket", "local_js"] as const;
export type PayloadSystem = (typeof PAYLOAD_SYSTEMS)[number];

export interface PayloadRow {
  system: PayloadSystem;
  op: PayloadOp;
  bytes: number;
  n: number;
  /** Median time per operation. */
  ns_per_op: number;
  min_ns: number;
  mean_ns: number;
  p90_ns: number;
  /** bytes / ns_per_op in MiB/s. */
  throughput_mib_s: number;
  /** KVM exits per operation (the ipre systems; null for the others). */
  exits_per_op: number | null;
}

/** Per (op, system, size): at most this many bytes are processed, so that big sizes take a few iterations. */
const BYTES_BUDGET = 512 * MiB;

export function payloadSizes(min: number, max: number): number[] {
  const out: number[] = [];
  for (let s = min; s <= max; s *= 4) out.push(s);
  if (out[out.length - 1] !== max) out.push(max);
  return out;
}

interface OpSpec {
  /** What the text summary and the plots call it. */
  title: string;
  /** The operation in JS (local_js, and the reference every other system is checked against). */
  local(p: Uint8Array): OpResult;
  /** kvcaller calls the remote's function over caller memory (zero copy). */
  ipre(caller: Pair["caller"], address: number, length: number): OpResult;
  /** The remote's function over caller memory, called directly from JS on the connection. */
  direct(conn: Pair["conn"], address: number, length: number): OpResult;
  /** The plots' file names (checksum keeps the names it had before sum64 existed). */
  files: { time: string; throughput: string };
}

const OPS: Record<PayloadOp, OpSpec> = {
  checksum: {
    title: "FNV-1a checksum",
    local: fnv1a,
    ipre: (caller, address, length) => caller.call("remote_checksum", address, length),
    direct: (conn, address, length) => conn.call("checksum", address, length),
    files: { time: "payload-time.svg", throughput: "payload-throughput.svg" },
  },
  sum64: {
    title: "u64 sum",
    local: sum64,
    ipre: (caller, address, length) => BigInt.asUintN(64, caller.callBigInt("remote_sum64", address, length)),
    direct: (conn, address, length) => BigInt.asUintN(64, conn.callBigInt("sum64", address, length)),
    files: { time: "payload-sum64-time.svg", throughput: "payload-sum64-throughput.svg" },
  },
};

/** `--op checksum|sum64|both` (default both). */
function opsOption(flags: Flags): PayloadOp[] {
  const v = flags.options.get("op");
  if (v === undefined || v === "both") return [...PAYLOAD_OPS];
  const op = PAYLOAD_OPS.find((o) => o === v);
  if (!op) throw new UsageError(`--op needs ${PAYLOAD_OPS.join(", ")} or both`);
  return [op];
}

async function timeOps(count: number, warmup: number, op: () => OpResult | Promise<OpResult>, expect: OpResult, what: string): Promise<Float64Array> {
  for (let i = 0; i < warmup; i++) {
    const got = await op();
    if (got !== expect) throw new IpreError(`${what}: result ${got} != expected ${expect}`);
  }
  const s = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    await op();
    s[i] = (performance.now() - t) * 1e6;
  }
  return s;
}

function syncTimeOps(count: number, warmup: number, op: () => OpResult, expect: OpResult, what: string): Float64Array {
  for (let i = 0; i < warmup; i++) {
    const got = op();
    if (got !== expect) throw new IpreError(`${what}: result ${got} != expected ${expect}`);
  }
  const s = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    op();
    s[i] = (performance.now() - t) * 1e6;
  }
  return s;
}

/** syncTimeOps with the caller's exits counted: the samples and the exits per operation. */
function countedTimeOps(caller: Pair["caller"], count: number, warmup: number, op: () => OpResult, expect: OpResult, what: string): { samples: Float64Array; exits: number } {
  const e0 = caller.exits;
  const samples = syncTimeOps(count, warmup, op, expect, what);
  return { samples, exits: (caller.exits - e0) / (count + warmup) };
}

function toRow(system: PayloadSystem, op: PayloadOp, bytes: number, samples: Float64Array, exits: number | null = null): PayloadRow {
  samples.sort();
  let sum = 0;
  for (const v of samples) sum += v;
  const med = percentile(samples, 50);
  return {
    system,
    op,
    bytes,
    n: samples.length,
    ns_per_op: Math.round(med * 10) / 10,
    min_ns: Math.round((samples[0] ?? Number.NaN) * 10) / 10,
    mean_ns: Math.round((sum / samples.length) * 10) / 10,
    p90_ns: Math.round(percentile(samples, 90) * 10) / 10,
    // Four significant digits, not two decimals: 64 B in 13 ms (a slow machine) is 0.0047 MiB/s, not 0.
    throughput_mib_s: Number((bytes / MiB / (med / 1e9)).toPrecision(4)),
    exits_per_op: exits,
  };
}

const COLORS: Record<PayloadSystem, string> = { ipre: "#d62728", ipre_direct: "#9467bd", worker_postmessage: "#1f77b4", unix_socket: "#2ca02c", local_js: "#7f7f7f" };

/** The two plots of one op (`rows` are that op's). */
function payloadSvgs(rows: PayloadRow[], sizes: number[], title: string, subtitle: string): { time: string; throughput: string } {
  const xTicks = sizes.map((s) => [s, formatBytesAxis(s)] as [number, string]);
  const series = (key: "ns_per_op" | "throughput_mib_s") =>
    PAYLOAD_SYSTEMS.map((sys) => ({
      name: sys,
      color: COLORS[sys],
      dashed: sys === "local_js",
      points: rows.filter((r) => r.system === sys).map((r) => [r.bytes, r[key]] as [number, number]),
    }));
  return {
    time: linePlot(series("ns_per_op"), { title: `${title} over a caller buffer: time per call`, subtitle, xLabel: "payload bytes", yLabel: "time per operation (median)", logX: true, logY: true, xTicks, yFormat: formatNsAxis, xFormat: formatBytesAxis }),
    throughput: linePlot(series("throughput_mib_s"), { title: `${title} over a caller buffer: throughput`, subtitle, xLabel: "payload bytes", yLabel: "MiB/s", logX: true, logY: true, xTicks, xFormat: formatBytesAxis }),
  };
}

export async function payloadCommand(flags: Flags): Promise<number> {
  const rep = reporter(flags);
  const maxSize = sizeOption(flags, "max-size", 64 * MiB);
  const minSize = sizeOption(flags, "min-size", 64);
  const iterations = intOption(flags, "iterations", 200);
  const warmup = intOption(flags, "warmup", 2, 0);
  const ops = opsOption(flags);
  if (minSize < 1 || maxSize < minSize) throw new IpreError("--min-size must be >= 1 and <= --max-size");
  const callerMemory = Math.ceil((maxSize + 40 * MiB) / (2 * MiB)) * 2 * MiB;
  if (callerMemory > MAX_MEMORY) throw new IpreError(`--max-size ${fmtBytes(maxSize)} does not fit a caller VM (at most ${MAX_MEMORY / MiB - 40} MiB)`);
  const sizes = payloadSizes(minSize, maxSize);
  const machine = describeMachine();
  rep.progress(`payload on ${machineLine(machine)}`);
  rep.progress(`ops ${ops.join(", ")}; sizes ${sizes.map(fmtBytes).join(", ")}; caller VM memory ${callerMemory / MiB} MiB`);

  const pair = createPair(callerMemory);
  // Rows of one op after another, checksum first: a consumer that looks rows up by system and
  // size alone (from before sum64 existed) still finds the checksum rows.
  const rows: PayloadRow[] = [];
  let directEntry: { ok: boolean; detail: string } = { ok: false, detail: "not run" };
  let worker: PayloadWorker | undefined;
  let sock: SocketChild | undefined;
  try {
    const { caller, remote, conn } = pair;
    const bufAddr = Math.ceil(caller.program!.highest / (2 * MiB)) * 2 * MiB;
    if (bufAddr + maxSize > caller.stackGuard) throw new IpreError(`caller buffer 0x${bufAddr.toString(16)}+${maxSize} overlaps the stack`);
    const buf = caller.bytes(bufAddr, maxSize);
    // Deterministic pseudo-random contents (xorshift32).
    let x = 0x12345678;
    for (let i = 0; i < maxSize; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      buf[i] = x & 0xff;
    }
    // A vmcall whose target is a remote address enters the remote directly (the vmcall frame
    // jumps there; the fault merges). Check it once; the measured path is kvcaller's own
    // remote_checksum() / remote_sum64(), a C call from caller code.
    {
      const want = fnv1a(buf.subarray(0, minSize));
      try {
        const got = caller.call(remote.symbol("checksum"), bufAddr, minSize);
        directEntry = { ok: got === want, detail: got === want ? "caller.call(remote checksum address) returned the right checksum" : `returned ${got}, expected ${want}` };
      } catch (e) {
        directEntry = { ok: false, detail: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
      }
      rep.progress(`direct vmcall into the remote: ${directEntry.ok ? "works" : "FAILED: " + directEntry.detail}`);
    }
    rep.plan(ops.length * sizes.length);
    for (const op of ops) {
      const spec = OPS[op];
      worker = await PayloadWorker.start(op);
      sock = await SocketChild.start(op);
      for (const size of sizes) {
        const count = Math.max(Math.min(3, iterations), Math.min(iterations, Math.floor(BYTES_BUDGET / size)));
        const w = Math.min(warmup, count);
        const copy = buf.slice(0, size); // a JS-heap buffer of exactly `size` bytes for the baselines
        const expect = spec.local(copy); // (on JS-heap bytes only: keeps local_js's JIT code monomorphic)
        rep.step(`${op} ${fmtBytes(size)}: ${count} operations per system`);
        const via = countedTimeOps(caller, count, w, () => spec.ipre(caller, bufAddr, size), expect, `ipre ${op} ${size}`);
        rows.push(toRow("ipre", op, size, via.samples, via.exits));
        const direct = countedTimeOps(caller, count, w, () => spec.direct(conn, bufAddr, size), expect, `ipre_direct ${op} ${size}`);
        rows.push(toRow("ipre_direct", op, size, direct.samples, direct.exits));
        const wk = worker;
        rows.push(toRow("worker_postmessage", op, size, await timeOps(count, w, () => wk.run(copy), expect, `worker ${op} ${size}`)));
        const sk = sock;
        rows.push(toRow("unix_socket", op, size, await timeOps(count, w, () => sk.run(copy), expect, `unix socket ${op} ${size}`)));
        rows.push(toRow("local_js", op, size, syncTimeOps(count, w, () => spec.local(copy), expect, `local ${op} ${size}`)));
      }
      await worker.close();
      await sock.close();
      worker = sock = undefined;
    }
  } finally {
    rep.done();
    await worker?.close();
    await sock?.close();
    pair.close();
  }

  const result = {
    runtime: machine.runtime,
    machine,
    config: { ops, sizes, worker_api: workerApi(), iterations, warmup, bytes_budget: BYTES_BUDGET, caller_memory: callerMemory, direct_remote_vmcall: directEntry },
    results: rows,
  };

  const lines: string[] = [];
  lines.push(`ipre bench payload: ${ops.map((op) => OPS[op].title).join(" and ")} over a caller buffer; median time per operation and throughput`);
  lines.push(machineLine(machine));
  for (const op of ops) {
    const get = (sys: PayloadSystem, size: number) => rows.find((r) => r.op === op && r.system === sys && r.bytes === size)!;
    lines.push("");
    lines.push(`${op}: ${OPS[op].title}`);
    lines.push(
      table([
        ["bytes", ...PAYLOAD_SYSTEMS.map((s) => s), "ipre MiB/s", "direct MiB/s", "postMessage MiB/s", "socket MiB/s", "postMessage/ipre", "socket/ipre", "best copy/direct"],
        ...sizes.map((size) => [
          fmtBytes(size),
          ...PAYLOAD_SYSTEMS.map((s) => fmtNs(get(s, size).ns_per_op)),
          get("ipre", size).throughput_mib_s.toFixed(1),
          get("ipre_direct", size).throughput_mib_s.toFixed(1),
          get("worker_postmessage", size).throughput_mib_s.toFixed(1),
          get("unix_socket", size).throughput_mib_s.toFixed(1),
          (get("worker_postmessage", size).ns_per_op / get("ipre", size).ns_per_op).toFixed(2),
          (get("unix_socket", size).ns_per_op / get("ipre", size).ns_per_op).toFixed(2),
          (Math.min(get("worker_postmessage", size).ns_per_op, get("unix_socket", size).ns_per_op) / get("ipre_direct", size).ns_per_op).toFixed(2),
        ]),
      ]),
    );
  }
  lines.push("");
  lines.push("checksum = FNV-1a, a multiply per byte (compute-bound); sum64 = wrapping sum of u64 words (memory-bandwidth-bound).");
  const exitsOf = (sys: PayloadSystem) => [...new Set(rows.filter((r) => r.system === sys).map((r) => r.exits_per_op))].join("/");
  lines.push(`ipre includes a vmcall into the caller plus one remote call (${exitsOf("ipre")} KVM exits per op); ipre_direct is conn.call from JS into the remote (${exitsOf("ipre_direct")}); the remote reads caller memory in place.`);
  lines.push(`worker_postmessage (${workerApi()}) copies the bytes (structured clone); unix_socket copies them through the kernel; local_js = compute only.`);
  lines.push(`direct vmcall into the remote's checksum address: ${directEntry.ok ? "works" : "FAILED (" + directEntry.detail + ")"}`);
  const text = lines.join("\n") + "\n";
  const files: Record<string, string> = {
    "results.json": JSON.stringify(result, null, 2) + "\n",
    "machine.json": JSON.stringify(machine, null, 2) + "\n",
    "summary.txt": text,
  };
  for (const op of ops) {
    const svgs = payloadSvgs(rows.filter((r) => r.op === op), sizes, OPS[op].title, plotSubtitle(machine));
    files[OPS[op].files.time] = svgs.time;
    files[OPS[op].files.throughput] = svgs.throughput;
  }
  const dir = writeResults(flags, "payload", files);
  rep.progress(`results written to ${dir}`);
  if (rep.json) process.stdout.write(JSON.stringify(result) + "\n");
  else rep.say(text.trimEnd());
  return 0;
}
