/**
 * The exit loop of a call: one KVM_RUN per exit and no allocation on the hostcall/IPRE paths.
 * Every exit is a stub's `out` on PORT.VECTOR_BASE + vector, or a ring-3 hostcall gate's on
 * PORT.HOSTCALL (gates.ts). An instruction fetch from a trap address is a request (the call
 * returned, a hostcall gate not mapped for the code that calls it, an IPRE entry, return or
 * callback); anything else is a fault. docs/ARCHITECTURE.md §4 (exit protocol), §3 (IPRE).
 *
 * The engine (src/engine/), file by file as a call meets them:
 *   calls.ts     how a call from JS starts: arguments, the exit trap, the iret frame (a
 *                vmcall; a direct call into a remote with its IPRE frame pushed)
 *   exits.ts     this loop: arms the watchdog (../watchdog.ts), reads each exit, dispatches
 *   owners.ts    the state it changes, through methods: the Cpu that runs (frames, deadline,
 *                broken) and the Spaces involved (busy, must-reset, the hostcall runner)
 *   gates.ts     hostcalls: the ring-3 gate's exit, the fetch-fault gate, the JS handler
 *   fastpath.ts  the tables of the runtime's in-guest path (outermost calls without exits),
 *                and its frame, which this loop adopts when an exit comes during such a call
 *   frames.ts    IPRE entry, return, callback and abort on the Cpu's frame stack (stack.ts)
 *   parked.ts    the runtime's twin: the frame, the mailbox, the continuations the host resumes at
 *   pointers.ts  guest pointers (print, handlers, syscalls) checked against the active tables
 *   faults.ts    the typed error of an exit that is no request (it only builds the error)
 *   service.ts   KVM_RUNs outside the loop: boot, reboot after a crash, page-table flushes,
 *                parking a vCPU that a hostcall handler left at a ring-3 gate
 *   boot.ts, memory.ts, window.ts, pools.ts, shared.ts, facade.ts, dispatch.ts: what a Space and
 *                Cpu are made of
 * A syscall goes to the syscall layer of the Space whose code runs (src/linux/, set as a callback).
 */
import { IpreError } from "../errors.ts";
import { ERRNO } from "../errno.ts";
import { EXIT } from "../kvm/abi.ts";
import { HOSTCALL_GATE_COUNT, HOSTCALL_GATE_OFFSET, HOSTCALL_GATE_STRIDE, PORT, WINDOW_SIZE } from "../guest/layout.ts";
import { armWatchdog, Watchdog } from "../watchdog.ts";
import { getU64 } from "../u64.ts";
import { VECTOR } from "../x86/descriptors.ts";
import { RFLAGS_RESERVED } from "../x86/registers.ts";
import type { Cpu } from "./owners.ts";
import { crash, crashCause, guestFault, timedOut } from "./faults.ts";
import { atGate, ENTRY, FRAME_AT, resumeFast } from "./parked.ts";
import { abortRemoteCall, adoptFastFrame, callback, enterRemote, returnDirect, returnFrom } from "./frames.ts";
import { faultHostcall, gateExit, refusedGate } from "./gates.ts";
import { parkFromGate } from "./service.ts";
import { FAST_LIVE_AT } from "./fastpath.ts";

/** #PF error code: the fault was an instruction fetch (Intel SDM Vol. 3A §4.7). */
const PF_FETCH = 0x10;
/** #PF error code of a ring-3 fetch from a present supervisor page: P | U/S | I/D. */
const PF_USER_FETCH_PROTECTION = 0x15;
/**
 * RFLAGS bits a ring-3 program may set itself (CF PF AF ZF SF TF DF OF AC ID): what the PVM route
 * takes from R11, so that a forged R11 can never raise IOPL or clear reserved bits on `iretq`.
 */
const USER_RFLAGS = 0x240dd5;
const GATES_END = HOSTCALL_GATE_OFFSET + HOSTCALL_GATE_COUNT * HOSTCALL_GATE_STRIDE;

/**
 * Run the prepared call until it returns to the exit trap; typed errors for everything else.
 * `direct`: a direct call into a remote (engine/calls.ts directCall), whose frame is pushed.
 */
