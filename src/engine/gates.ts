/**
 * Hostcalls: guest code calls gate n (window base + HOSTCALL_GATE_OFFSET + 16 n, guests/ipre.h)
 * and the JS handler n of the machine whose gate it is runs. Three paths, docs/ARCHITECTURE.md §4:
 *
 *   ring-3 gate   the gate pages are mapped for the code that runs (its own window's, or inside a
 *                 remote call the remote's): the gate's `out PORT.HOSTCALL, al` (allowed by the
 *                 TSS I/O bitmap) exits, gateExit runs the handler, RAX := its result, and the
 *                 guest runs on to the gate's `ret` itself. One exit, no ring-0 instruction.
 *   #GP           a KVM that refuses the `out` although the bitmap allows it: a #GP at the gate's
 *                 `out` itself is taken for the same hostcall (refusedGate), one exit through the
 *                 ring-0 stub; the guest then runs the `ret`.
 *   fetch fault   the gate is not executable for the code that calls it: remote code calling its
 *                 caller's gates (the merged root maps the caller's window without them), or a
 *                 machine whose gate pages were unmapped (setGatePages: `ipre bench latency`'s
 *                 hostcall_fault). The call faults into the #PF stub, exits.ts's fetchFault
 *                 finds the gate, faultHostcall runs the handler and emulates the `ret` in the
 *                 frame. One exit as well, plus the ring-0 stub and its `iretq`.
 */
import { IpreError, MachineStateError } from "../errors.ts";
import { HOSTCALL_GATE_COUNT, HOSTCALL_GATE_STRIDE, HOSTCALL_PRINT } from "../guest/layout.ts";
import type { Cpu, Space } from "./owners.ts";
import { NO_HANDLER } from "./dispatch.ts";
import { forgedHostcall } from "./faults.ts";
import { callerOf, stackU64 } from "./frames.ts";
import { atGate, FRAME_AT, GATE_OUT_SIZE, resumeFast } from "./parked.ts";
import { guestRange } from "./pointers.ts";
import { flushPageTables } from "./service.ts";

const GATES_SIZE = HOSTCALL_GATE_COUNT * HOSTCALL_GATE_STRIDE;

/**
 * The exit on PORT.HOSTCALL. A hostcall only from a gate of the code that runs, at the gate's
 * `out` (hardware KVM reports that RIP) or right after it (PVM): only the gate's own `out` can
 * give either, since the gate page holds nothing else (runtime.S). Any other `out` to the port
 * is a GuestFault (#GP), RemoteFault from remote code.
 */
export function gateExit(cpu: Cpu): void {
  const vcpu = cpu.vcpu;
  const rip = vcpu.reg("rip");
  const owner = runningSpace(cpu);
  const offset = rip - owner.gateBase;
  const at = offset % HOSTCALL_GATE_STRIDE;
  if (!(offset >= 0 && offset < GATES_SIZE && (at === 0 || at === GATE_OUT_SIZE))) throw forgedHostcall(cpu, rip);
  callHandler(cpu, owner, (offset - at) / HOSTCALL_GATE_STRIDE, vcpu.reg("rsp"));
  // Still at the gate: the next KVM_RUN goes on to its `ret`. A service run inside the handler
  // parked the vCPU (service.ts parkFromGate): the frame resumes at that `ret`.
  if (!atGate(vcpu)) resumeFast(cpu.mem, vcpu, cpu.space.base);
}

/**
 * A gate's `out` that this KVM refused with a #GP (one that does not honour the TSS I/O bitmap for
 * ring 3): the same hostcall through the #GP stub, one exit; the frame then resumes at the gate's
 * `ret`. Only a #GP (error code 0) at a gate's `out` of the code that runs; false for any other.
 */
export function refusedGate(cpu: Cpu): boolean {
  const mem = cpu.mem;
  const rip = mem.getU64At(FRAME_AT.rip);
  const offset = rip - runningSpace(cpu).gateBase;
  if (mem.getU64At(FRAME_AT.error) !== 0 || ((mem.u32[FRAME_AT.cs] ?? 0) & 3) !== 3) return false;
  if (!(offset >= 0 && offset < GATES_SIZE && offset % HOSTCALL_GATE_STRIDE === 0)) return false;
  callHandler(cpu, runningSpace(cpu), offset / HOSTCALL_GATE_STRIDE, mem.getU64At(FRAME_AT.rsp));
  mem.setU64At(FRAME_AT.rip, rip + GATE_OUT_SIZE);
  resumeFast(mem, cpu.vcpu, cpu.space.base);
  return true;
}

/** The space whose code runs on `cpu`, and whose gates its tables map: the remote inside a call. */
function runningSpace(cpu: Cpu): Space {
  const top = cpu.stack.top();
  return top?.kind === "call" ? top.link.remote : cpu.space;
}

/** The fetch-fault path (exits.ts fetchFault): hostcall `gate` of `owner`, then the guest's `ret` emulated in the frame. */
export function faultHostcall(cpu: Cpu, owner: Space, gate: number, rsp: number): void {
  callHandler(cpu, owner, gate, rsp);
  cpu.mem.setU64At(FRAME_AT.rip, stackU64(cpu, rsp)); // pop the return address the guest's call pushed
  cpu.mem.setU64At(FRAME_AT.rsp, rsp + 8);
  resumeFast(cpu.mem, cpu.vcpu, cpu.space.base);
}

/**
 * Run the JS handler of hostcall `gate` of `owner` (this machine's space, or the remote whose code
 * runs) with the argument registers, made by code on `cpu` (guest pointers resolve with that
 * code's rights); RAX := its result. Gate HOSTCALL_PRINT without a handler prints.
 */
function callHandler(cpu: Cpu, owner: Space, gate: number, rsp: number): void {
  const vcpu = cpu.vcpu;
  let result = owner.runHostcall(cpu, gate, vcpu.regSigned("rdi"), vcpu.regSigned("rsi"), vcpu.regSigned("rdx"), vcpu.regSigned("rcx"), vcpu.regSigned("r8"), vcpu.regSigned("r9"));
  if (result === NO_HANDLER) {
    if (gate !== HOSTCALL_PRINT) throw new IpreError(`${owner.name}: hostcall ${gate} called at 0x${callerOf(cpu, rsp).toString(16)} has no handler`);
    owner.print(new TextDecoder().decode(guestRange(cpu, vcpu.reg("rdi"), vcpu.reg("rsi"), false)));
    result = vcpu.reg("rsi");
  }
  if (typeof result === "bigint") vcpu.setRegBigInt("rax", result);
  else vcpu.setReg("rax", result ?? 0);
}

/**
 * Map (the default) or unmap the gate pages of `cpu`'s own window. Unmapped, its code's hostcalls
 * take the fetch-fault path: how `ipre bench latency` measures that path beside the ring-3 gate,
 * and how the tests drive it. Until the next call of this; refused while callers are connected or
 * Remotes attached (their VMs cache this window's tables).
 */
export function setGatePages(cpu: Cpu, mapped: boolean): void {
  const space = cpu.space;
  if (space.callers.size > 0 || space.attachedRemotes() > 0) throw new MachineStateError(`${space.name} is connected as a remote; its gate pages cannot change`);
  space.tables.setGates(cpu.ptq.pt, mapped);
  flushPageTables(cpu);
}
