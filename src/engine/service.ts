/**
 * Service runs: every KVM_RUN outside a call. Boot, the page-table flushes behind protect(),
 * connect() and disconnect(), and the raw exit floor of `serviceRun()`. They execute only
 * ring-0 runtime code, which parks again with an `out`; each has its own watchdog, so a runtime
 * that does not park is a GuestCrash, not a hang. A vCPU that a timeout or crash stopped
 * mid-guest is rebooted first. docs/ARCHITECTURE.md §4, §7.
 */
import { GuestCrash, hex, type IpreError } from "../errors.ts";
import { ERRNO } from "../errno.ts";
import { EXIT } from "../kvm/abi.ts";
import { PORT } from "../guest/layout.ts";
import { armWatchdog, Watchdog } from "../watchdog.ts";
import type { Cpu } from "./owners.ts";
import { crash, crashCause } from "./faults.ts";
import { VECTOR } from "../x86/descriptors.ts";
import { atGate, clearMailbox, FRAME_AT, gateReturn, MB, parkEntry, loadFsBase, setMailbox } from "./parked.ts";
import { setBootRegisters, setSpecialRegisters, writeRuntimeArea } from "./boot.ts";

/** Upper bound of a boot or service run in ms (0 = none); Machine.serviceRunLimitMs sets it. */
export const serviceLimit = { ms: 5000 };

/**
 * Run the parked (or booting) vCPU until the runtime exits on `port`. Inside a call (a hostcall
 * handler that changes page tables) the call's timer is re-armed for the rest of its deadline
 * afterwards. Without a limit nothing is read but the exit: no clock, no deadline. The rare
 * branches are functions of their own: this one stays under V8's inlining limit (460 bytes of
 * bytecode; 226 now, 465 before).
 */
function expectPark(cpu: Cpu, port: number, what: string): void {
  const vcpu = cpu.vcpu;
  const limit = serviceLimit.ms;
  // Read the clock before arming: a pause in between must not make the real signal look early.
  const start = limit > 0 ? performance.now() : 0;
  const callDeadline = limit > 0 && cpu.inCall ? cpu.callDeadline : 0;
  const watchdog = limit > 0 ? armWatchdog(vcpu, limit) : undefined;
  try {
    for (;;) {
      const reason = vcpu.runOnce();
      if (reason === EXIT.IO && vcpu.ioPort === port) return;
      if (reason !== -ERRNO.EINTR) throw notParked(cpu, reason, what);
      interrupted(cpu, watchdog, start, limit, what);
    }
  } finally {
    if (watchdog) rearm(watchdog, callDeadline);
  }
}

/** A service run that exited otherwise than parking: the vCPU must reboot. */
function notParked(cpu: Cpu, reason: number, what: string): IpreError {
  cpu.markBroken(crashCause(reason));
  return crash(cpu, reason, `during ${what}`);
}

/** KVM_RUN of a service run returned EINTR: a stray signal, an early one, or the run's limit (a GuestCrash). */
function interrupted(cpu: Cpu, watchdog: Watchdog | undefined, start: number, limit: number, what: string): void {
  if (watchdog === undefined) {
    Watchdog.drainStray();
    return;
  }
  if (!watchdog.drain()) return;
  const elapsed = performance.now() - start;
  if (elapsed >= limit * 0.999) {
    cpu.markBroken("a service run that did not park");
    throw new GuestCrash(`${cpu.name}: the runtime did not park within ${limit} ms during ${what} (rip=${hex(cpu.vcpu.reg("rip"))}); the machine reboots its vCPU on the next use`);
  }
  watchdog.arm(limit - elapsed); // early (a stale signal): keep the deadline
}

/** After a service run: its timer off, and inside a call the call's timer back for the rest of its deadline. */
function rearm(watchdog: Watchdog, callDeadline: number): void {
  watchdog.disarm();
  watchdog.drain();
  if (callDeadline > 0) watchdog.arm(Math.max(0.001, callDeadline - performance.now()));
}

/** Run the runtime's boot entry until it parks (first `out`); from then on page-table writes are queued. */
export function boot(cpu: Cpu): void {
  setBootRegisters(cpu.vcpu, cpu.space.base);
  expectPark(cpu, PORT.BOOT, "boot");
  cpu.ptq.booted();
}

