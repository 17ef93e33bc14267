/**
 * `ipre bench fanin`: many callers on many threads calling one store concurrently (fan-in).
 * N client workers (node:worker_threads on Node, the Web Worker of Bun and Deno) each do the same
 * deterministic mix of puts and gets (fanin-workload.ts) against one shared key-value store:
 *
 *   ipre            one remote kvshared machine, shared with the workers (machine.share,
 *                   Remote.attach), entered by every worker's own caller machine: a vmcall at
 *                   the remote's function (the fast path: 1 exit per op, fanin-ipre.ts)
 *   ipre_direct     the same remote, called directly from JS on each worker's connection
 *                   (Connection.call: 1 exit per op)
 *   atomics_server  one server thread, a request slot per client, Atomics.wait/notify
 *                   (the paper's thread-pool + futex baseline, Table III)
 *   unix_socket     one server process, a Unix-socket connection per client
 *
 * Throughput = all timed ops / the wall time from the common start barrier to the last worker's
 * end; latency = every timed op's round trip as its worker saw it. Every reply is checked
 * against the worker's model, and the store's final contents against all the models.
 */
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import process from "node:process";
import { Worker } from "node:worker_threads";
import { IpreError } from "../errors.ts";
import { libc } from "../ffi/index.ts";
import type { Flags } from "../flags.ts";
import { intOption, listOption, UsageError } from "../flags.ts";
import { reporter, writeResults } from "./common.ts";
import { openSocket, SLOT_WORDS, socketServerCode, stopAtomics, type AtomicsInit } from "./fanin-baselines.ts";
import { ipreDirectSystem, ipreSystem } from "./fanin-ipre.ts";
import type { ThreadReply, ThreadStart } from "./fanin-worker.ts";
import { ABORT, GO, MAX_KEYS_PER_WORKER, MAX_WORKERS, OP_COUNT, siblingModule, type FaninServer, type FaninSystem, type WorkloadResult } from "./fanin-workload.ts";
import { workerApi } from "./ipc.ts";
import { evalArgs, killAndWait, readyLine } from "./procs.ts";
import { coreCount, describeMachine, machineLine, plotSubtitle } from "./machine-info.ts";
import { fmtNs, summarize, table } from "./stats.ts";
import { formatNsAxis, linePlot } from "./svg.ts";

export const FANIN_SYSTEMS = ["ipre", "ipre_direct", "atomics_server", "unix_socket"] as const;
export type FaninSystemName = (typeof FANIN_SYSTEMS)[number];

export interface FaninRow {
  system: FaninSystemName;
  workers: number;
  /** All timed ops of all workers / wall time from the start barrier to the last worker's end. */
  ops_per_s: number;
  p50_ns: number;
  p90_ns: number;
  p99_ns: number;
  max_ns: number;
  mean_ns: number;
  /** Timed ops measured (workers x --ops). */
  n: number;
  wall_ms: number;
  /** Keys the store holds at the end (= the workers' models together). */
  keys_stored: number;
  /** KVM exits per timed op of all workers (the ipre systems; null for the baselines). */
  exits_per_op: number | null;
}

// ---------------------------------------------------------------- threads

const WORKER_MODULE = siblingModule(import.meta.url, "fanin-worker");
const BASELINES_MODULE = "fanin-baselines";

type WebWorker = {
  postMessage(v: unknown): void;
  addEventListener(type: string, f: (e: { data?: unknown; message?: string; error?: unknown }) => void): void;
  terminate(): void;
};

/** A thread running fanin-worker.ts: one start message in, replies out in order. */
class FaninThread {
  readonly #replies: ThreadReply[] = [];
  #waiter: { resolve: (r: ThreadReply) => void; reject: (e: Error) => void } | undefined;
  #failure: Error | undefined;
  readonly #post: (m: ThreadStart) => void;
  readonly #stop: () => Promise<unknown>;
  #stopped = false;

