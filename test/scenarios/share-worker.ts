/**
 * One worker of test/scenarios/share.ts: attach to the shared kvshared remote, connect a caller
 * VM of its own, wait for "go", then put and get keys of its own range through IPRE, checking
 * every answer; report, detach, close.
 */
import { parentPort, workerData } from "node:worker_threads";
import { Machine } from "../../src/machine/machine.ts";
import { connect } from "../../src/ipre/connect.ts";
import { Remote, type SharedRemote } from "../../src/ipre/share.ts";
import { outcome, xorshift32 } from "./common.ts";
import "./call-path.ts";

interface Job {
  handle: SharedRemote;
  index: number;
  ops: number;
  keys: number;
}

const KV_MISSING = -1; // ~0 as a signed number

const { handle, index, ops, keys } = workerData as Job;
const port = parentPort!;
const remote = Remote.attach(handle, { name: `kvshared@worker${index}` });
const caller = Machine.create({ window: 0, memory: 4 * 1024 * 1024, name: `caller${index}` });
const conn = connect(caller, remote, { allow: ["kv_put", "kv_get"] });
const put = remote.symbol("kv_put");
const get = remote.symbol("kv_get");
const notAllowed = remote.symbol("kv_clear");

port.postMessage({ type: "ready" });
port.once("message", () => {
  // Keys of this worker: (index + 1) << 32 | k, so workers never touch each other's keys.
  const base = (index + 1) * 2 ** 32;
  const model = new Map<number, number>();
  let mismatches = 0;
  let firstMismatch: string | undefined;
  let x = 0x9e3779b9 ^ (index * 7919);
  let puts = 0;
  let gets = 0;
  const exits0 = caller.exits;
  for (let i = 0; i < ops; i++) {
    x = xorshift32(x);
    const k = base + 1 + ((x >>> 0) % keys);
    if (i % 2 === 0) {
      const value = (x >>> 0) * 8 + index; // distinct per worker, never KV_MISSING
      const r = caller.call(put, k, value);
      const expected = model.has(k) ? 0 : 1;
      if (r !== expected) (mismatches++, (firstMismatch ??= `put ${k} -> ${r}, expected ${expected}`));
      model.set(k, value);
      puts++;
    } else {
      const r = caller.call(get, k);
      const expected = model.get(k) ?? KV_MISSING;
      if (r !== expected) (mismatches++, (firstMismatch ??= `get ${k} -> ${r}, expected ${expected}`));
      gets++;
    }
  }
  const exits = caller.exits - exits0;
  // A refused entry in this worker's remote call must not disturb the others.
  const refused = outcome(() => caller.call(notAllowed)).name ?? "none";
  const afterRefusal = caller.call(get, [...model.keys()][0] ?? base + 1);
  conn.disconnect();
  remote.detach();
  caller.close();
  port.postMessage({ type: "done", index, puts, gets, mismatches, firstMismatch, exits, refused, afterRefusalOk: afterRefusal === (model.values().next().value ?? KV_MISSING), entries: [...model] });
});
