/**
 * Running a static Linux program (ELF64 ET_EXEC, e.g. `gcc -static`, which links at 0x400000 =
 * window 0 base + ELF_LINK_OFFSET, or a static-PIE, which parseElf places at a base): its
 * segments are loaded as any program's (Machine.load), the Linux initial process stack is built at the top of the machine's stack (argc, argv, envp, auxv),
 * and the vCPU enters e_entry in ring 3 with RSP at argc. The program's syscalls go to its
 * LinuxProcess (syscalls.ts) until exit/exit_group or ipre_wait_for_requests() ends the run.
 *
 * Every flavour: on PVM a ring-3 `syscall` arrives as a fetch fault at MSR_LSTAR, which exits.ts
 * turns into the same syscall exit (docs/ARCHITECTURE.md §4).
 */
import { LinuxProgramError } from "../errors.ts";
import { GENERAL_REGS } from "../kvm/abi.ts";
import { PAGE_SIZE } from "../guest/layout.ts";
import type { ElfImage } from "../guest/elf.ts";
import type { Cpu } from "../engine/owners.ts";
import { runCall } from "../engine/exits.ts";
import { resumeFast, loadFsBase, writeFrame } from "../engine/parked.ts";
import { LinuxProcess, type LinuxOptions } from "./syscalls.ts";

/** Auxiliary vector types (include/uapi/linux/auxvec.h). */
export const AT = {
  NULL: 0, PHDR: 3, PHENT: 4, PHNUM: 5, PAGESZ: 6, BASE: 7, FLAGS: 8, ENTRY: 9, UID: 11, EUID: 12, GID: 13, EGID: 14,
  PLATFORM: 15, HWCAP: 16, CLKTCK: 17, SECURE: 23, RANDOM: 25, HWCAP2: 26, EXECFN: 31,
} as const;

/**
 * AT_HWCAP: on x86-64 the EDX of CPUID leaf 1 (glibc reads CPUID itself; this is informational).
 * The value of a typical x86-64 CPU (fpu … sse2 htt).
 */
const HWCAP_X86_64 = 0x178bfbff;

export interface StackInput {
  /** Highest address + 1 of the stack (16-aligned). */
  top: number;
  argv: string[];
  env: string[];
  execfn: string;
  /** 16 bytes for AT_RANDOM. */
  random: Uint8Array;
  /** Auxv entries besides AT_RANDOM, AT_EXECFN and AT_NULL (the builder adds them). */
  auxv: [number, number][];
}

/** The initial stack: its bytes from `sp` to `top`; sp is 16-aligned and points at argc. */
export interface InitialStack {
  sp: number;
  bytes: Uint8Array;
}

const encoder = new TextEncoder();

/**
 * The Linux x86-64 initial process stack (System V ABI AMD64 §3.4.1, fs/binfmt_elf.c): from `sp`
 * upwards argc, argv[0..argc-1], NULL, envp[...], NULL, auxv pairs ending with AT_NULL; above
 * them (higher addresses) the 16 AT_RANDOM bytes and the NUL-terminated strings.
 */
export function buildInitialStack(input: StackInput): InitialStack {
  if (input.random.length !== 16) throw new RangeError("AT_RANDOM needs 16 bytes");
  // Strings and random bytes, packed downward from top - 8 (an 8-byte end marker, as Linux).
  const strings: Uint8Array[] = [];
  let cursor = input.top - 8;
  const place = (bytes: Uint8Array): number => {
    cursor -= bytes.length;
    strings.push(bytes);
    return cursor;
  };
  const cstr = (s: string) => {
    const e = encoder.encode(s);
    const b = new Uint8Array(e.length + 1);
    b.set(e);
    return b;
  };
  const placed: { at: number; bytes: Uint8Array }[] = [];
  const put = (bytes: Uint8Array) => {
    const at = place(bytes);
    placed.push({ at, bytes });
    return at;
  };
  const execfn = put(cstr(input.execfn));
  const envp = input.env.map((s) => put(cstr(s)));
  const argv = input.argv.map((s) => put(cstr(s)));
  cursor = Math.floor(cursor / 16) * 16;
  const random = put(input.random);
  const auxv: [number, number][] = [...input.auxv, [AT.RANDOM, random], [AT.EXECFN, execfn], [AT.NULL, 0]];
  const words = 1 + argv.length + 1 + envp.length + 1 + auxv.length * 2;
  const sp = Math.floor((cursor - words * 8) / 16) * 16;
  const bytes = new Uint8Array(input.top - sp);
  const dv = new DataView(bytes.buffer);
  let o = 0;
  const word = (v: number) => {
    dv.setBigUint64(o, BigInt(v), true);
    o += 8;
  };
  word(argv.length);
  for (const p of argv) word(p);
  word(0);
  for (const p of envp) word(p);
  word(0);
  for (const [t, v] of auxv) (word(t), word(v));
  for (const { at, bytes: b } of placed) bytes.set(b, at - sp);
  return { sp, bytes };
}

