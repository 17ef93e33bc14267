/**
 * `ipre bench <latency|load|payload>`: the paper's experiments on this machine and runtime.
 * Results (JSON, SVG, machine description, text summary) go to
 * `results/<timestamp>-<subcommand>-<runtime>/` or `--out DIR`; progress goes to stderr.
 */
import process from "node:process";
import type { Flags } from "./cli.ts";

export const BENCH_USAGE = `usage: ipre bench <subcommand> [options]

subcommands:
  latency [--iterations N] [--warmup N]
      kvm_run, hostcall, vmcall and remote_call round trips (default 10000 after 100 warm-up),
      with p50/p90/p99/max, and the ratio remote_call / hostcall
  load [--iterations N] [--warmup N] [--levels 0,50,100,200] [--duration-limit SECONDS]
       [--load-tool busy|stress-ng] [--pace-us N]
      the paper's Table II: p50/p90/p99 of ipre, atomics (worker ping-pong) and unix_socket
      (child process echo) under CPU load (level% x cores busy loops), plus an SVG like Fig. 2;
      ipre_paced: remote calls from a caller that sleeps --pace-us (default 200, 0 = off) between calls
  payload [--max-size 64MiB] [--min-size 64] [--iterations N]
      zero-copy ipre checksum over caller memory vs postMessage (copy) to a worker and a
      Unix socket to a child process, sizes in powers of 4

common options:
  --json        print one JSON document on stdout instead of tables
  --out DIR     write results to DIR (default results/<timestamp>-<subcommand>-<runtime>/)
  --quiet       no progress lines on stderr
`;

export async function bench(flags: Flags): Promise<number> {
  const [sub] = flags.positional;
  switch (sub) {
    case "latency":
      return (await import("./bench/latency.ts")).latencyCommand(flags);
    case "load":
      return (await import("./bench/load.ts")).loadCommand(flags);
    case "payload":
      return (await import("./bench/payload.ts")).payloadCommand(flags);
    case undefined:
    case "help":
      process.stdout.write(BENCH_USAGE);
      return sub ? 0 : 2;
    default:
      process.stderr.write(`ipre bench: unknown subcommand "${sub}"\n${BENCH_USAGE}`);
      return 2;
  }
}
