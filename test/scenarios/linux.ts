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
import { ENTRY } from "../../src/engine/parked.ts";
import { PF_R, PF_X, writeElfHeaders } from "./elf-builder.ts";

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

/**
 * PVM's `syscall`, reproduced on any flavour (docs/ARCHITECTURE.md §5): ring 3 sets RCX (where to
 * resume) and R11 (RFLAGS) itself and jumps to LSTAR, whose supervisor page faults on the fetch,
 * as PVM does after a real `syscall`. The program writes "pvm route\n" that way (with CF set and a
 * forged IOPL 3 in R11, and RCX pointing past a `ud2`), then "via syscall\n" with a real
 * `syscall`, then exit_group(bits) through the route again. Exit code bits: 1 the write's result
 * was wrong, 2 CF from R11 was lost, 4 the forged IOPL reached RFLAGS, 8 the real syscall failed.
 * LSTAR (window 0) is patched into the `movabs r8`. Source: `as` of the listing in the comments.
 */
export function pvmRouteElf(): Uint8Array {
  // prettier-ignore
  const code = Uint8Array.of(
    0xb8, 0x01, 0x00, 0x00, 0x00, //             mov eax, 1 (write)
    0xbf, 0x01, 0x00, 0x00, 0x00, //             mov edi, 1
    0x48, 0x8d, 0x35, 0x8e, 0x00, 0x00, 0x00, // lea rsi, [rip + msg]
    0xba, 0x0a, 0x00, 0x00, 0x00, //             mov edx, 10
    0x48, 0x8d, 0x0d, 0x1a, 0x00, 0x00, 0x00, // lea rcx, [rip + back1]   resume there, not after the jmp
    0xf9, 0x9c, 0x41, 0x5b, //                   stc; pushfq; pop r11     R11 = RFLAGS with CF
    0x49, 0x81, 0xcb, 0x00, 0x30, 0x00, 0x00, // or r11, 0x3000          a forged IOPL 3
    0x49, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, //       movabs r8, LSTAR (patched below, offset 42)
    0x41, 0xff, 0xe0, //                         jmp r8
    0x0f, 0x0b, //                               ud2                      never: resume is at RCX
    // back1:
    0x49, 0x89, 0xc4, //                         mov r12, rax
    0x0f, 0x92, 0xc3, //                         setc bl
    0x9c, 0x41, 0x59, //                         pushfq; pop r9
    0x49, 0xc1, 0xe9, 0x0c, //                   shr r9, 12
    0x41, 0x83, 0xe1, 0x03, //                   and r9d, 3               IOPL
    0x45, 0x31, 0xed, //                         xor r13d, r13d
    0x49, 0x83, 0xfc, 0x0a, 0x74, 0x04, //       cmp r12, 10; je 1f
    0x41, 0x83, 0xcd, 0x01, //                   or r13d, 1
    0x84, 0xdb, 0x75, 0x04, //                   1: test bl, bl; jnz 2f
    0x41, 0x83, 0xcd, 0x02, //                   or r13d, 2
    0x45, 0x85, 0xc9, 0x74, 0x04, //             2: test r9d, r9d; jz 3f
    0x41, 0x83, 0xcd, 0x04, //                   or r13d, 4
    0xb8, 0x01, 0x00, 0x00, 0x00, //             3: mov eax, 1
    0xbf, 0x01, 0x00, 0x00, 0x00, //             mov edi, 1
    0x48, 0x8d, 0x35, 0x32, 0x00, 0x00, 0x00, // lea rsi, [rip + msg2]
    0xba, 0x0c, 0x00, 0x00, 0x00, //             mov edx, 12
    0x0f, 0x05, //                               syscall                  the flavour's own route
    0x48, 0x83, 0xf8, 0x0c, 0x74, 0x04, //       cmp rax, 12; je 4f
    0x41, 0x83, 0xcd, 0x08, //                   or r13d, 8
    0x44, 0x89, 0xef, //                         4: mov edi, r13d
    0xb8, 0xe7, 0x00, 0x00, 0x00, //             mov eax, 231 (exit_group)
    0x48, 0x8d, 0x0d, 0x06, 0x00, 0x00, 0x00, // lea rcx, [rip + hang]
    0x45, 0x31, 0xdb, //                         xor r11d, r11d
    0x41, 0xff, 0xe0, //                         jmp r8
    0x0f, 0x0b, //                               hang: ud2
    ...new TextEncoder().encode("pvm route\nvia syscall\n"), // msg, msg2
  );
  new DataView(code.buffer).setBigUint64(42, BigInt(ENTRY.syscall), true);
  const bytes = new Uint8Array(0x1000 + code.length);
  bytes.set(code, 0x1000);
  return writeElfHeaders(bytes, [{ flags: PF_R | PF_X, offset: 0x1000, vaddr: 0x401000, filesz: code.length, memsz: code.length }], { entry: 0x401000 });
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
  /** pvmRouteElf(): its exit code, output, syscalls and exits. */
  pvmRoute: RunReport;
  /** Only when a run failed. */
  cpuid?: string[];
}

function run(m: Machine, argv: string[], extra: ExecOptions = {}, program: Uint8Array = HELLO): RunReport {
  const dec = new TextDecoder();
  const r: RunReport = { exitCode: -1, stdout: "", stderr: "", warnings: [], syscalls: [], exits: 0 };
  const before = m.exits;
  const log: string[] = [];
  try {
    r.exitCode = m.exec(program, {
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
  m.reset();
  const pvmRoute = run(m, ["pvm-route"], {}, pvmRouteElf());
  const failed = [plain, enosys, override, ...again].some((r) => r.error !== undefined);
  return { runtime: libc.runtime, plain, enosys, override, abort, again, pvmRoute, ...(failed ? { cpuid: cpuidDump() } : {}) };
}

if ((import.meta as ImportMeta & { main?: boolean }).main) console.log(JSON.stringify(linuxReport()));
