/**
 * Direct calls from Workers (node:worker_threads on Node, Bun and Deno): the main thread fills a
 * kvstore remote and shares it; each worker attaches it (Remote.attach, with hostcall handlers of
 * its own), connects a kvcaller VM of its own and calls the remote's functions directly from JS
 * (`Connection.call`), one exit each, while the main thread does the same through its own caller.
 * kv_lookup and checksum only read, so the concurrent calls need no locks.
 *
 *   direct-share.ts <workers> <ops per worker>     prints one JSON line
 */
import { Worker } from "node:worker_threads";
import { libc } from "../../src/ffi/index.ts";
import { Machine } from "../../src/machine/machine.ts";
import { connect } from "../../src/ipre/connect.ts";
import { exampleElf, isMain, outcome, scenarioArgs, type Outcome } from "./common.ts";

/** Keys the owner stores before sharing: k -> k * 10 + 1 for k < KEYS. */
export const KEYS = 512;

export interface WorkerDone {
  type: "done";
  index: number;
  checksums: number;
  lookups: number;
  mismatches: number;
  firstMismatch?: string;
  exits: number;
  refused: { outcome: Outcome; exits: number };
  hostcall: { outcome: Outcome; exits: number };
  callback: { outcome: Outcome; exits: number };
  fault: { outcome: Outcome; exits: number };
  afterFault: boolean;
  readAfter: Outcome;
}

export async function directShareReport(workers: number, ops: number) {
  const remote = Machine.create({ window: 1, program: exampleElf("kvstore"), name: "kvstore" });
  for (let k = 0; k < KEYS; k++) remote.call("kv_insert", k, k * 10 + 1);
  const handle = remote.share();
  const ws: Worker[] = [];
  const ready: Promise<void>[] = [];
  const done: Promise<WorkerDone>[] = [];
  for (let index = 0; index < workers; index++) {
    const w = new Worker(new URL("./direct-share-worker.ts", import.meta.url), { workerData: { handle, index, ops } });
    ws.push(w);
    const errored = new Promise<never>((_, reject) => w.once("error", reject));
    ready.push(Promise.race([new Promise<void>((resolve) => w.once("message", () => resolve())), errored]));
    done.push(Promise.race([new Promise<WorkerDone>((resolve) => w.on("message", (m: WorkerDone) => m.type === "done" && resolve(m))), errored]));
  }
  await Promise.all(ready);
  for (const w of ws) w.postMessage("go");
  // Meanwhile the owner's thread calls directly too, through a caller of its own.
  const caller = Machine.create({ window: 0, program: exampleElf("kvcaller"), name: "main-caller" });
  const conn = connect(caller, remote, { allow: ["kv_lookup"] });
  const e0 = caller.exits;
  let wrong = 0;
  for (let i = 0; i < ops; i++) if (conn.call("kv_lookup", i % KEYS) !== (i % KEYS) * 10 + 1) wrong++;
  const owner = { n: ops, wrong, exits: caller.exits - e0 };
  const results = await Promise.all(done);
  await Promise.all(ws.map((w) => w.terminate()));
  conn.disconnect();
  caller.close();
  const count = remote.call("kv_count");
  const closeAfter = outcome(() => remote.close());
  return { runtime: libc.runtime, workers, ops, results, owner, count, expectedCount: KEYS, closeAfter };
}

if (isMain(import.meta)) {
  const [w = "2", n = "1000"] = scenarioArgs();
  console.log(JSON.stringify(await directShareReport(Number(w), Number(n))));
}