/** Where the program headers are in memory (AT_PHDR): inside the PT_LOAD that holds them in the file. */
export function programHeaders(bytes: Uint8Array): { phdr: number; phent: number; phnum: number } {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const phoff = Number(dv.getBigUint64(32, true));
  const phent = dv.getUint16(54, true);
  const phnum = dv.getUint16(56, true);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phent;
    if (dv.getUint32(ph, true) === 6 /* PT_PHDR */) return { phdr: Number(dv.getBigUint64(ph + 16, true)), phent, phnum };
  }
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phent;
    if (dv.getUint32(ph, true) !== 1 /* PT_LOAD */) continue;
    const offset = Number(dv.getBigUint64(ph + 8, true));
    const filesz = Number(dv.getBigUint64(ph + 32, true));
    if (phoff >= offset && phoff + phnum * phent <= offset + filesz) return { phdr: Number(dv.getBigUint64(ph + 16, true)) + phoff - offset, phent, phnum };
  }
  return { phdr: 0, phent, phnum };
}

/**
 * Whether an ELF is a Linux program with a C runtime (glibc, musl, libstdc++ and Rust std all
 * link `__libc_start_main`), which Machine.create starts instead of only loading.
 */
export function isLinuxProgram(elf: ElfImage): boolean {
  return elf.symbols.has("__libc_start_main");
}


/**
 * Start the loaded Linux program `elf` (from `bytes`) on `core` and run it until it exits or
 * calls ipre_wait_for_requests(); its process (phase "exited" with the exit code, or "waiting").
 * `machine` is what user syscall handlers receive. An execve of the program itself (busybox
 * runs its applets so) starts it again here: its segments reloaded, a new process that keeps
 * the fd table, within what is left of the timeout.
 */
export function runLinux<M>(cpu: Cpu, machine: M, bytes: Uint8Array, elf: ElfImage, options: LinuxOptions<M>, timeoutMs: number): LinuxProcess<M> {
  const start = performance.now();
  const space = cpu.space;
  let proc = new LinuxProcess<M>(space, cpu, machine, elf.highest, options);
  const first = proc;
  let argv = options.argv ?? ["program"];
  let env = Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`);
  for (;;) {
    space.useSyscalls(proc.dispatch);
    try {
      enter(cpu, bytes, elf, proc, argv, env);
      // After an execve, what is left of the timeout.
      runCall(cpu, proc === first || timeoutMs <= 0 ? timeoutMs : Math.max(1, timeoutMs - (performance.now() - start)));
    } catch (e) {
      proc.close(); // the machine drops a program that failed to start: its host files go too
      throw e;
    }
    const again = proc.execRequest;
    if (again === undefined) break;
    proc.memory.restore(undefined); // the pages the old image protected go back to their defaults
    for (const seg of elf.segments) {
      const off = seg.vaddr - space.base;
      space.mem.u8.set(seg.data, off);
      space.mem.u8.fill(0, off + seg.filesz, off + seg.memsz);
    }
    ({ argv, env } = again);
    proc = new LinuxProcess<M>(space, cpu, machine, elf.highest, { ...options, path: proc.path }, proc);
  }
  if (proc.phase === "starting") throw new LinuxProgramError(`${space.name}: the program returned from its entry point instead of calling exit`);
  return proc;
}

/** Build the initial process stack of `argv` and `env` and point the parked vCPU at e_entry. */
function enter<M>(cpu: Cpu, bytes: Uint8Array, elf: ElfImage, proc: LinuxProcess<M>, argv: string[], env: string[]): void {
  const { space, vcpu, mem } = cpu;
  const { phdr, phent, phnum } = programHeaders(bytes);
  // A static-PIE was placed at a bias (parseElf); it finds itself from AT_PHDR, so AT_BASE stays 0.
  const bias = elf.bias ?? 0;
  const random = new Uint8Array(16);
  crypto.getRandomValues(random);
  const stack = buildInitialStack({
    top: space.memoryEnd,
    argv,
    env,
    execfn: proc.path,
    random,
    auxv: [
      [AT.PHDR, phdr === 0 ? 0 : phdr + bias], [AT.PHENT, phent], [AT.PHNUM, phnum], [AT.PAGESZ, PAGE_SIZE], [AT.BASE, 0], [AT.FLAGS, 0],
      [AT.ENTRY, elf.entry], [AT.UID, 0], [AT.EUID, 0], [AT.GID, 0], [AT.EGID, 0], [AT.HWCAP, HWCAP_X86_64],
      [AT.CLKTCK, 100], [AT.SECURE, 0],
    ],
  });
  if (stack.bytes.length > space.stackSize / 2) throw new RangeError("argv and env take more than half of the stack");
  mem.u8.set(stack.bytes, stack.sp - space.base);
  for (const r of GENERAL_REGS) vcpu.setReg(r, 0); // RDX = 0: no rtld_fini for _start to register
  space.setFsBase(0);
  space.setCallStackTop(0);
  loadFsBase(mem, 0);
  writeFrame(mem, elf.entry, stack.sp); // a jump to e_entry, not a call: nothing to return to
  resumeFast(mem, vcpu, space.base);
}
