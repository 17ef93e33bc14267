/**
 * One worker of test/scenarios/direct-share.ts: attach the shared kvstore with hostcall handlers
 * of this thread, connect a kvcaller VM of its own, wait for "go", then call the remote directly
 * from JS: lookups and checksums of a buffer in its caller's memory, each checked, one exit
 * each; then a refused entry, a hostcall, a callback, a fault; report, detach, close.
 */
import { parentPort, workerData } from "node:worker_threads";
import { Machine } from "../../src/machine/machine.ts";
import { connect } from "../../src/ipre/connect.ts";
import { Remote, type SharedRemote } from "../../src/ipre/share.ts";
import { exampleElf, outcome, xorshift32 } from "./common.ts";
import { KEYS, type WorkerDone } from "./direct-share.ts";

const { handle, index, ops } = workerData as { handle: SharedRemote; index: number; ops: number };
const port = parentPort!;
const remote = Remote.attach(handle, { name: `kvstore@worker${index}`, hostcalls: { 1: (x) => x * 3 + 1 + index } });
const caller = Machine.create({ window: 0, program: exampleElf("kvcaller"), name: `caller${index}`, timeoutMs: 20_000 });
const conn = connect(caller, remote);

function fnv(p: Uint8Array): number {
  let h = 2166136261;
  for (const b of p) h = Math.imul(h ^ b, 16777619) >>> 0;
  return h;
}

const counted = (fn: () => unknown) => {
  const e0 = caller.exits;
  const o = outcome(fn);
  return { outcome: o, exits: caller.exits - e0 };
};

port.postMessage({ type: "ready" });
port.once("message", () => {
  // A buffer of this worker's caller: the remote reads it in place.
  const buf = caller.program!.highest + 4096 - (caller.program!.highest % 4096);
  let x = 0x9e3779b9 ^ (index * 7919);
  let mismatches = 0;
  let firstMismatch: string | undefined;
  let checksums = 0;
  let lookups = 0;
  const exits0 = caller.exits;
  for (let i = 0; i < ops; i++) {
    x = xorshift32(x);
    if (i % 2 === 0) {
      const len = 1 + ((x >>> 0) % 256);
      const bytes = caller.bytes(buf, len);
      for (let j = 0; j < len; j++) bytes[j] = (x >>> (j % 24)) & 0xff;
      const got = conn.call("checksum", buf, len);
      const want = fnv(bytes);
      if (got !== want) (mismatches++, (firstMismatch ??= `checksum of ${len} bytes -> ${got}, expected ${want}`));
      checksums++;
    } else {
      const k = (x >>> 0) % (KEYS + 64); // some absent
      const got = conn.call("kv_lookup", k);
      const want = k < KEYS ? k * 10 + 1 : -1;
      if (got !== want) (mismatches++, (firstMismatch ??= `kv_lookup(${k}) -> ${got}, expected ${want}`));
      lookups++;
    }
  }
  const exits = caller.exits - exits0;
  const hx = 100 + index;
  const done: WorkerDone = {
    type: "done",
    index,
    checksums,
    lookups,
    mismatches,
    firstMismatch,
    exits,
    refused: counted(() => conn.call(remote.symbol("kv_secret"))),
    hostcall: counted(() => conn.call("remote_hostcall", hx)),
    callback: counted(() => conn.call("call_back", caller.symbol("double_it"), hx)),
    fault: counted(() => conn.call("remote_fault")),
    afterFault: false,
    readAfter: outcome(() => caller.call("read_remote", remote.symbol("kv_data_marker"))),
  };
  done.afterFault = conn.call("kv_lookup", 7) === 71 && caller.call("serve", 8) === 81;
  conn.disconnect();
  remote.detach();
  caller.close();
  port.postMessage(done);
});
