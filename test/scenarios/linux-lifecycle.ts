/**
 * Linux programs that serve calls (TinyKVM's lifecycle) and IPRE between two of them:
 * guests/linux/counter.elf (window 1) runs main() to ipre_wait_for_requests() inside
 * Machine.create, then the host calls its functions with libc available; reset() goes back to
 * that point and fork() starts there. guests/linux/counter-caller.elf (window 0) calls it over
 * IPRE, finding its functions with ipre_remote(); an abort in the remote is a RemoteFault.
 * Runtime-neutral: test/linux-lifecycle.test.ts runs it on Node (in process), Bun and Deno.
 */
import { readFileSync } from "node:fs";
import { Machine } from "../../src/machine/machine.ts";
import { connect } from "../../src/ipre/connect.ts";
import { libc } from "../../src/ffi/index.ts";

const elf = (name: string) => new Uint8Array(readFileSync(new URL(`../../guests/linux/${name}.elf`, import.meta.url)));
export const COUNTER = elf("counter");
export const COUNTER_CALLER = elf("counter-caller");

export interface ErrorReport {
  name: string;
  message: string;
  signal?: number;
  output?: string;
  remoteName?: string;
}

export interface LifecycleReport {
  runtime: string;
  /** After create: phase, exit code, what main printed. */
  created: { phase?: string; exitCode?: number; stdout: string };
  /** Results of calls in order, by label. */
  calls: Record<string, number>;
  /** What the calls printed. */
  callStdout: string;
  /** After reset(): calls and output. */
  afterReset: Record<string, number>;
  afterResetStdout: string;
  /** exit() inside a call, then a call without reset. */
  exitInCall: ErrorReport | string;
  /** Why the machine refuses calls after exit() inside one (its destructors ran). */
  exitNeedsReset?: string;
  afterExitInCall: number;
  /** abort() inside a direct call, then after reset(). */
  abortInCall: ErrorReport | string;
  afterAbort: number;
  /** A fork of a snapshot taken after some calls: its state and output. */
  fork: { calls: number; add: number; stdout: string; parentCalls: number };
  /** counter-caller over IPRE. */
  ipre: { exitCode: number; stdout: string; remoteStdout: string; stderr: string; remoteCalls: number; error?: string };
  /** counter-caller abort: the remote aborts. */
  ipreAbort: { error: ErrorReport | string; remoteNeedsReset?: string; callerNeedsReset?: string; callerStdout: string };
  /** After remote.reset() and caller.reset(): the normal run again. */
  ipreAgain: { exitCode: number; stdout: string; remoteStdout: string; error?: string };
}

function errorReport(e: unknown): ErrorReport {
  const x = e as Error & { signal?: number; output?: string; remoteName?: string };
  return { name: x.name, message: x.message, signal: x.signal, output: x.output, remoteName: x.remoteName };
}

export function lifecycleReport(): LifecycleReport {
  const dec = new TextDecoder();
  let out = "";
  const stdout = (b: Uint8Array) => (out += dec.decode(b));
  const take = () => {
    const s = out;
    out = "";
    return s;
  };
  using m = Machine.create({ window: 1, program: COUNTER, linux: { argv: ["counter"], stdout, stderr: () => {} }, timeoutMs: 20_000 });
  const created = { phase: m.linuxPhase, exitCode: m.exitCode, stdout: take() };
  const calls: Record<string, number> = {};
  calls.add5 = m.call("counter_add", 5);
  calls.add7 = m.call("counter_add", 7);
  calls.calls = m.call("counter_calls");
  calls.errno = m.call("counter_errno");
  calls.heapSmall = m.call("counter_heap", 1000);
  calls.heapBig = m.call("counter_heap", 300_000);
  calls.keep = m.call("counter_keep", "from the host");
  calls.dump = m.call("counter_dump");
  const callStdout = take();

  const snap = m.snapshot();
  m.reset(); // back to the snapshot just taken: the same state
  const parentCalls = m.call("counter_calls");
  let forkOut = "";
  const fork = (() => {
    using f = Machine.fork(snap, { linux: { stdout: (b) => (forkOut += dec.decode(b)) } });
    const fc = f.call("counter_calls");
    const add = f.call("counter_add", 1000);
    f.call("counter_dump");
    return { calls: fc, add, stdout: forkOut, parentCalls };
  })();

  // reset() returns to the last snapshot; to get back to main's state, fork from scratch instead:
  // a fresh machine of the same program.
  using n = Machine.create({ window: 1, program: COUNTER, linux: { stdout, stderr: () => {} }, timeoutMs: 20_000 });
  take();
  n.call("counter_add", 50);
  n.reset(); // back to ipre_wait_for_requests()
  const afterReset: Record<string, number> = {};
  afterReset.calls = n.call("counter_calls");
  afterReset.add = n.call("counter_add", 1);
  afterReset.dump = n.call("counter_dump");
  const afterResetStdout = take();

  let exitInCall: ErrorReport | string = "no error";
  try {
    n.call("counter_exit", 3);
  } catch (e) {
    exitInCall = errorReport(e);
  }
  const exitNeedsReset = n.needsReset;
  n.reset();
  const afterExitInCall = n.call("counter_calls");
  let abortInCall: ErrorReport | string = "no error";
  try {
    n.call("counter_abort", "boom");
  } catch (e) {
    abortInCall = errorReport(e);
  }
  n.reset();
  const afterAbort = n.call("counter_calls");

  // IPRE between two Linux programs.
  let remoteOut = "";
  using remote = Machine.create({ window: 1, program: COUNTER, linux: { stdout: (b) => (remoteOut += dec.decode(b)), stderr: () => {} }, timeoutMs: 20_000 });
  remoteOut = "";
  using caller = Machine.create({ window: 0, timeoutMs: 20_000 });
  connect(caller, remote);
  const runCaller = (argv: string[]) => {
    const r = { exitCode: -1, stdout: "", remoteStdout: "", stderr: "", error: undefined as string | undefined };
    try {
      r.exitCode = caller.exec(COUNTER_CALLER, { argv, stdout: (b) => (r.stdout += dec.decode(b)), stderr: (b) => (r.stderr += dec.decode(b)) });
    } catch (e) {
      r.error = String(e);
    }
    r.remoteStdout = remoteOut;
    remoteOut = "";
    return r;
  };
  const first = runCaller(["caller"]);
  const ipre = { ...first, remoteCalls: remote.call("counter_calls") };
  remote.reset();
  caller.reset();
  let abortError: ErrorReport | string = "no error";
  let abortOut = "";
  try {
    caller.exec(COUNTER_CALLER, { argv: ["caller", "abort"], stdout: (b) => (abortOut += dec.decode(b)), stderr: () => {} });
  } catch (e) {
    abortError = errorReport(e);
  }
  const ipreAbort = { error: abortError, remoteNeedsReset: remote.needsReset, callerNeedsReset: caller.needsReset, callerStdout: abortOut };
  remoteOut = "";
  remote.reset();
  caller.reset();
  const again = runCaller(["caller"]);
  return { runtime: libc.runtime, created, calls, callStdout, afterReset, afterResetStdout, exitInCall, exitNeedsReset, afterExitInCall, abortInCall, afterAbort, fork, ipre, ipreAbort, ipreAgain: again };
}

if ((import.meta as ImportMeta & { main?: boolean }).main) console.log(JSON.stringify(lifecycleReport()));
