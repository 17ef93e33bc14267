/**
 * The thread entry of `ipre bench fanin` (a module worker: node:worker_threads on Node, the Web
 * Worker of Bun and Deno). One message starts it:
 *
 *   { kind: "client", entry, plan, go }   connect with entry (a FaninSystem's ClientEntry), run
 *                                         the workload, wait on the shared `go` flag (the common
 *                                         start barrier) between warm-up and the timed ops
 *   { kind: "server", module, serve, init }  run a server loop: MODULES[module][serve](init, ready)
 *
 * The modules a thread may run are imported statically (MODULES), not by a URL sent in the
 * message: nothing here imports code it was told to, and a registry can see every import.
 *
 * It answers { type: "ready" }, then { type: "done", result } or { type: "error", message }.
 */
import { parentPort } from "node:worker_threads";
import { ABORT, runWorkload, type ClientEntry, type FaninClient, type WorkloadPlan } from "./fanin-workload.ts";
import * as baselines from "./fanin-baselines.ts";
import * as ipre from "./fanin-ipre.ts";

export type ThreadStart =
  | { kind: "client"; entry: ClientEntry; plan: WorkloadPlan; go: SharedArrayBuffer }
  | { kind: "server"; module: string; serve: string; init: unknown };

export type ThreadReply = { type: "ready" } | { type: "done"; result: unknown } | { type: "error"; message: string };

type Scope = {
  postMessage(v: unknown, transfer?: ArrayBuffer[]): void;
  addEventListener(type: "message", f: (e: { data: unknown }) => void): void;
};

// A Web Worker (Bun, Deno) talks through its global scope, a Node worker through parentPort.
const port = parentPort
  ? { post: (v: ThreadReply, t: ArrayBuffer[] = []) => parentPort!.postMessage(v, t), onStart: (f: (m: ThreadStart) => void) => parentPort!.once("message", f) }
  : { post: (v: ThreadReply, t: ArrayBuffer[] = []) => (globalThis as unknown as Scope).postMessage(v, t), onStart: (f: (m: ThreadStart) => void) => (globalThis as unknown as Scope).addEventListener("message", (e) => f(e.data as ThreadStart)) };

type Exports = Record<string, (...args: unknown[]) => unknown>;

/** The modules a fan-in thread can run, by the names in ClientEntry.module / the server message. */
const MODULES: Record<string, Exports> = { "fanin-baselines": baselines as unknown as Exports, "fanin-ipre": ipre as unknown as Exports };

function moduleNamed(name: string): Exports {
  const mod = MODULES[name];
  if (mod === undefined) throw new Error(`fan-in thread: no module "${name}" (known: ${Object.keys(MODULES).join(", ")})`);
  return mod;
}

async function start(m: ThreadStart): Promise<void> {
  if (m.kind === "server") {
    const mod = moduleNamed(m.module);
    const result = await mod[m.serve]!(m.init, () => port.post({ type: "ready" }));
    port.post({ type: "done", result });
    return;
  }
  const mod = moduleNamed(m.entry.module);
  const client = (await mod[m.entry.connect]!(m.entry.init, m.plan.index)) as FaninClient;
  const go = new Int32Array(m.go);
  const result = await runWorkload(client, m.plan, () => {
    port.post({ type: "ready" });
    while (Atomics.load(go, 0) === 0) Atomics.wait(go, 0, 0);
    if (Atomics.load(go, 0) === ABORT) throw new Error("the run was aborted at the start barrier");
  });
  await client.close?.();
  port.post({ type: "done", result }, [result.samples.buffer as ArrayBuffer]);
}

port.onStart((m) => {
  start(m).catch((e: unknown) => port.post({ type: "error", message: e instanceof Error ? `${e.name}: ${e.message}` : String(e) }));
});
