/**
 * Turning an exit that is not a request into a typed error: a guest exception (GuestFault, or
 * RemoteFault when remote code raised it), an exit the runtime should never make (GuestCrash), or
 * a timeout. These only build the error; what it does to the state (a vCPU that must reboot, a
 * space that must be reset) is the caller's, through the Cpu's methods. docs/ARCHITECTURE.md §4, §7.
 */
import { GuestCrash, GuestFault, hex, IpreError, KvmError, RemoteFault, TimeoutError, VECTOR_NAMES, type FaultInfo } from "../errors.ts";
import { EXIT, EXIT_NAMES } from "../kvm/abi.ts";
import { PORT, RT, WINDOW_SIZE } from "../guest/layout.ts";
import { runtimeBytes } from "../guest/runtime.ts";
import type { Cpu } from "./owners.ts";
import { VECTOR } from "../x86/descriptors.ts";
import { ENTRY, FRAME_AT } from "./parked.ts";

const { PF, DF, GP } = VECTOR;

/** The fault the guest raised (the frame its stub left on IST1). */
export function guestFault(cpu: Cpu, vector: number): GuestFault {
  const mem = cpu.mem;
  const info: FaultInfo = {
    vector,
    // Signed: an upper-half (kernel) address stays exact as a negative number.
    rip: mem.getI64At(FRAME_AT.rip),
    cr2: vector === PF ? cpu.vcpu.cr2() : 0,
    errorCode: mem.getU64At(FRAME_AT.error),
    rsp: mem.getU64At(FRAME_AT.rsp),
  };
  if (vector === DF) return new GuestFault(info); // the vCPU must reboot: the caller marks it
  const top = cpu.stack.top();
  if (top?.kind === "call" && info.rip >= top.link.remote.base && info.rip < top.link.remote.base + WINDOW_SIZE) return new RemoteFault(info, top.link.remote.name);
  return new GuestFault(info, cpu.name);
}

/**
 * A ring-3 `out` to PORT.HOSTCALL that is not a gate's own (the TSS I/O bitmap lets every ring-3
 * instruction use the port; the host takes it only at a gate, docs/ARCHITECTURE.md §4): the #GP
 * the port would raise if the bitmap refused it, never a hostcall. `rip` is where KVM stopped: the
 * `out` on hardware KVM, the instruction after it on PVM.
 */
export function forgedHostcall(cpu: Cpu, rip: number): GuestFault {
  const info: FaultInfo = { vector: GP, rip, cr2: 0, errorCode: 0, rsp: cpu.vcpu.reg("rsp") };
  const top = cpu.stack.top();
  const remote = top?.kind === "call" && rip >= top.link.remote.base && rip < top.link.remote.base + WINDOW_SIZE ? top.link.remote : undefined;
  const context = remote !== undefined ? `remote ${remote.name}` : cpu.name;
  const message = `${context} fault ${VECTOR_NAMES[GP]} at rip=${hex(rip)}: an \`out\` to the hostcall port 0x${PORT.HOSTCALL.toString(16)} that is not a hostcall gate's (call the gate instead)`;
  return remote !== undefined ? new RemoteFault(info, remote.name, { message }) : new GuestFault(info, cpu.name, message);
}

/** Why the vCPU must reboot after crash(): what Cpu.markBroken records. */
export function crashCause(reason: number): string {
  return reason < 0 ? `KVM_RUN failed` : EXIT_NAMES[reason] ?? `exit ${reason}`;
}

/** An exit that should not happen (or a failed KVM_RUN); the caller marks the vCPU broken (crashCause). */
export function crash(cpu: Cpu, reason: number, when: string): IpreError {
  if (reason < 0) return new KvmError("KVM_RUN", -reason, when);
  const vcpu = cpu.vcpu;
  const mem = cpu.mem;
  const vector = reason === EXIT.IO ? vcpu.ioPort - PORT.VECTOR_BASE : -1;
  if (vector >= 0 && vector <= 31) {
    // A stub reported an exception where none was expected: name it from the frame the CPU
    // pushed on IST1 (the faulting instruction, its privilege level, the error code), or, for a
    // #PF of ring-0 code (no IST: runtime.S `stub_14`), below the stack it interrupted.
    const base = cpu.space.base;
    const sp = vcpu.reg("rsp") - base;
    const at = vector === PF && sp >= 0 && sp < ENTRY.frameSp && sp % 8 === 0 ? sp >> 2 : FRAME_AT.error;
    const rip = mem.getI64At(at + 2);
    const cs = (mem.u32[at + 4] ?? 0) & 0xffff;
    const errorCode = mem.getU64At(at);
    const name = VECTOR_NAMES[vector] ?? `vector ${vector}`;
    const where = rip >= base + RT.CODE && rip < base + RT.CODE + runtimeBytes().length ? " (in the ipre runtime)" : "";
    return new GuestCrash(
      `${cpu.name}: ${name} at rip=0x${rip.toString(16)}${where}, ring ${cs & 3}, error code 0x${errorCode.toString(16)}, ${when}; the machine reboots its vCPU on the next call`,
      { vector, rip, errorCode, cr2: vector === PF ? vcpu.cr2() : 0, rsp: mem.getU64At(at + 8) },
    );
  }
  const detail = reason === EXIT.IO ? ` port=0x${vcpu.ioPort.toString(16)}` : "";
  return new GuestCrash(`${cpu.name}: ${EXIT_NAMES[reason] ?? `exit ${reason}`}${detail} ${when} (rip=0x${vcpu.reg("rip").toString(16)}); the machine reboots its vCPU on the next call`);
}

/** The running call timed out (the caller records it with Cpu.markTimedOut: reboot, resets). */
export function timedOut(cpu: Cpu, timeoutMs: number, elapsedMs: number): TimeoutError {
  if (cpu.stack.depth === 0) return new TimeoutError(timeoutMs, elapsedMs, cpu.name);
  const names = cpu.stack.remotes().map((r) => r.name).join(", ");
  return new TimeoutError(timeoutMs, elapsedMs, `remote call from ${cpu.name} into ${names}`);
}