export function runCall(cpu: Cpu, timeoutMs: number, direct = false): void {
  const vcpu = cpu.vcpu;
  const u32 = cpu.mem.u32;
  const { lstar, exitTrap } = cpu.space;
  // Read the clock before arming: a pause in between must not make the real signal look early.
  const start = timeoutMs > 0 ? performance.now() : 0;
  const watchdog = timeoutMs > 0 ? armWatchdog(vcpu, timeoutMs) : undefined;
  cpu.beginCall(start, timeoutMs, direct);
  try {
    for (;;) {
      const reason = vcpu.runOnce();
      if (reason !== EXIT.IO) {
        // Not at an `out`: the vCPU may be inside the fast path's handler (a signal stops it at
        // any instruction). Its frame is adopted only when the call ends here (a timeout, a
        // crash): resuming a handler whose frame the host took would let it finish a return
        // the host still counts as open.
        if (reason === -ERRNO.EINTR) {
          if (watchdog === undefined) Watchdog.drainStray();
          else if (watchdog.drain()) {
            const elapsed = performance.now() - start;
            if (elapsed >= timeoutMs * 0.999) {
              if ((u32[FAST_LIVE_AT] ?? 0) > 1) adoptFastFrame(cpu, false);
              cpu.markTimedOut();
              throw timedOut(cpu, timeoutMs, elapsed);
            }
            watchdog.arm(timeoutMs - elapsed); // early (a stale signal): keep the deadline
          }
          continue; // another signal interrupted KVM_RUN: resume
        }
        if ((u32[FAST_LIVE_AT] ?? 0) > 1) adoptFastFrame(cpu, false);
        cpu.markBroken(crashCause(reason));
        throw crash(cpu, reason, "while running a call");
      }
      // A remote call that the runtime made without an exit is still running (the exit is a
      // stub's or a gate's `out`, never inside the handler): from here on the host owns it
      // (src/engine/fastpath.ts).
      const port = vcpu.ioPort;
      if ((u32[FAST_LIVE_AT] ?? 0) > 1) adoptFastFrame(cpu, true);
      cpu.countExit();
      if (port === PORT.HOSTCALL) {
        gateExit(cpu); // a ring-3 hostcall gate (gates.ts)
        continue;
      }
      if (port === PORT.SYSCALL) {
        if (syscallExit(cpu)) continue;
        return; // the program exited: the call ends
      }
      const vector = port - PORT.VECTOR_BASE;
      // A #PF of the runtime's own ring-0 code (a bug: none of it may fault) left its frame below
      // the parked one (runtime.S `stub_14`): the vCPU is not parked.
      if (vector === VECTOR.PF && vcpu.reg("rsp") !== cpu.space.base + ENTRY.frameSp) {
        cpu.markBroken("a page fault in the runtime's ring-0 code");
        throw crash(cpu, reason, "in the runtime's ring-0 code");
      }
      // The PVM route of `syscall` (docs/ARCHITECTURE.md §4): PVM jumps to LSTAR still in ring 3,
      // so the fetch of the supervisor-only syscall_entry faults with RIP == LSTAR.
      if (vector === VECTOR.PF && u32[FRAME_AT.error] === PF_USER_FETCH_PROTECTION && getU64(u32, FRAME_AT.rip) === lstar) {
        syscallFromFault(cpu);
        if (syscallExit(cpu)) continue;
        return;
      }
      // An instruction fetch (#PF error code bit 4) from a trap address is a request, not an
      // error; its RIP lies in a never-mapped page, so CR2 = RIP (the stub need not save CR2).
      if (vector === VECTOR.PF && ((u32[FRAME_AT.error] ?? 0) & PF_FETCH) !== 0) {
        const rip = getU64(u32, FRAME_AT.rip);
        if (rip === exitTrap && (cpu.stack.depth === 0 || returnDirect(cpu, getU64(u32, FRAME_AT.rsp)))) return;
        if (fetchFault(cpu, rip, getU64(u32, FRAME_AT.rsp))) continue;
      }
      if (vector < 0 || vector > 31) {
        cpu.markBroken(crashCause(reason));
        throw crash(cpu, reason, `unexpected exit on port 0x${vcpu.ioPort.toString(16)}`);
      }
      if (vector === VECTOR.GP && refusedGate(cpu)) continue; // a gate's `out` this KVM refused (gates.ts)
      if (vector === VECTOR.DF) cpu.markBroken("double fault");
      throw guestFault(cpu, vector);
    }
  } catch (e) {
    if (atGate(vcpu)) leaveGate(cpu);
    abortRemoteCall(cpu);
    throw e;
  } finally {
    cpu.endCall();
    if (watchdog) {
      watchdog.disarm();
      watchdog.drain(); // the timer may have fired after the last exit
    }
  }
}

