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
import { Kvm } from "../../src/kvm/system.ts";

/** The CPUID KVM offers (function.index: eax ebx ecx edx), to diagnose a libc that aborts at start-up. */
function cpuidDump(): string[] {
  using kvm = Kvm.open();
  const v = kvm.cpuid.view;
  const n = v.getUint32(0, true);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const o = 8 + i * 40;
    const h = (k: number) => v.getUint32(o + k, true).toString(16);
    out.push(`${h(0)}.${h(4)}: ${h(12)} ${h(16)} ${h(20)} ${h(24)}`);
  }
  return out;
}

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
  /** The last syscalls with arguments and results, and the error, when the run failed. */
  tail?: string[];
  error?: string;
}

export interface LinuxReport {
  runtime: string;
  plain: RunReport;
  enosys: RunReport;
  override: RunReport;
  /** Two more runs on the same machine, each after reset(). */
  again: RunReport[];
  /** hello abort: the error (class, signal, message). */
  abort: { name: string; signal?: number; message: string } | string;
  /** Only when a run failed. */
  cpuid?: string[];
}

function run(m: Machine, argv: string[], extra: ExecOptions = {}): RunReport {
  const dec = new TextDecoder();
  const r: RunReport = { exitCode: -1, stdout: "", stderr: "", warnings: [], syscalls: [], exits: 0 };
  const before = m.exits;
  const log: string[] = [];
  try {
    r.exitCode = m.exec(HELLO, {
      argv,
      env: { IPRE_WHO: "ipre", LANG: "C" },
      stdout: (b) => (r.stdout += dec.decode(b)),
      stderr: (b) => (r.stderr += dec.decode(b)),
      onUnknownSyscall: (nr, name) => r.warnings.push(`${name}:${nr}`),
      trace: (_nr, name, args, result) => {
        r.syscalls.push(name);
        log.push(`${name}(${args.map((a) => a.toString(16)).join(",")}) = ${result === undefined ? "?" : result.toString(16)}`);
      },
      ...extra,
    });
  } catch (e) {
    r.error = String(e);
    r.tail = log.slice(-60);
  }
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
  m.reset();
  let abort: LinuxReport["abort"] = "no error";
  try {
    m.exec(HELLO, { argv: ["hello", "abort"], stdout: () => {}, stderr: () => {} });
  } catch (e) {
    abort = { name: (e as Error).name, signal: (e as { signal?: number }).signal, message: (e as Error).message };
  }
  const again: RunReport[] = [];
  for (let i = 0; i < 2; i++) {
    m.reset();
    again.push(run(m, ["/bin/hello", "a", "b"]));
  }
  const failed = [plain, enosys, override, ...again].some((r) => r.error !== undefined);
  return { runtime: libc.runtime, plain, enosys, override, abort, again, ...(failed ? { cpuid: cpuidDump() } : {}) };
}

if ((import.meta as ImportMeta & { main?: boolean }).main) console.log(JSON.stringify(linuxReport()));
