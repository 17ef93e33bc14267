/**
 * The two paths of IPRE calls side by side (ConnectOptions.path, docs/ARCHITECTURE.md §3): the
 * same caller (kvcaller.elf, window 0) and remote (kvstore.elf, window 1) driven through the
 * fast path (the runtime's #PF handler, no exit) and the host's path (two exits per call), with
 * the exits each operation took, and every refusal and fault the paths must agree on. Also a
 * pair of glibc programs on the fast path. Prints one JSON report (test/fastpath.test.ts).
 */
import { connect, Machine, type CallPath } from "../../src/mod.ts";
import { linuxElf } from "../../src/examples.ts";
import { exampleElf, isMain, outcome, type Outcome } from "./common.ts";

export interface PathReport {
  path: CallPath;
  connPath: string;
  /** call_remote_n(calls) after fill(n): result and the exits beyond the vmcall's own. */
  loop: { n: number; calls: number; result: number; exits: number };
  /** One vmcall of call_remote_n(1): its exits (the vmcall's end included). */
  oneCall: number;
  /** A hostcall made by remote code inside a call: result and exits of the vmcall. */
  hostcall: { result: number; exits: number };
  /** A callback into caller code: result and exits. */
  callback: { result: number; exits: number };
  /** Errors the paths must agree on, and a call that works after each. */
  forged: Outcome;
  forgedAddress: Outcome;
  busy: Outcome;
  busyThenFree: number;
  fault: Outcome;
  afterFault: { result: number; exits: number };
  timeout: Outcome;
  afterTimeout: { result: number; exits: number };
  /** With Machine.onRemoteEntry set, each call is seen (and takes the host's path). */
  hooked: { entries: number; exits: number; afterUnhook: number };
  /** After disconnect: the entry is unmapped again for caller code. */
  afterDisconnect: Outcome;
}

export interface FastPathReport {
  paths: PathReport[];
  /** glibc caller -> glibc remote (libc-bench -> counter) on the fast path: exits per call. */
  linux: { calls: number; exits: number };
}

const quiet = { stdout: () => {}, stderr: () => {} };

function pathReport(path: CallPath): PathReport {
  using remote = Machine.create({ window: 1, program: exampleElf("kvstore"), name: "kvstore" });
  using caller = Machine.create({ window: 0, program: exampleElf("kvcaller"), name: "kvcaller" });
  using other = Machine.create({ window: 0, program: exampleElf("kvcaller"), name: "other" });
  const conn = connect(caller, remote, { path });
  using _other = connect(other, remote, { path });
  const exitsOf = (fn: () => number): { result: number; exits: number } => {
    const e0 = caller.exits;
    const result = fn();
    return { result, exits: caller.exits - e0 };
  };
  const n = 50;
  caller.call("fill", n);
  const calls = 300;
  const loop = exitsOf(() => caller.call("call_remote_n", calls));
  const oneCall = exitsOf(() => caller.call("call_remote_n", 1)).exits;

  remote.hostcalls.set(1, (x: number) => 3 * x + 1);
  const hostcall = exitsOf(() => caller.call("call_remote_hostcall", 14));
  const callback = exitsOf(() => caller.call("via_callback", 20));

  const forged = outcome(() => caller.call("call_secret"));
  const forgedAddress = outcome(() => caller.call("read_remote", 0)); // not a call: a plain fault at 0 stays the caller's
  // Busy: while the remote runs a call from `caller` (inside its hostcall), `other` calls it.
  let inner: Outcome | undefined;
  remote.hostcalls.set(1, () => {
    inner = outcome(() => other.call("call_remote_n", 1));
    return 0;
  });
  caller.call("call_remote_hostcall", 1);
  const busy = inner ?? outcome(() => 0);
  const busyThenFree = other.call("call_remote_n", 2);

  const fault = outcome(() => caller.call("call_remote_fault"));
  const afterFault = exitsOf(() => caller.call("call_remote_n", 10));
  const timeout = outcome(() => caller.invoke("call_remote_spin", [], { timeoutMs: 50 }));
  remote.reset();
  caller.reset();
  const afterTimeout = exitsOf(() => caller.call("call_remote_n", 10));

  let entries = 0;
  caller.onRemoteEntry = () => entries++;
  const hookedRun = exitsOf(() => caller.call("call_remote_n", 5));
  caller.onRemoteEntry = undefined;
  const afterUnhook = exitsOf(() => caller.call("call_remote_n", 5)).exits;

  const kvCount = remote.symbol("kv_count");
  conn.disconnect();
  const afterDisconnect = outcome(() => caller.call(kvCount));
  return {
    path,
    connPath: conn.path,
    loop: { n, calls, result: loop.result, exits: loop.exits },
    oneCall,
    hostcall,
    callback,
    forged,
    forgedAddress,
    busy,
    busyThenFree,
    fault,
    afterFault,
    timeout,
    afterTimeout,
    hooked: { entries, exits: hookedRun.exits, afterUnhook },
    afterDisconnect,
  };
}

function linuxReport(): FastPathReport["linux"] {
  using remote = Machine.create({ window: 1, name: "counter", program: linuxElf("counter"), linux: quiet });
  using caller = Machine.create({ window: 0, name: "libc-bench" });
  using _conn = connect(caller, remote, { path: "fast" });
  caller.exec(linuxElf("libc-bench"), quiet);
  const calls = 200;
  const e0 = caller.exits;
  caller.call("call_remote_n", calls);
  return { calls, exits: caller.exits - e0 };
}

export function fastPathReport(): FastPathReport {
  return { paths: [pathReport("fast"), pathReport("trap")], linux: linuxReport() };
}

if (isMain(import.meta)) console.log(JSON.stringify(fastPathReport()));