/**
 * A ring-3 `syscall` (its exit on PORT.SYSCALL on hardware KVM, or the #PF at LSTAR on PVM after
 * syscallFromFault): dispatch it to the syscall layer of the machine whose code
 * made it (inside a remote call the remote: its brk, its mmap region, its output), which sets RAX;
 * then resume at the frame. One exit per syscall. False when the program exited.
 */
function syscallExit(cpu: Cpu): boolean {
  const top = cpu.stack.top();
  const owner = top?.kind === "call" ? top.link.remote : cpu.space;
  const dispatch = owner.syscall;
  if (dispatch === undefined) {
    const rip = getU64(cpu.mem.u32, FRAME_AT.rip);
    throw new IpreError(`${owner.name}: syscall ${cpu.vcpu.reg("rax")} at 0x${(rip - 2).toString(16)}, but the program was not started as a Linux program (Machine.exec)`);
  }
  // Guest pointers resolve with the rights of the code that made it.
  const more = owner.runSyscall(cpu, dispatch);
  if (more) resumeFast(cpu.mem, cpu.vcpu, cpu.space.base);
  return more;
}

/**
 * Turn the #PF frame of a ring-3 jump to LSTAR into the frame syscall_entry would have built:
 * resume at RCX (the instruction after `syscall`) with RFLAGS from R11, as `sysret` would. One
 * exit per syscall on this route too.
 */
function syscallFromFault(cpu: Cpu): void {
  const vcpu = cpu.vcpu;
  const mem = cpu.mem;
  mem.setU64At(FRAME_AT.error, 0);
  mem.setU64At(FRAME_AT.rip, vcpu.reg("rcx"));
  mem.setU64At(FRAME_AT.rflags, (vcpu.reg("r11") & USER_RFLAGS) | RFLAGS_RESERVED);
}

/** Handle a fetch fault at a trap address; false when it is a genuine fault. */
function fetchFault(cpu: Cpu, cr2: number, rsp: number): boolean {
  const space = cpu.space;
  const window = Math.floor(cr2 / WINDOW_SIZE);
  const offset = cr2 - window * WINDOW_SIZE;
  const top = cpu.stack.top();
  const inRemote = top?.kind === "call"; // remote code is running, its window mapped
  // Hostcall gate of this machine or of the remote whose code is running.
  if (offset >= HOSTCALL_GATE_OFFSET && offset < GATES_END) {
    const owner = window === space.window ? space : inRemote && top.link.window === window ? top.link.remote : undefined;
    if (!owner || (offset - HOSTCALL_GATE_OFFSET) % HOSTCALL_GATE_STRIDE !== 0) return false;
    faultHostcall(cpu, owner, (offset - HOSTCALL_GATE_OFFSET) / HOSTCALL_GATE_STRIDE, rsp);
    return true;
  }
  // The remote returned from a call, or caller code returned from a callback.
  // (A direct call's frame has no return trap: its remote returns to the exit trap.)
  if ((cr2 === space.returnTrap && inRemote && !cpu.atDirectBase()) || (cr2 === space.callbackTrap && top?.kind === "callback")) return returnFrom(cpu, top, rsp);
  // Remote code jumped into caller code (a function pointer): run it unmerged.
  if (inRemote && window === space.window && cr2 >= space.userStart && cr2 < space.memoryEnd) {
    callback(cpu, top.link, rsp);
    return true;
  }
  // A fetch fault in the running remote's own window is its own fault (e.g. no-execute data), not an entry.
  if (inRemote && window === top.link.window) return false;
  const link = cpu.links.get(window);
  if (link !== undefined && cr2 >= link.remote.base && cr2 < link.remote.memoryEnd) {
    enterRemote(cpu, link, cr2, rsp, inRemote ? top.link : undefined);
    return true;
  }
  return false;
}

/** A call that ends with an error while its vCPU is at a ring-3 gate: park it for the next call, or reboot it then. */
function leaveGate(cpu: Cpu): void {
  try {
    parkFromGate(cpu);
  } catch {
    cpu.markBroken("stopped at a hostcall gate");
  }
}
