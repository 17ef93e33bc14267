/**
 * `ipre bench <latency|load|payload|fanin>`: the paper's experiments on this machine and runtime.
 * Results (JSON, SVG, machine description, text summary) go to
 * `results/<timestamp>-<subcommand>-<runtime>/` or `--out DIR`; progress goes to stderr.
 */
import process from "node:process";
import { checkOptions, type Flags, UsageError } from "./flags.ts";

export const BENCH_USAGE = `usage: ipre bench <subcommand> [options]

subcommands:
  latency [--iterations N] [--warmup N]
      kvm_run, hostcall (the ring-3 gate), hostcall_fault (the fetch-fault gate), vmcall,
      remote_call (the fast path, in the guest) and remote_call_trap (the host's path), a Linux
      program's syscall and a remote call between two glibc programs
      (default 10000 after 100 warm-up), with p50/p90/p99/max, exits per operation, and the
      ratios to the kvm_run floor
  load [--iterations N] [--warmup N] [--levels 0,50,100,200] [--duration-limit SECONDS]
       [--load-tool busy|stress-ng] [--pace-us N]
      the paper's Table II: p50/p90/p99 of ipre, atomics (worker ping-pong) and unix_socket
      (child process echo) under CPU load (level% x cores busy loops), plus an SVG like Fig. 2;
      ipre_paced: remote calls from a caller that sleeps --pace-us (default 200, 0 = off) between calls
  payload [--max-size 64MiB] [--min-size 64] [--iterations N] [--op checksum|sum64|both]
      zero-copy ipre over caller memory (ipre: caller code calls the remote, 1 exit;
      ipre_direct: conn.call from JS, 1 exit) vs postMessage (copy) to a worker and a Unix socket
      to a child process, sizes in powers of 4; ops: checksum (FNV-1a, compute-bound) and
      sum64 (u64 word sum, memory-bandwidth-bound), default both
  fanin [--workers 1,2,4] [--ops N] [--warmup N] [--keys N]
      N client workers (threads) calling one key-value store concurrently, 50% put / 50% get
      (default 10000 ops each after 200 warm-up, over 1024 keys each): ops/s, p50/p99 and exits
      per op of ipre (one remote shared with every worker, a vmcall into it: 1 exit), ipre_direct
      (the same remote, conn.call from JS: 1 exit), atomics_server (a server thread,
      Atomics.wait/notify) and unix_socket (a server process), every reply checked, plus SVGs of
      ops/s and latency

common options:
  --json        print one JSON document on stdout instead of tables
  --out DIR     write results to DIR (default results/<timestamp>-<subcommand>-<runtime>/)
  --quiet       no progress on stderr (on a terminal progress is one updating line with an ETA;
                otherwise, or with --json, a line per phase)
  --help        this help

examples:
  ipre bench latency --iterations 1000
  ipre bench payload --max-size 1MiB --json > payload.json
  ipre bench fanin --workers 1,2,4 --json
`;

const COMMON = ["json", "out", "quiet"];
/** The options each subcommand accepts (an unknown one is a usage error, exit 2). */
const OPTIONS: Readonly<Record<string, readonly string[]>> = {
  latency: ["iterations", "warmup", ...COMMON],
  load: ["iterations", "warmup", "levels", "duration-limit", "load-tool", "pace-us", ...COMMON],
  payload: ["max-size", "min-size", "iterations", "warmup", "op", ...COMMON],
  fanin: ["workers", "ops", "warmup", "keys", ...COMMON],
};

export async function bench(flags: Flags): Promise<number> {
  const [sub] = flags.positional;
  if (flags.options.has("help") || sub === "help") {
    process.stdout.write(BENCH_USAGE);
    return 0;
  }
  if (sub !== undefined && Object.hasOwn(OPTIONS, sub)) {
    checkOptions(flags, OPTIONS[sub]!, `bench ${sub}`);
    if (flags.positional.length > 1) throw new UsageError(`bench ${sub} takes no arguments (got "${flags.positional[1]}")`);
  }
  switch (sub) {
    case "latency":
      return (await import("./bench/latency.ts")).latencyCommand(flags);
    case "load":
      return (await import("./bench/load.ts")).loadCommand(flags);
    case "payload":
      return (await import("./bench/payload.ts")).payloadCommand(flags);
    case "fanin":
      return (await import("./bench/fanin.ts")).faninCommand(flags);
    case undefined:
      process.stderr.write(`ipre: bench needs a subcommand: ${Object.keys(OPTIONS).join(", ")} (see ipre bench --help)\n`);
      return 2;
    default:
      process.stderr.write(`ipre bench: unknown subcommand "${sub}" (see ipre bench --help; subcommands: ${Object.keys(OPTIONS).join(", ")})\n`);
      return 2;
  }
}
