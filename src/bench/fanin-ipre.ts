/**
 * The ipre system of `ipre bench fanin`: N client workers calling one remote kvshared machine
 * (guests/examples/kvshared.elf, window 1) concurrently, each through its own caller machine.
 *
 * Not available yet: it needs the remote shared with Workers (`remote.share()` in the main
 * thread, `Remote.attach(handle)` in a worker). To plug it in, make `unavailable()` return
 * undefined where KVM is usable and implement `start(workers)`:
 *
 *   - main thread: create the kvshared remote (`Machine.create({ window: 1, program:
 *     exampleElf("kvshared") })`, src/machine/machine.ts, src/examples.ts) and share it; return a FaninServer whose `client` is
 *     `{ module: siblingModule(import.meta.url, "fanin-ipre"), connect: "connectIpre", init }`
 *     with `init` = the share handle plus the addresses of kv_put and kv_get (structured-cloneable);
 *     `finish()` = `remote.call("kv_count")`; `close()` closes the remote.
 *   - here, `export function connectIpre(init, index): FaninClient`, run in each worker: attach
 *     the remote, create a caller machine (window 0) connected to it, and return
 *     `{ put: (k, v) => caller.call(init.kvPut, k, v), get: (k) => caller.call(init.kvGet, k),
 *     close: () => caller.close() }` (a vmcall whose target is a remote address enters the remote
 *     directly, see bench payload's direct_remote_vmcall). kv_put / kv_get's replies are the
 *     workload's (fanin-workload.ts: 1 new / 0 updated, the value or KV_MISSING = -1).
 *
 * fanin.ts's runFanin() does the rest: it starts the workers (fanin-worker.ts imports `module`
 * in each and calls `connectIpre`), the start barrier, the timing, the checks, `finish()` and
 * `close()`. The client's `close()` runs in its worker after the last op, before the worker
 * reports; the thread is terminated after that. Deno workers inherit the CLI's permissions (--allow-all: FFI too).
 */
import type { FaninSystem } from "./fanin-workload.ts";

export const IPRE_PENDING = "not yet available (remote sharing with Workers pending)";

export const ipreSystem: FaninSystem = {
  name: "ipre",
  unavailable: () => IPRE_PENDING,
  start: () => Promise.reject(new Error(`ipre: ${IPRE_PENDING}`)),
};
