/**
 * ipre: Inter-Process Remote Execution over raw KVM ioctls, from Bun, Deno and Node (koffi).
 *
 * ```ts
 * import { Machine, connect } from "ipre";
 * using m = Machine.create({ program: elfBytes });
 * m.call("add", 2, 40); // 42
 * ```
 */
export { Machine, kvmInfo, HOSTCALL_PRINT } from "./machine/machine.ts";
export type { MachineOptions, HostcallFn, CallArg, KvmInfo } from "./machine/machine.ts";
export { connect, Connection } from "./ipre/connect.ts";
export type { ConnectOptions, DirectCallOptions, LoanMode } from "./ipre/connect.ts";
export type { CallPath } from "./engine/fastpath.ts";
export { Remote } from "./ipre/share.ts";
export type { SharedRemote, AttachOptions, RemoteHostcallFn } from "./ipre/share.ts";
export {
  IpreError,
  OsError,
  KvmError,
  LibcLoadError,
  ElfError,
  GuestFault,
  GuestCrash,
  GuestMemoryError,
  RemoteAccessError,
  RemoteFault,
  TimeoutError,
  MachineStateError,
  LinuxProgramError,
  CompileError,
  VECTOR_NAMES,
} from "./errors.ts";
export type { FaultInfo, CompileDiagnostic } from "./errors.ts";
export { compile, compileFile } from "./guest/compile.ts";
export type { CompileOptions, LinkTarget } from "./guest/compile.ts";
export { parseElf, isElf, flatImage } from "./guest/elf.ts";
export type { ElfImage, ElfSegment, ElfSymbol } from "./guest/elf.ts";
export { libc } from "./ffi/index.ts";
export type { Libc, RuntimeName } from "./ffi/index.ts";
export * as layout from "./guest/layout.ts";
export { exampleElf } from "./examples.ts";
export { Snapshot } from "./machine/machine.ts";
export type { CallOptions, ExecOptions } from "./machine/machine.ts";
export type { LinuxOptions, LinuxPhase, OutputSink, SyscallFn } from "./linux/syscalls.ts";
export type { StdinOption } from "./linux/fds.ts";
export type { FileMount, FilesOption } from "./linux/vfs.ts";
export { NR as LINUX_SYSCALL } from "./linux/syscalls.ts";
export { Watchdog, TIMEOUT_SIGNAL } from "./watchdog.ts";
