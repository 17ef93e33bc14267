/** Typed errors of ipre. Every error carries the facts a user needs to act on it. */
import { errnoName } from "./errno.ts";
import type { RuntimeName } from "./ffi/libc.ts";

/** An address as hex; negative numbers are the sign-extended upper half of the address space. */
export function hex(address: number): string {
  if (!Number.isInteger(address)) return String(address);
  return "0x" + (address < 0 ? BigInt.asUintN(64, BigInt(address)) : address).toString(16);
}

/** Base class: `err instanceof IpreError` catches everything ipre throws on purpose. */
export class IpreError extends Error {
  override name = "IpreError";
}

/**
 * A libc call failed (mmap, munmap, memfd_create, ftruncate, madvise, timer_create, timer_settime,
 * pthread_sigmask, …): `operation` names the call and what it was for, `errno` says why.
 */
export class OsError extends IpreError {
  override name = "OsError";
  readonly errnoName: string;
  constructor(readonly operation: string, readonly errno: number, detail?: string) {
    super(`${operation} failed: ${errnoName(errno)}${detail ? ` (${detail})` : ""}`);
    this.errnoName = errnoName(errno);
  }
}

/**
 * A KVM ioctl failed, or `/dev/kvm` could not be opened (or was used after close).
 *
 * It extends {@link OsError} because it is one: a system call that returned -1 with an errno,
 * with the same facts (operation, errno, errnoName). `instanceof OsError` catches every failing
 * system call (an ENOMEM from mmap and one from KVM_CREATE_VM alike); `instanceof KvmError`
 * still means "the KVM device refused", which is what a caller checks to suggest a fix for KVM.
 */
export class KvmError extends OsError {
  override name = "KvmError";
}

/**
 * The C library could not be loaded through the runtime's FFI: `library` is the path handed to
 * dlopen, `runtime` the JS runtime, `hint` what to do about it (also in the message).
 */
export class LibcLoadError extends IpreError {
  override name = "LibcLoadError";
  constructor(readonly library: string, readonly runtime: RuntimeName, readonly backendName: string, readonly hint: string, options?: ErrorOptions) {
    const why = options?.cause instanceof Error ? options.cause.message : String(options?.cause ?? "unknown error");
    super(`cannot load ${library} through ${backendName}: ${why}. ${hint}`, options);
  }
}

/** The ELF image cannot be loaded; `reason` says why. */
export class ElfError extends IpreError {
  override name = "ElfError";
}

/** A guest address or range outside the machine's memory was passed to a host helper. */
export class GuestMemoryError extends IpreError {
  override name = "GuestMemoryError";
  constructor(readonly address: number, readonly length: number, message?: string) {
    super(message ?? `guest range ${hex(address)}+${length} is outside guest memory`);
  }
}

export const VECTOR_NAMES: readonly string[] = [
  "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow", "#BR bound range",
  "#UD invalid opcode", "#NM device not available", "#DF double fault", "coprocessor overrun",
  "#TS invalid TSS", "#NP segment not present", "#SS stack fault", "#GP general protection",
  "#PF page fault", "reserved 15", "#MF x87 FP error", "#AC alignment check", "#MC machine check",
  "#XM SIMD FP error", "#VE virtualization", "#CP control protection", "reserved 22",
  "reserved 23", "reserved 24", "reserved 25", "reserved 26", "reserved 27", "#HV hypervisor injection",
  "#VC VMM communication", "#SX security", "reserved 31",
];

export interface FaultInfo {
  vector: number;
  rip: number;
  /** Faulting address (CR2) for #PF, otherwise 0. */
  cr2: number;
  errorCode: number;
  rsp: number;
}

function describePageFault(errorCode: number): string {
  const what = errorCode & 16 ? "instruction fetch" : errorCode & 2 ? "write" : "read";
  const why = errorCode & 1 ? "protection violation" : "page not present";
  return `${what}, ${why}${errorCode & 4 ? ", user mode" : ", supervisor mode"}`;
}

