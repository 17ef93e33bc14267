/**
 * How a call from JS starts (docs/ARCHITECTURE.md §2, "One vmcall, exit by exit"; §3, "Direct
 * calls"): the arguments in registers or copied to the guest stack, the exit trap as return
 * address, an iret frame at the target. A vmcall (Machine.call) resumes there with the machine's
 * normal root; a direct call (Connection.call) enters an allowed function of a connected remote
 * with the merged root and an IPRE frame already pushed, so the remote's return to the exit trap
 * ends it: one exit. The exit loop (exits.ts) runs either from there.
 */
import { MachineStateError } from "../errors.ts";
import type { Cpu, RemoteLink } from "./owners.ts";
import { resumeFast, writeFrame } from "./parked.ts";
import { abortRemoteCall, checkEntry, enterDirect } from "./frames.ts";
import { runCall } from "./exits.ts";
import { recover } from "./service.ts";

export type CallArg = number | bigint | boolean | Uint8Array | string;

const ARG_REGS = ["rdi", "rsi", "rdx", "rcx", "r8", "r9"] as const;
const encoder = new TextEncoder();

/** Refuse a machine that must be reset; reboot a vCPU stopped mid-guest. */
export function requireUsable(cpu: Cpu): void {
  cpu.requireOpen();
  const why = cpu.space.mustReset;
  if (why !== undefined) throw new MachineStateError(`${cpu.name} must be reset before it is used again (${why})`);
  if (cpu.broken !== undefined) recover(cpu);
}

/** Whether a usable vCPU may start a call with `argc` arguments now. */
export function checkCall(cpu: Cpu, argc: number): void {
  const s = cpu.space;
  if (s.busyWith) throw new MachineStateError(`${s.name} is inside a remote call from ${s.busyWith.name}`);
  if (cpu.inCall) throw new MachineStateError(`${s.name} is already running a call (call() from inside one of its hostcalls is not supported)`);
  if (argc > ARG_REGS.length) throw new RangeError(`at most ${ARG_REGS.length} arguments`);
}

/**
 * The arguments in registers (Uint8Array and string args copied to the caller's stack, passed
 * as pointers) and the exit trap as return address; the RSP a function entered with it sees.
 */
function placeArgs(cpu: Cpu, args: readonly CallArg[]): number {
  const s = cpu.space;
  const vcpu = cpu.vcpu;
  let sp = s.callStackTop || s.memoryEnd;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const reg = ARG_REGS[i];
    if (a === undefined || reg === undefined) break; // (at most six: checked by checkCall)
    if (typeof a === "number") vcpu.setReg(reg, a);
    else if (typeof a === "bigint") vcpu.setRegBigInt(reg, a);
    else if (typeof a === "boolean") vcpu.setReg(reg, a ? 1 : 0);
    else {
      const bytes = typeof a === "string" ? encoder.encode(a + "\0") : a;
      sp = Math.floor((sp - bytes.length) / 16) * 16;
      if (sp < s.memoryEnd - s.stackSize / 2) throw new RangeError("arguments take more than half of the stack");
      s.mem.u8.set(bytes, sp - s.base);
      vcpu.setReg(reg, sp);
    }
  }
  // Return address = the exit trap; RSP ≡ 8 (mod 16) at function entry (SysV ABI).
  sp -= 8;
  s.mem.setU64At((sp - s.base) >> 2, s.exitTrap);
  return sp;
}

/** Prepare a vmcall of `rip` (checkCall passed). */
export function prepareCall(cpu: Cpu, rip: number, args: readonly CallArg[]): void {
  if (!Number.isSafeInteger(rip)) throw new RangeError(`call target must be an integer address (got ${rip})`);
  const sp = placeArgs(cpu, args);
  writeFrame(cpu.mem, rip, sp);
  resumeFast(cpu.mem, cpu.vcpu, cpu.space.base);
}

/**
 * A direct call from JS of `entry`, an allowed function of the remote behind `link`, on `cpu`
 * (the caller's vCPU), to its return; RAX holds the result. The checks are a guest-made remote
 * call's (enterRemote), made before anything runs: a refused call costs no exit.
 */
export function directCall(cpu: Cpu, link: RemoteLink, entry: number, args: readonly CallArg[], timeoutMs: number): void {
  if (!Number.isSafeInteger(entry)) throw new RangeError(`call target must be an integer address (got ${entry})`);
  requireUsable(cpu);
  checkCall(cpu, args.length);
  checkEntry(cpu, link, entry, undefined);
  const sp = placeArgs(cpu, args);
  writeFrame(cpu.mem, entry, sp);
  enterDirect(cpu, link, entry, sp);
  try {
    runCall(cpu, timeoutMs, true);
  } catch (e) {
    abortRemoteCall(cpu); // (runCall already did, unless it failed before its loop)
    throw e;
  }
}
