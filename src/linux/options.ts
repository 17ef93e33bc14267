/**
 * The options of a Linux program (Machine.exec, Machine.create with `program`/`linux`), and the
 * default output sinks.
 */
import { writeSync } from "node:fs";
import type { FilesOption } from "./vfs.ts";

/** A user handler: the six argument registers (signed), the machine; the result goes in RAX. */
export type SyscallFn<M = unknown> = (a0: number, a1: number, a2: number, a3: number, a4: number, a5: number, machine: M) => number | bigint | void;

/**
 * Standard input of a Linux program (`LinuxOptions.stdin`): bytes or a string (read once, then
 * EOF), "inherit" (this process's fd 0), a host file descriptor (a number or `{ fd }`), or a
 * synchronous read callback that fills `buf` and returns how many bytes it put there (0: EOF).
 * Either way the program sees a pipe (S_IFIFO; lseek and pread64 are ESPIPE).
 */
export type StdinOption = Uint8Array | string | "inherit" | number | { fd: number } | ((buf: Uint8Array) => number);

/** Where a program's output goes: the bytes of one write (a copy). */
export type OutputSink = (data: Uint8Array) => void;

export interface LinuxOptions<M = unknown> {
  /** argv, argv[0] included (default: ["program"]). */
  argv?: string[];
  /** The environment (default: none). */
  env?: Record<string, string>;
  /** Sinks of fd 1 and 2 (default: this process's stdout and stderr). */
  stdout?: OutputSink;
  stderr?: OutputSink;
  /**
   * Standard input (default: none, fd 0 is at EOF): bytes or a string, "inherit" (this
   * process's fd 0), a host fd (a number or `{ fd }`), or a synchronous read callback
   * `(buf) => bytes put in buf` (0: EOF). The program sees a pipe; streams are read as it reads.
   */
  stdin?: StdinOption;
  /**
   * Host files and directories the program may use, by guest path (nothing else is visible):
   * `{ "/data": "./dir", "/etc/motd": "./motd.txt" }`, read-only; `{ "/out": { host: "./out",
   * write: true } }` to write and create files there. docs/ARCHITECTURE.md §4 has the rules.
   */
  files?: FilesOption;
  /** Handlers by syscall number; they replace the built-in ones. */
  syscalls?: Record<number, SyscallFn<M>>;
  /** Told once per unknown syscall number (default: console.warn); the program gets -ENOSYS. */
  onUnknownSyscall?: (nr: number, name: string) => void;
  /** Called after each syscall is handled, with its arguments and result (none for exit). */
  trace?: (nr: number, name: string, args: number[], result: number | bigint | undefined) => void;
  /**
   * The absolute path readlink("/proc/self/exe") and AT_EXECFN give (default: argv[0] when it is
   * absolute, else "/" + argv[0]: glibc asserts that the link is absolute).
   */
  path?: string;
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * This process's stdout or stderr, synchronously (node:fs works on Node, Bun and Deno); a
 * non-blocking pipe that is full is waited for.
 */
export function processSink(fd: 1 | 2): OutputSink {
  return (data) => {
    for (let off = 0; off < data.length; ) {
      try {
        off += writeSync(fd, data, off, data.length - off);
      } catch (e) {
        if ((e as { code?: unknown }).code !== "EAGAIN") throw e;
        Atomics.wait(pause, 0, 0, 1);
      }
    }
  };
}

