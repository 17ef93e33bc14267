/**
 * IPRE between static Linux programs (guests/linux/pairs/, built by scripts/build-guests.mjs
 * (d)): for each pair a remote machine (window 1) runs its program's main() up to
 * ipre_wait_for_requests(), an empty caller machine (window 0) is connected to it, and the
 * caller program is exec'd; it finds the remote's functions with ipre_remote() and checks the
 * answers itself. Also the remote failing on purpose (a C++ exception, a Rust panic): a
 * RemoteFault, and a normal run again after reset().
 * Runtime-neutral: test/linux-pairs.test.ts runs it on Node (in process), Bun and Deno.
 */
import { readFileSync } from "node:fs";
import { connect } from "../../src/ipre/connect.ts";
import { libc } from "../../src/ffi/index.ts";
import { Machine } from "../../src/machine/machine.ts";

const elf = (name: string) => new Uint8Array(readFileSync(new URL(`../../guests/linux/pairs/${name}.elf`, import.meta.url)));
const MEMORY = 64 * 1024 * 1024;
/** Per run; the nested harness emulates the vCPU (slow). */
const TIMEOUT_MS = 120_000;

export interface PairRun {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** What the remote printed during the run. */
  remoteStdout: string;
  remoteStderr: string;
  /** The thrown error: class name, message, and for a RemoteFault the remote's signal and output. */
  error?: { name: string; message: string; signal?: number; output?: string; remoteName?: string };
}

export interface PairsReport {
  runtime: string;
  /** Errors creating or connecting the machines, by pair. */
  setup: Record<string, string>;
  cpp: PairRun[];
  c: PairRun[];
  rust: PairRun[];
}

interface Pair {
  remote: Machine;
  caller: Machine;
  remoteOut: { stdout: string; stderr: string };
  close(): void;
}

function pair(remoteName: string): Pair {
  const dec = new TextDecoder();
  const remoteOut = { stdout: "", stderr: "" };
  const remote = Machine.create({
    program: elf(remoteName),
    window: 1,
    memory: MEMORY,
    name: remoteName,
    timeoutMs: TIMEOUT_MS,
    linux: {
      argv: [remoteName],
      stdout: (b) => (remoteOut.stdout += dec.decode(b)),
      stderr: (b) => (remoteOut.stderr += dec.decode(b)),
    },
  });
  let caller: Machine;
  try {
    caller = Machine.create({ memory: MEMORY, name: `caller of ${remoteName}`, timeoutMs: TIMEOUT_MS });
    connect(caller, remote);
  } catch (e) {
    remote.close();
    throw e;
  }
  return { remote, caller, remoteOut, close: () => (caller.close(), remote.close()) };
}

function exec(p: Pair, program: Uint8Array, argv: string[]): PairRun {
  const dec = new TextDecoder();
  p.remoteOut.stdout = p.remoteOut.stderr = "";
  const r: PairRun = { exitCode: -1, stdout: "", stderr: "", remoteStdout: "", remoteStderr: "" };
  try {
    r.exitCode = p.caller.exec(program, {
      argv,
      env: { LANG: "C" },
      stdout: (b) => (r.stdout += dec.decode(b)),
      stderr: (b) => (r.stderr += dec.decode(b)),
    });
  } catch (e) {
    const x = e as Error & { signal?: number; output?: string; remoteName?: string };
    r.error = { name: x.name, message: x.message, signal: x.signal, output: x.output, remoteName: x.remoteName };
  }
  r.remoteStdout = p.remoteOut.stdout;
  r.remoteStderr = p.remoteOut.stderr;
  return r;
}

/** Normal run, the failing run, a normal run again, then the failing run once more, each after
 * reset() of both machines (the remote back at ipre_wait_for_requests(): the Rust caller counts
 * what the remote holds; the second failure's output is its own, not the first one's as well). */
function failAndRecover(p: Pair, program: Uint8Array, name: string, fail: string): PairRun[] {
  const runs = [exec(p, program, [name])];
  for (const args of [[name, fail], [name], [name, fail]]) {
    p.remote.reset();
    p.caller.reset();
    runs.push(exec(p, program, args));
  }
  return runs;
}

export function pairsReport(): PairsReport {
  const report: PairsReport = { runtime: libc.runtime, setup: {}, cpp: [], c: [], rust: [] };
  const each = (key: "cpp" | "c" | "rust", remote: string, body: (p: Pair) => PairRun[]) => {
    let p: Pair;
    try {
      p = pair(remote);
    } catch (e) {
      report.setup[key] = String(e);
      return;
    }
    try {
      report[key] = body(p);
    } finally {
      p.close();
    }
  };
  // 1, 2, 3, 6: C++ -> C++, then an exception in the remote.
  each("cpp", "cpp_remote", (p) => failAndRecover(p, elf("cpp_caller"), "cpp_caller", "throw"));
  // 5: C -> C++, on a fresh remote (the caller counts the remote's entries).
  each("c", "cpp_remote", (p) => [exec(p, elf("c_caller"), ["c_caller"])]);
  // 4: Rust -> Rust, then a panic in the remote.
  each("rust", "rust_remote", (p) => failAndRecover(p, elf("rust_caller"), "rust_caller", "panic"));
  return report;
}

if ((import.meta as ImportMeta & { main?: boolean }).main) console.log(JSON.stringify(pairsReport()));
