/**
 * How a vmcall starts (docs/ARCHITECTURE.md §2, "One vmcall, exit by exit"): the arguments in
 * registers or copied to the guest stack, the exit trap as return address, an iret frame at the
 * target. The exit loop (src/engine/exits.ts) runs it from there.
 */
import { MachineStateError } from "../errors.ts";
import type { Cpu } from "./owners.ts";
import { resumeFast, writeFrame } from "./parked.ts";
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

/** Prepare a call of `rip` (checkCall passed). */
export function prepareCall(cpu: Cpu, rip: number, args: readonly CallArg[]): void {
  const s = cpu.space;
  if (!Number.isSafeInteger(rip)) throw new RangeError(`call target must be an integer address (got ${rip})`);
  const vcpu = cpu.vcpu;
  let sp = s.callStackTop || s.memoryEnd;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const reg = ARG_REGS[i];
    if (a === undefined || reg === undefined) break; // (at most six: checked above)
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
  writeFrame(s.mem, rip, sp);
  resumeFast(s.mem, vcpu, s.base);
}
