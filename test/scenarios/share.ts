/**
 * Fan-in over IPRE with Workers (node:worker_threads on Node, Bun and Deno): one kvshared remote
 * shared by the main thread, N workers each attach, connect a caller VM of their own, and put and
 * get keys of their own range concurrently. The main thread checks the owner's refusals while
 * Remotes are attached, then the final contents of the store against every worker's model.
 *
 *   share.ts <workers> <ops per worker>     prints one JSON line
 */
import { Worker } from "node:worker_threads";
import { Machine } from "../../src/machine/machine.ts";
import { Remote } from "../../src/ipre/share.ts";
import { exampleElf, isMain, outcome, scenarioArgs } from "./common.ts";
import "./call-path.ts";

interface Done {
  type: "done";
  index: number;
  puts: number;
  gets: number;
  mismatches: number;
  firstMismatch?: string;
  exits: number;
  refused: string;
  afterRefusalOk: boolean;
  entries: [number, number][];
}

export async function shareReport(workers: number, ops: number) {
  const keys = Math.max(16, Math.floor(ops / 4));
  const remote = Machine.create({ window: 1, program: exampleElf("kvshared"), name: "kvshared" });
  const handle = remote.share();
  const started = performance.now();
  const ws: Worker[] = [];
  const ready: Promise<void>[] = [];
  const done: Promise<Done>[] = [];
  for (let index = 0; index < workers; index++) {
    const w = new Worker(new URL("./share-worker.ts", import.meta.url), { workerData: { handle, index, ops, keys } });
    ws.push(w);
    const errored = new Promise<never>((_, reject) => w.once("error", reject));
    ready.push(Promise.race([new Promise<void>((resolve) => w.once("message", () => resolve())), errored]));
    done.push(Promise.race([new Promise<Done>((resolve) => w.on("message", (m: Done) => m.type === "done" && resolve(m))), errored]));
  }
  await Promise.all(ready);
  // Every worker is attached: the owner refuses what would pull memory from under them.
  const whileAttached = {
    close: outcome(() => remote.close()),
    reset: outcome(() => remote.reset()),
    load: outcome(() => remote.load(exampleElf("kvshared"))),
    ownCall: outcome(() => remote.call("kv_count")), // the owner itself may still call in
  };
  for (const w of ws) w.postMessage("go");
  const results = await Promise.all(done);
  const elapsedMs = performance.now() - started;
  await Promise.all(ws.map((w) => w.terminate()));
  // The store as the owner sees it: every worker's final values, and nothing else.
  let lookups = 0;
  let wrong = 0;
  for (const r of results) for (const [k, v] of r.entries) (lookups++, remote.call("kv_get", k) !== v && wrong++);
  const count = remote.call("kv_count");
  const expectedCount = results.reduce((a, r) => a + r.entries.length, 0);
  const bogusAttach = outcome(() => Remote.attach({ kind: "nope" } as never));
  const closeAfter = outcome(() => remote.close());
  const attachAfterClose = outcome(() => Remote.attach(handle));
  return { workers, ops, keys, elapsedMs, whileAttached, results: results.map(({ entries, ...r }) => ({ ...r, keys: entries.length })), lookups, wrong, count, expectedCount, bogusAttach, closeAfter, attachAfterClose };
}

if (isMain(import.meta)) {
  const [w = "2", n = "1000"] = scenarioArgs();
  console.log(JSON.stringify(await shareReport(Number(w), Number(n))));
}