  constructor(what: string) {
    const onReply = (r: ThreadReply) => {
      if (r.type === "error") return this.#fail(new IpreError(`${what}: ${r.message}`));
      if (this.#waiter) {
        const w = this.#waiter;
        this.#waiter = undefined;
        w.resolve(r);
      } else this.#replies.push(r);
    };
    if (workerApi() === "Web Worker") {
      const W = (globalThis as unknown as { Worker: new (url: string, o: { type: string }) => WebWorker }).Worker;
      const w = new W(WORKER_MODULE, { type: "module" });
      w.addEventListener("message", (e) => onReply(e.data as ThreadReply));
      w.addEventListener("error", (e) => this.#fail(new IpreError(`${what}: ${e.error instanceof Error ? e.error.message : (e.message ?? "worker error")}`)));
      this.#post = (m) => w.postMessage(m);
      this.#stop = async () => w.terminate();
    } else {
      const w = new Worker(new URL(WORKER_MODULE));
      w.on("message", onReply);
      w.on("error", (e: Error) => this.#fail(new IpreError(`${what}: ${e.message}`)));
      w.on("exit", (code: number) => this.#fail(new IpreError(`${what}: the worker exited (code ${code})`)));
      this.#post = (m) => w.postMessage(m);
      this.#stop = () => w.terminate();
    }
  }

  #fail(e: Error): void {
    if (this.#stopped) return;
    this.#failure ??= e;
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.reject(this.#failure);
  }

  start(m: ThreadStart): void {
    this.#post(m);
  }

  /** The next reply of type `type`, within `timeoutMs`. */
  next<T extends "ready" | "done">(type: T, timeoutMs: number): Promise<Extract<ThreadReply, { type: T }>> {
    const got = this.#replies.shift();
    const p = got ? Promise.resolve(got) : this.#failure ? Promise.reject(this.#failure) : new Promise<ThreadReply>((resolve, reject) => (this.#waiter = { resolve, reject }));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new IpreError(`no "${type}" from a fan-in thread after ${timeoutMs} ms`)), timeoutMs);
    });
    return Promise.race([p, timeout])
      .then((r) => {
        if (r.type !== type) throw new IpreError(`a fan-in thread said "${r.type}", expected "${type}"`);
        return r as Extract<ThreadReply, { type: T }>;
      })
      .finally(() => clearTimeout(timer));
  }

  async terminate(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    // Settle a pending next(): its timeout timer would otherwise keep the process alive.
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.reject(new IpreError("the fan-in thread was terminated"));
    await this.#stop();
  }
}

/** How long a thread may take to start, or one run to finish, before the bench gives up. */
const START_MS = 30_000;
const RUN_MS = 600_000;

// ---------------------------------------------------------------- the baselines' servers

const atomicsServer: FaninSystem = {
  name: "atomics_server",
  unavailable: () => undefined,
  async start(workers) {
    const init: AtomicsInit = { control: new SharedArrayBuffer(8), slots: new SharedArrayBuffer(workers * SLOT_WORDS * 4), workers };
    const stop = () => stopAtomics(init);
    const thread = new FaninThread("atomics server thread");
    try {
      thread.start({ kind: "server", module: BASELINES_MODULE, serve: "serveAtomics", init });
      await thread.next("ready", START_MS);
    } catch (e) {
      await thread.terminate();
      throw e;
    }
    return {
      client: { module: BASELINES_MODULE, connect: "connectAtomics", init },
      async finish() {
        stop();
        return (await thread.next("done", START_MS)).result as number;
      },
      async close() {
        stop();
        await thread.terminate();
      },
    };
  },
};

const unixSocket: FaninSystem = {
  name: "unix_socket",
  unavailable: () => undefined,
  async start() {
    const path = join(os.tmpdir(), `ipre-fanin-${process.pid}-${Math.random().toString(36).slice(2, 10)}.sock`);
    const [cmd, evalArgv] = evalArgs(socketServerCode(siblingModule(import.meta.url, "fanin-workload"), path));
    // Node with a TypeScript loader (node --import test/node-ts.mjs): the child imports a .ts module too.
    const argv = libc.runtime === "node" ? [...process.execArgv, ...evalArgv] : evalArgv;
    const child = spawn(cmd, argv, { stdio: ["pipe", "pipe", "inherit"], env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" } });
    const close = async () => {
      child.stdin?.end();
      await killAndWait(child);
      rmSync(path, { force: true });
    };
    try {
      await readyLine(child, "unix socket server");
    } catch (e) {
      await close();
      throw e;
    }
    return {
      client: { module: BASELINES_MODULE, connect: "connectSocket", init: { path } },
      async finish() {
        const c = await openSocket(path);
        try {
          return await c.call(OP_COUNT, 0, 0);
        } finally {
          c.close();
        }
      },
      close,
    };
  },
};

/** Every system, in output order; ipre says itself whether it can run here. */
export const SYSTEMS: Record<FaninSystemName, FaninSystem> = { ipre: ipreSystem, ipre_direct: ipreDirectSystem, atomics_server: atomicsServer, unix_socket: unixSocket };

// ---------------------------------------------------------------- one run

export interface FaninOptions {
  ops: number;
  warmup: number;
  /** Keys per worker. */
  keys: number;
}

/**
 * `workers` client threads against a fresh server of `system`: start them, let each warm up and
 * wait at the barrier, release them together, collect and check their results.
 */
export async function runFanin(system: FaninSystem, workers: number, o: FaninOptions): Promise<FaninRow> {
  const name = system.name;
  const server: FaninServer = await system.start(workers);
  const threads: FaninThread[] = [];
  const go = new SharedArrayBuffer(4);
  const flag = new Int32Array(go);
  try {
    for (let index = 0; index < workers; index++) {
      const t = new FaninThread(`${name} client worker ${index}`);
      threads.push(t);
      t.start({ kind: "client", entry: server.client, plan: { index, ops: o.ops, warmup: o.warmup, keys: o.keys }, go });
    }
    await Promise.all(threads.map((t) => t.next("ready", START_MS + o.warmup)));
    const t0 = performance.now();
    Atomics.store(flag, 0, GO);
    Atomics.notify(flag, 0);
    let t1 = t0;
    const results = await Promise.all(
      threads.map(async (t) => {
        const r = await t.next("done", RUN_MS);
        t1 = Math.max(t1, performance.now());
        return r.result as WorkloadResult;
      }),
    );
    const stored = await server.finish();
    const errors = results.reduce((a, r) => a + r.errors, 0);
    if (errors) throw new IpreError(`${name} with ${workers} workers: ${errors} wrong replies; first: ${results.find((r) => r.firstError)?.firstError}`);
    const expected = results.reduce((a, r) => a + r.keysStored, 0);
    if (stored !== expected) throw new IpreError(`${name} with ${workers} workers: the store holds ${stored} keys, the workers put ${expected}`);
    const all = new Float64Array(workers * o.ops);
    results.forEach((r, i) => all.set(r.samples, i * o.ops));
    const s = summarize(all);
    const wallMs = t1 - t0;
    const exits = results.every((r) => r.exits !== undefined) ? results.reduce((a, r) => a + (r.exits ?? 0), 0) : undefined;
    return {
      system: name as FaninSystemName,
      workers,
      ops_per_s: Math.round((workers * o.ops) / (wallMs / 1000)),
      p50_ns: s.p50_ns,
      p90_ns: s.p90_ns,
      p99_ns: s.p99_ns,
      max_ns: s.max_ns,
      mean_ns: s.mean_ns,
      n: s.n,
      wall_ms: Math.round(wallMs * 1000) / 1000,
      keys_stored: stored,
      exits_per_op: exits === undefined ? null : exits / (workers * o.ops),
    };
  } finally {
    // After a failure, wake the workers still at the barrier so that they end (Deno cannot
    // terminate a worker blocked in Atomics.wait); after success this changes nothing.
    if (Atomics.compareExchange(flag, 0, 0, ABORT) === 0) Atomics.notify(flag, 0);
    await server.close();
    await Promise.all(threads.map((t) => t.terminate()));
  }
}

// ---------------------------------------------------------------- the command

const COLORS: Record<FaninSystemName, string> = { ipre: "#d62728", ipre_direct: "#9467bd", atomics_server: "#1f77b4", unix_socket: "#2ca02c" };

function faninSvgs(rows: FaninRow[], counts: number[], subtitle: string): { throughput: string; latency: string } {
  const systems = FANIN_SYSTEMS.filter((sys) => rows.some((r) => r.system === sys));
  const points = (sys: FaninSystemName, key: "ops_per_s" | "p50_ns" | "p99_ns") => rows.filter((r) => r.system === sys).map((r) => [r.workers, r[key]] as [number, number]);
  const xTicks = counts.map((n) => [n, String(n)] as [number, string]);
  return {
    throughput: linePlot(
      systems.map((sys) => ({ name: sys, color: COLORS[sys], points: points(sys, "ops_per_s") })),
      { title: "Fan-in: N workers calling one key-value store (throughput)", subtitle, xLabel: "client workers (threads)", yLabel: "operations per second (all workers)", xTicks, yFormat: (v) => (v >= 1e6 ? `${v / 1e6}M` : v >= 1e3 ? `${v / 1e3}k` : String(v)) },
    ),
    latency: linePlot(
      systems.flatMap((sys) => [
        { name: `${sys} p99`, color: COLORS[sys], points: points(sys, "p99_ns") },
        { name: `${sys} p50`, color: COLORS[sys], dashed: true, points: points(sys, "p50_ns") },
      ]),
      { title: "Fan-in: round-trip latency per operation (p50 dashed, p99 solid)", subtitle, xLabel: "client workers (threads)", yLabel: "latency per operation", logY: true, xTicks, yFormat: formatNsAxis },
    ),
  };
}

export async function faninCommand(flags: Flags): Promise<number> {
  const rep = reporter(flags);
  const counts = listOption(flags, "workers", [1, 2, 4]);
  if (counts.length === 0 || counts.some((n) => !Number.isInteger(n) || n < 1 || n > MAX_WORKERS)) throw new UsageError(`--workers needs a list of integers from 1 to ${MAX_WORKERS}`);
  const ops = intOption(flags, "ops", 10_000);
  const warmup = intOption(flags, "warmup", 200, 0);
  const keys = intOption(flags, "keys", 1024);
  if (keys > MAX_KEYS_PER_WORKER) throw new UsageError(`--keys needs an integer from 1 to ${MAX_KEYS_PER_WORKER}`);
  const machine = describeMachine();
  const cores = coreCount();
  rep.progress(`fanin on ${machineLine(machine)}`);

  const skipped: { system: FaninSystemName; reason: string }[] = [];
  for (const name of FANIN_SYSTEMS) {
    const reason = SYSTEMS[name].unavailable();
    if (reason !== undefined) skipped.push({ system: name, reason });
  }
  for (const s of skipped) if (!rep.quiet) process.stderr.write(`${s.system}: ${s.reason}\n`);
  const active = FANIN_SYSTEMS.filter((n) => !skipped.some((s) => s.system === n));

  const rows: FaninRow[] = [];
  rep.plan(active.length * counts.length);
  try {
    for (const workers of counts) {
      for (const name of active) {
        rep.step(`${name}: ${workers} worker${workers === 1 ? "" : "s"} x ${ops} ops (after ${warmup} warm-up)`);
        rows.push(await runFanin(SYSTEMS[name], workers, { ops, warmup, keys }));
      }
    }
  } finally {
    rep.done();
  }

  const result = {
    runtime: machine.runtime,
    machine,
    config: { workers: counts, ops, warmup, keys_per_worker: keys, mix: "50% put / 50% get, uniform over each worker's own keys", worker_api: workerApi(), cores },
    results: rows,
    skipped,
  };

  const lines: string[] = [];
  lines.push(`ipre bench fanin: N client workers x ${ops} ops (50% put, 50% get over ${keys} keys each) against one store`);
  lines.push(machineLine(machine));
  lines.push("");
  const tableRows = [["system", "workers", "ops/s", "p50", "p90", "p99", "max", "exits/op"]];
  for (const r of rows) tableRows.push([r.system, String(r.workers), String(r.ops_per_s), fmtNs(r.p50_ns), fmtNs(r.p90_ns), fmtNs(r.p99_ns), fmtNs(r.max_ns), r.exits_per_op === null ? "-" : String(Math.round(r.exits_per_op * 100) / 100)]);
  lines.push(table(tableRows));
  const ratios = counts.flatMap((n) => {
    const via = rows.find((r) => r.system === "ipre" && r.workers === n);
    const direct = rows.find((r) => r.system === "ipre_direct" && r.workers === n);
    return via && direct ? [`${n} worker${n === 1 ? "" : "s"} ${(direct.ops_per_s / via.ops_per_s).toFixed(2)}x`] : [];
  });
  if (ratios.length) lines.push(`ipre_direct / ipre ops/s (same run): ${ratios.join(", ")}`);
  for (const s of skipped) lines.push(`${s.system}: ${s.reason}`);
  lines.push("ipre: a vmcall at the remote's function, entered through the caller VM (the IPRE entry in the guest on the fast path; the remote's return to the exit trap is the one exit); ipre_direct: Connection.call from JS (the exit trap only)");
  lines.push(`clients: ${workerApi()} threads; atomics_server: one more thread (Atomics.wait/notify); unix_socket: a ${machine.runtime} server process; ${cores} cores`);
  lines.push("every reply was checked against the worker's model, and the store's final contents against all the models");
  const text = lines.join("\n") + "\n";

  const svgs = faninSvgs(rows, counts, plotSubtitle(machine, `${ops} ops per worker, 50% put / 50% get`));
  const dir = writeResults(flags, "fanin", {
    "results.json": JSON.stringify(result, null, 2) + "\n",
    "machine.json": JSON.stringify(machine, null, 2) + "\n",
    "summary.txt": text,
    "fanin.svg": svgs.throughput,
    "fanin-latency.svg": svgs.latency,
  });
  rep.progress(`results written to ${dir}`);
  if (rep.json) process.stdout.write(JSON.stringify(result) + "\n");
  else rep.say(text.trimEnd());
  return 0;
}