/** Bring a vCPU that stopped abnormally (timeout, shutdown, double fault) back to the parked state. */
export function recover(cpu: Cpu): void {
  const { space, mem } = cpu;
  writeRuntimeArea(mem, space.base);
  setSpecialRegisters(cpu.vcpu, mem, space.base, cpu.normalRoot);
  clearMailbox(mem);
  cpu.ptq.rebooting();
  try {
    boot(cpu);
  } catch (e) {
    // PVM emulates ring-0 code in batches: a vCPU that a signal stopped inside a ring-0 handler
    // (the fast path's #PF handler, docs/ARCHITECTURE.md §5) may first run that handler on to its
    // exit, whatever RIP was set. That exit ends this boot run: boot once more. A runtime that
    // really does not park fails again, as a GuestCrash.
    if (!(e instanceof GuestCrash)) throw e;
    setSpecialRegisters(cpu.vcpu, mem, space.base, cpu.normalRoot);
    boot(cpu);
  }
  cpu.markRecovered();
  if (space.fsBase !== 0) loadFsBase(mem, space.fsBase);
}

/**
 * Reboot the vCPU first if it was stopped mid-guest, park it if a hostcall handler runs at a
 * ring-3 gate: the guest never runs in a service run.
 */
function readyForService(cpu: Cpu): void {
  cpu.requireOpen();
  if (cpu.broken !== undefined) recover(cpu);
  else if (cpu.inCall && atGate(cpu.vcpu)) parkFromGate(cpu); // only a call's handler leaves it there
}

/**
 * Park a vCPU stopped at a ring-3 `out` on PORT.HOSTCALL (docs/ARCHITECTURE.md §4), for a service
 * run inside a hostcall handler or when the call ends with an error: RIP := the exit trap, whose
 * ring-3 fetch faults into the #PF stub (no guest instruction runs; the `out` is not completed on
 * hardware KVM, since RIP moved), then the frame resumes at the gate's `ret`. One more exit.
 */
export function parkFromGate(cpu: Cpu): void {
  const { vcpu, mem, space } = cpu;
  const ret = gateReturn(vcpu.reg("rip"));
  vcpu.setReg("rip", space.exitTrap);
  expectPark(cpu, PORT.VECTOR_BASE + VECTOR.PF, "parking from a hostcall gate");
  if (mem.getU64At(FRAME_AT.rip) !== space.exitTrap) {
    cpu.markBroken("parking from a hostcall gate");
    throw new GuestCrash(`${cpu.name}: parking from a hostcall gate faulted at rip=${hex(mem.getU64At(FRAME_AT.rip))}, not at the exit trap; the machine reboots its vCPU on the next use`);
  }
  mem.setU64At(FRAME_AT.rip, ret);
}

/**
 * Let the runtime apply the queued page-table writes and then reload CR3 with `root` (which
 * flushes the TLB), in service runs of up to MAILBOX_PT_WRITES writes.
 */
export function flushPageTables(cpu: Cpu, root = cpu.normalRoot): void {
  readyForService(cpu);
  let left: number;
  do {
    left = cpu.ptq.stageBatch(root);
    expectPark(cpu, PORT.SERVICE, "page-table service run");
  } while (left > 0);
}

/**
 * One KVM_RUN that runs a single ring-0 `out` (or applies pending mailbox work first). Without a
 * limit (`ipre bench latency`'s kvm_run floor) it waits for the park itself, so that the floor is
 * one hot function: V8 then compiles it once, early. *Measured* on PVM (Node 20, 100 warm-ups,
 * 5,000 samples): through expectPark the optimised code arrived a few thousand samples later
 * (a compile of expectPark alone first), which raised the p50 by ~0.2 µs; the last samples cost
 * the same either way.
 */
export function serviceRun(cpu: Cpu): void {
  readyForService(cpu);
  const vcpu = cpu.vcpu;
  if (cpu.mem.u32[MB.pending] === 0) vcpu.setReg("rip", parkEntry(cpu.space.base, vcpu.reg("rip")));
  else setMailbox(cpu.mem, MB.service, 1); // apply what is queued on the way
  if (serviceLimit.ms > 0) return expectPark(cpu, PORT.SERVICE, "service run");
  for (;;) {
    const reason = vcpu.runOnce();
    if (reason === EXIT.IO && vcpu.ioPort === PORT.SERVICE) return;
    if (reason !== -ERRNO.EINTR) throw notParked(cpu, reason, "service run");
    Watchdog.drainStray(); // as expectPark without a limit
  }
}
