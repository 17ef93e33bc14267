/**
 * Static Linux programs of several toolchains on ipre (Machine.exec, src/linux/): musl C
 * (hello-musl), C++ with static libstdc++ (hello-cpp), Rust std as a static-PIE (hello-rs), and
 * hello.c as a glibc static-PIE (hello-pie); the two PIEs in window 0 and in window 2.
 * Runtime-neutral: test/linux-langs.test.ts runs it on Node (in process), Bun and Deno.
 */
import { readFileSync } from "node:fs";
import { libc } from "../../src/ffi/index.ts";
import { Machine } from "../../src/machine/machine.ts";

export const LANG_PROGRAMS = ["hello-musl", "hello-cpp", "hello-rs", "hello-pie"] as const;
export type LangProgram = (typeof LANG_PROGRAMS)[number];
/** The static-PIEs, also run in window 2. */
export const PIE_PROGRAMS = ["hello-rs", "hello-pie"] as const;

export const program = (name: string): Uint8Array => new Uint8Array(readFileSync(new URL(`../../guests/linux/${name}.elf`, import.meta.url)));

export interface LangRun {
  exitCode: number;
  stdout: string;
  stderr: string;
  warnings: string[];
  /** Syscalls the program made, by name, in order. */
  syscalls: string[];
  /** The last syscalls with arguments and results, and the error, when the run failed. */
  tail?: string[];
  error?: string;
}

export interface LangsReport {
  runtime: string;
  /** By program, in window 0. */
  window0: Record<string, LangRun>;
  /** The static-PIEs in window 2. */
  window2: Record<string, LangRun>;
}

function run(window: number, name: string): LangRun {
  const dec = new TextDecoder();
  const r: LangRun = { exitCode: -1, stdout: "", stderr: "", warnings: [], syscalls: [] };
  const log: string[] = [];
  try {
    using m = Machine.create({ window, memory: 64 * 1024 * 1024 });
    r.exitCode = m.exec(program(name), {
      argv: [`/bin/${name}`, "x", "y"],
      env: { IPRE_WHO: "ipre", LANG: "C" },
      stdout: (b) => (r.stdout += dec.decode(b)),
      stderr: (b) => (r.stderr += dec.decode(b)),
      onUnknownSyscall: (nr, n) => r.warnings.push(`${n}:${nr}`),
      trace: (_nr, n, args, result) => {
        r.syscalls.push(n);
        log.push(`${n}(${args.map((a) => a.toString(16)).join(",")}) = ${result === undefined ? "?" : result.toString(16)}`);
      },
    });
  } catch (e) {
    r.error = String(e);
    r.tail = log.slice(-60);
  }
  return r;
}

export function langsReport(): LangsReport {
  const window0: Record<string, LangRun> = {};
  for (const name of LANG_PROGRAMS) window0[name] = run(0, name);
  const window2: Record<string, LangRun> = {};
  for (const name of PIE_PROGRAMS) window2[name] = run(2, name);
  return { runtime: libc.runtime, window0, window2 };
}

if ((import.meta as ImportMeta & { main?: boolean }).main) console.log(JSON.stringify(langsReport()));