/** The guest raised a CPU exception. */
export class GuestFault extends IpreError implements FaultInfo {
  override name = "GuestFault";
  readonly vector: number;
  readonly vectorName: string;
  readonly rip: number;
  readonly cr2: number;
  readonly errorCode: number;
  readonly rsp: number;
  constructor(info: FaultInfo, context = "guest", message?: string) {
    const vectorName = VECTOR_NAMES[info.vector] ?? (info.vector < 0 ? "not a CPU exception" : `vector ${info.vector}`);
    let msg = `${context} fault ${vectorName} at rip=${hex(info.rip)}`;
    if (info.vector === 14) msg += ` addr=${hex(info.cr2)} (${describePageFault(info.errorCode)})`;
    else if (info.errorCode) msg += ` error=0x${info.errorCode.toString(16)}`;
    super(message ?? msg);
    this.vector = info.vector;
    this.vectorName = vectorName;
    this.rip = info.rip;
    this.cr2 = info.cr2;
    this.errorCode = info.errorCode;
    this.rsp = info.rsp;
  }
}

/** The guest stopped in a way that is not a CPU exception (shutdown, internal error, bad exit). */
export class GuestCrash extends IpreError {
  override name = "GuestCrash";
  /** The exception behind the crash, when a runtime stub reported one where none was expected. */
  readonly fault: FaultInfo | undefined;
  constructor(message: string, fault?: FaultInfo) {
    super(message);
    this.fault = fault;
  }
}

/** A call was attempted into a remote entry point that is not allowed, or no remote is connected there. */
export class RemoteAccessError extends IpreError {
  override name = "RemoteAccessError";
  constructor(readonly address: number, message: string) {
    super(message);
  }
}

/**
 * A remote function failed while it ran: a CPU exception (`vector` 0-31), or, in a remote Linux
 * program, a fatal signal it sent itself (`vector` -1, `signal` set: abort() after an uncaught
 * C++ exception or a Rust panic, with `output`, the end of what it wrote to stderr). The call
 * was ended.
 */
export class RemoteFault extends GuestFault {
  override name = "RemoteFault";
  readonly signal: number | undefined;
  readonly output: string | undefined;
  constructor(info: FaultInfo, readonly remoteName: string, abort?: { signal?: number; output?: string; message: string }) {
    super(info, `remote ${remoteName}`, abort?.message);
    this.signal = abort?.signal;
    this.output = abort?.output;
  }
}

/** The guest ran longer than its timeout. */
export class TimeoutError extends IpreError {
  override name = "TimeoutError";
  constructor(readonly timeoutMs: number, readonly elapsedMs: number, where = "guest") {
    super(`${where} timed out after ${elapsedMs.toFixed(1)} ms (timeout ${timeoutMs} ms)`);
  }
}

/** The machine is closed, or must be reset before it can be used again. */
export class MachineStateError extends IpreError {
  override name = "MachineStateError";
}

/**
 * A Linux program (Machine.exec) could not run or ended abnormally: a fatal signal it sent
 * itself (abort()), an exit where the run cannot end, a program that is not one. `signal` is the signal number when there is one.
 */
export class LinuxProgramError extends IpreError {
  override name = "LinuxProgramError";
  constructor(message: string, readonly signal?: number) {
    super(message);
  }
}

/** One message of the C compiler or linker, as it gave it (`file:line:column: severity: text`). */
export interface CompileDiagnostic {
  file: string;
  /** 0 when the message has no line (a linker message). */
  line: number;
  column: number;
  severity: string;
  message: string;
}

/**
 * C source could not be built into a guest ELF (compile() and Machine.create({ source })):
 * - `reason: "error"`: the compiler or linker refused it; `output` is everything it printed,
 *   `diagnostics` its `file:line:column: severity: message` lines, and the message starts with
 *   the first error, e.g. `source.c:3:12: error: expected ';' before '}' token`;
 * - `reason: "no-compiler"`: no C compiler (IPRE_CC, or cc, gcc, clang on PATH); the message says
 *   what to install;
 * - `reason: "permission"`: Deno lacks a permission the compile needs (--allow-run for the
 *   compiler, --allow-env and --allow-write for the cache); the message names the flags.
 */
export class CompileError extends IpreError {
  override name = "CompileError";
  constructor(
    message: string,
    readonly reason: "error" | "no-compiler" | "permission",
    readonly output = "",
    readonly diagnostics: readonly CompileDiagnostic[] = [],
    readonly compiler?: string,
  ) {
    super(message);
  }
}

/**
 * The errors inside a (nested) SuppressedError, the first one thrown first. Duck-typed: on Node 20
 * the `using` helper emitted by tsc builds its own SuppressedError.
 */
export function flattenSuppressed(e: unknown): unknown[] {
  if (e instanceof Error && e.name === "SuppressedError" && "error" in e && "suppressed" in e) return [...flattenSuppressed(e.suppressed), ...flattenSuppressed(e.error)];
  return [e];
}
