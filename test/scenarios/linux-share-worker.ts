/**
 * One worker of test/scenarios/linux-share.ts: attach to the shared counter program, connect a
 * caller VM of its own and call the program's functions, which make syscalls (malloc, printf)
 * served by this thread's syscall layer; report and detach.
 */
import { parentPort, workerData } from "node:worker_threads";
import { Machine } from "../../src/machine/machine.ts";
import { connect } from "../../src/ipre/connect.ts";
import { Remote, type SharedRemote } from "../../src/ipre/share.ts";

const { handle, capture } = workerData as { handle: SharedRemote; capture: boolean };
const dec = new TextDecoder();
let out = "";
// Without a sink the program's stdout is this process's (fd 1), as for a machine.
const remote = Remote.attach(handle, capture ? { linux: { stdout: (b) => (out += dec.decode(b)), stderr: () => {} } } : {});
const caller = Machine.create({ window: 0, memory: 4 * 1024 * 1024, name: "worker-caller", timeoutMs: 20_000 });
connect(caller, remote);
const call = (fn: string, ...args: (number | string)[]) => caller.call(remote.symbol(fn), ...args);
const report = {
  add: call("counter_add", 5), // snprintf, realloc, strdup: the heap the owner's brk made
  heapSmall: call("counter_heap", 1000),
  heapBig: call("counter_heap", 300_000), // needs mmap: ENOMEM in an attached Remote, malloc gives NULL
  dump: call("counter_dump"), // printf
  out: "",
};
report.out = out;
remote.detach();
caller.close();
parentPort!.postMessage(report);
