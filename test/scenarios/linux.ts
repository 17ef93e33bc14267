/**
 * Static Linux programs on ipre (Machine.exec, src/linux/): guests/linux/hello.elf (glibc,
 * gcc -static) runs to exit with argv, env, stdout/stderr sinks; an unknown syscall gives ENOSYS
 * and one warning; a user handler overrides a syscall; the machine execs again after reset().
 * Runtime-neutral: test/linux.test.ts runs it on Node (in process), Bun and Deno.
 */
import { readFileSync } from "node:fs";
import { Machine } from "../../src/machine/machine.ts";
import type { ExecOptions } from "../../src/machine/machine.ts";
import { libc } from "../../src/ffi/index.ts";

export const HELLO = new Uint8Array(readFileSync(new URL("../../guests/linux/hello.elf", import.meta.url)));

export interface RunReport {
  exitCode: number;
  stdout: string;
  stderr: string;
  warnings: string[];
  /** Syscalls the program made, by name, in order. */
  syscalls: string[];
  /** Exits of the machine during the run. */
  exits: number;
}

export interface LinuxReport {
  runtime: string;
  plain: RunReport;
  enosys: RunReport;
  override: RunReport;
  /** Two more runs on the same machine, each after reset(). */
  again: RunReport[];
  error?: string;
}

function run(m: Machine, argv: string[], extra: ExecOptions = {}): RunReport {
  const dec = new TextDecoder();
  const r: RunReport = { exitCode: -1, stdout: "", stderr: "", warnings: [], syscalls: [], exits: 0 };
  const before = m.exits;
  r.exitCode = m.exec(HELLO, {
    argv,
    env: { IPRE_WHO: "ipre", LANG: "C" },
    stdout: (b) => (r.stdout += dec.decode(b)),
    stderr: (b) => (r.stderr += dec.decode(b)),
    onUnknownSyscall: (nr, name) => r.warnings.push(`${name}:${nr}`),
    trace: (_nr, name) => r.syscalls.push(name),
    ...extra,
  });
  r.exits = m.exits - before;
  return r;
}

export function linuxReport(): LinuxReport {
  using m = Machine.create({ memory: 64 * 1024 * 1024 });
  const plain = run(m, ["/bin/hello", "a", "b"]);
  m.reset();
  const enosys = run(m, ["hello", "enosys"]);
  m.reset();
  const override = run(m, ["hello", "enosys"], { syscalls: { 999: () => 42 } });
  const again: RunReport[] = [];
  for (let i = 0; i < 2; i++) {
    m.reset();
    again.push(run(m, ["/bin/hello", "a", "b"]));
  }
  return { runtime: libc.runtime, plain, enosys, override, again };
}

if ((import.meta as ImportMeta & { main?: boolean }).main) console.log(JSON.stringify(linuxReport()));
