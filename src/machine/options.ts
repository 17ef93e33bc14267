/**
 * What Machine.create and Machine.fork take, checked: the window, memory and stack a machine's
 * Space gets, and the name a C source's messages use.
 */
import { DEFAULT_MEMORY, MAX_MEMORY, MAX_WINDOW, MiB, PAGE_SIZE, USER_OFFSET } from "../guest/layout.ts";
import type { CompileOptions } from "../guest/compile.ts";
import { defaultPrint, type Handler } from "../engine/facade.ts";
import type { SpaceOptions } from "../engine/owners.ts";
import type { LinuxOptions } from "../linux/syscalls.ts";

export type { CallArg } from "../engine/calls.ts";

/**
 * The options of Machine.create; `M` is the Machine (machine.ts names it: `MachineOptions`), which
 * hostcall and syscall handlers receive.
 */
export interface MachineOptionsOf<M> {
  /** Guest memory in bytes, runtime area included (default 32 MiB, max 464 MiB). Rounded up to 2 MiB. */
  memory?: number;
  /** The 1 GiB window this machine owns (VA = GPA = window * 1 GiB). Default 0. */
  window?: number;
  /** Bytes of stack at the top of memory (default 1 MiB); a guard page sits below it. */
  stackSize?: number;
  /** Hostcall handlers by gate number (0-4094). */
  hostcalls?: Record<number, Handler<M>>;
  /** Where `ipre_print` output goes (default: console.log without the trailing newline). */
  print?: (text: string) => void;
  /**
   * A program to load right away: ELF64 bytes. A static Linux program (one with a C runtime:
   * glibc, musl, libstdc++, Rust std) is also started: its C runtime and main() run until it
   * calls ipre_wait_for_requests() (guests/linux/ipre_linux.h) or exits, then create() returns and
   * call() runs its functions; reset() returns to that point. See `linux`.
   */
  program?: Uint8Array;
  /**
   * C source to compile and load instead of `program`: built like the example guests for this
   * machine's window with the machine's C compiler and cached (see `compile`); a
   * CompileError when it does not build. Its messages name the source `<name>.c` when the
   * machine has a plain `name`, else `source.c`.
   */
  source?: string;
  /** With `source`: the remotes (machines or ELFs) whose exports the source calls, linked in by address. */
  linkAgainst?: CompileOptions["linkAgainst"];
  /**
   * How a Linux `program` runs (argv, env, output sinks, syscall handlers), or false to only
   * load it. Default: detected (the program has `__libc_start_main`); pass options (or true)
   * for a stripped program.
   */
  linux?: LinuxOptions<M> | boolean;
  /** A name for messages (default "machine@window"). */
  name?: string;
  /** Default execution timeout of every call, in ms (remote calls made inside it included). */
  timeoutMs?: number;
}

export interface CallOptions {
  /** Stop the guest and throw TimeoutError after this many ms (overrides the machine default; 0 = none). */
  timeoutMs?: number;
}

/** The Space that `options` describe (validated); the facade adds its hostcall dispatch (Space.useHostcalls). */
export function spaceOptions(options: Pick<MachineOptionsOf<unknown>, "window" | "memory" | "stackSize" | "name" | "print">): SpaceOptions {
  const window = options.window ?? 0;
  if (!Number.isInteger(window) || window < 0 || window > MAX_WINDOW) throw new RangeError(`window must be an integer in 0..${MAX_WINDOW}`);
  const requested = options.memory ?? DEFAULT_MEMORY;
  const memorySize = Math.ceil(requested / (2 * MiB)) * 2 * MiB;
  if (!(memorySize >= 4 * MiB && memorySize <= MAX_MEMORY)) throw new RangeError(`memory must be between 4 MiB and ${MAX_MEMORY / MiB} MiB (got ${requested})`);
  const stackSize = Math.ceil((options.stackSize ?? 1 * MiB) / PAGE_SIZE) * PAGE_SIZE;
  if (stackSize < PAGE_SIZE || stackSize > memorySize - USER_OFFSET - 2 * PAGE_SIZE) throw new RangeError("stackSize does not fit in memory");
  return { name: options.name ?? `machine@${window}`, window, memorySize, stackSize, print: options.print ?? defaultPrint };
}

/** The file name a `source`'s compiler messages use: the machine's plain `name` (`store`: store.c), else source.c. */
export function sourceName(name: string | undefined): string {
  return name !== undefined && /^[\w.+-]+$/.test(name) ? (name.endsWith(".c") ? name : `${name}.c`) : "source.c";
}
