/**
 * Turning an exit that is not a request into a typed error: a guest exception (GuestFault, or
 * RemoteFault when remote code raised it), an exit the runtime should never make (GuestCrash,
 * which also marks the vCPU for a reboot), or a timeout. docs/ARCHITECTURE.md §4, §7.
 */
import { GuestCrash, GuestFault, IpreError, KvmError, RemoteFault, TimeoutError, VECTOR_NAMES, type FaultInfo } from "../errors.ts";
import { EXIT, EXIT_NAMES } from "../kvm/abi.ts";
import { PORT, RT, WINDOW_SIZE } from "../guest/layout.ts";
import { runtimeBytes } from "../guest/runtime.ts";
import type { Core } from "./core.ts";
import { VECTOR } from "../x86/descriptors.ts";
import { FRAME_AT } from "./parked.ts";

const { PF, DF } = VECTOR;

/** The fault the guest raised (the frame its stub left on IST1). */
export function guestFault(core: Core, vector: number): GuestFault {
  const mem = core.mem;
  const info: FaultInfo = {
    vector,
    // Signed: an upper-half (kernel) address stays exact as a negative number.
    rip: mem.getI64At(FRAME_AT.rip),
    cr2: vector === PF ? core.vcpu!.cr2() : 0,
    errorCode: mem.getU64At(FRAME_AT.error),
    rsp: mem.getU64At(FRAME_AT.rsp),
  };
  if (vector === DF) {
    core.broken = "double fault";
    return new GuestFault(info);
  }
  const top = core.frames[core.frames.length - 1];
  if (top?.kind === "call" && info.rip >= top.link.remote.base && info.rip < top.link.remote.base + WINDOW_SIZE) return new RemoteFault(info, top.link.remote.name);
  return new GuestFault(info, core.name);
}

/** An exit that should not happen (or a failed KVM_RUN): the vCPU must reboot before it runs again. */
export function crash(core: Core, reason: number, when: string): IpreError {
  core.broken = reason < 0 ? `KVM_RUN failed` : EXIT_NAMES[reason] ?? `exit ${reason}`;
  if (reason < 0) return new KvmError("KVM_RUN", -reason, when);
  const vcpu = core.vcpu!;
  const mem = core.mem;
  const vector = reason === EXIT.IO ? vcpu.ioPort - PORT.VECTOR_BASE : -1;
  if (vector >= 0 && vector <= 31) {
    // A stub reported an exception where none was expected: name it from the frame the CPU
    // pushed on IST1 (the faulting instruction, its privilege level, the error code).
    const rip = mem.getI64At(FRAME_AT.rip);
    const cs = mem.u32[FRAME_AT.cs]! & 0xffff;
    const errorCode = mem.getU64At(FRAME_AT.error);
    const name = VECTOR_NAMES[vector] ?? `vector ${vector}`;
    const where = rip >= core.base + RT.CODE && rip < core.base + RT.CODE + runtimeBytes().length ? " (in the ipre runtime)" : "";
    return new GuestCrash(
      `${core.name}: ${name} at rip=0x${rip.toString(16)}${where}, ring ${cs & 3}, error code 0x${errorCode.toString(16)}, ${when}; the machine reboots its vCPU on the next call`,
      { vector, rip, errorCode, cr2: vector === PF ? vcpu.cr2() : 0, rsp: mem.getU64At(FRAME_AT.rsp) },
    );
  }
  const detail = reason === EXIT.IO ? ` port=0x${vcpu.ioPort.toString(16)}` : "";
  return new GuestCrash(`${core.name}: ${EXIT_NAMES[reason] ?? `exit ${reason}`}${detail} ${when} (rip=0x${vcpu.reg("rip").toString(16)}); the machine reboots its vCPU on the next call`);
}

/** The vCPU was stopped mid-guest: it must reboot; inside a remote call both machines need a reset. */
export function timedOut(core: Core, timeoutMs: number, elapsedMs: number): TimeoutError {
  core.broken = "timeout";
  if (core.frames.length > 0) {
    const remotes = [...new Set(core.frames.map((f) => f.link.remote))];
    const names = remotes.map((r) => r.name).join(", ");
    const why = `a timeout inside a remote call from ${core.name} into ${names}`;
    core.mustReset = why;
    for (const r of remotes) r.mustReset = why;
    return new TimeoutError(timeoutMs, elapsedMs, `remote call from ${core.name} into ${names}`);
  }
  return new TimeoutError(timeoutMs, elapsedMs, core.name);
}
