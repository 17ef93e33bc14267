/**
 * Service runs: every KVM_RUN outside a call. Boot, the page-table flushes behind protect(),
 * connect() and disconnect(), and the raw exit floor of `serviceRun()`. They execute only
 * ring-0 runtime code, which parks again with an `out`; each has its own watchdog, so a runtime
 * that does not park is a GuestCrash, not a hang. A vCPU that a timeout or crash stopped
 * mid-guest is rebooted first. docs/ARCHITECTURE.md §4, §6.
 */
import { GuestCrash, hex } from "../errors.ts";
import { ERRNO } from "../errno.ts";
import { EXIT } from "../kvm/abi.ts";
import type { Vcpu } from "../kvm/vcpu.ts";
import { PORT } from "../guest/layout.ts";
import { armWatchdog, Watchdog } from "../watchdog.ts";
import type { Core } from "./core.ts";
import { crash } from "./faults.ts";
import { clearMailbox, MB, parkEntry, setFsBase, setMailbox } from "./parked.ts";
import { setBootRegisters, setSpecialRegisters, writeRuntimeArea } from "./boot.ts";

/** Upper bound of a boot or service run in ms (0 = none); Machine.serviceRunLimitMs sets it. */
export const serviceLimit = { ms: 5000 };

/**
 * Run the parked (or booting) vCPU until the runtime exits on `port`. Inside a call (a hostcall
 * handler that changes page tables) the call's timer is re-armed for the rest of its deadline
 * afterwards.
 */
function expectPark(core: Core, vcpu: Vcpu, port: number, what: string): void {
  const limit = serviceLimit.ms;
  const start = performance.now();
  const callDeadline = core.inCall ? core.callDeadline : 0;
  const watchdog = limit > 0 ? armWatchdog(vcpu, limit) : undefined;
  try {
    for (;;) {
      const reason = vcpu.runOnce();
      if (reason !== -ERRNO.EINTR) {
        if (reason !== EXIT.IO || vcpu.ioPort !== port) throw crash(core, reason, `during ${what}`);
        return;
      }
      if (watchdog === undefined) Watchdog.drainStray();
      else if (watchdog.drain()) {
        const elapsed = performance.now() - start;
        if (elapsed >= limit * 0.999) {
          core.broken = "a service run that did not park";
          throw new GuestCrash(`${core.name}: the runtime did not park within ${limit} ms during ${what} (rip=${hex(vcpu.reg("rip"))}); the machine reboots its vCPU on the next use`);
        }
        watchdog.arm(limit - elapsed); // early (a stale signal): keep the deadline
      }
    }
  } finally {
    if (watchdog) {
      watchdog.disarm();
      watchdog.drain();
      if (callDeadline > 0) watchdog.arm(Math.max(0.001, callDeadline - performance.now()));
    }
  }
}

/** Run the runtime's boot entry until it parks (first `out`); from then on page-table writes are queued. */
export function boot(core: Core, vcpu: Vcpu): void {
  setBootRegisters(core, vcpu);
  expectPark(core, vcpu, PORT.BOOT, "boot");
  core.ptq.booted = true;
}

/** Bring a vCPU that stopped abnormally (timeout, shutdown, double fault) back to the parked state. */
export function recover(core: Core): void {
  const vcpu = core.vcpu!;
  writeRuntimeArea(core);
  setSpecialRegisters(core, vcpu);
  core.frames.length = 0;
  clearMailbox(core.mem);
  core.ptq.booted = false;
  boot(core, vcpu);
  core.broken = undefined;
  if (core.fsBase !== 0) setFsBase(core.mem, core.fsBase);
}

/** The vCPU, rebooted first if it was stopped mid-guest: the guest never runs in a service run. */
function readyForService(core: Core): Vcpu {
  const vcpu = core.requireVcpu();
  if (core.broken !== undefined) recover(core);
  return vcpu;
}

/**
 * Let the runtime apply the queued page-table writes and then reload CR3 with `root` (which
 * flushes the TLB), in service runs of up to MAILBOX_PT_WRITES writes.
 */
export function flushPageTables(core: Core, root = core.normalRoot): void {
  const vcpu = readyForService(core);
  let left: number;
  do {
    left = core.ptq.stageBatch(root);
    expectPark(core, vcpu, PORT.SERVICE, "page-table service run");
  } while (left > 0);
}

/** One KVM_RUN that runs a single ring-0 `out` (or applies pending mailbox work first). */
export function serviceRun(core: Core): void {
  const vcpu = readyForService(core);
  if (core.mem.u32[MB.pending] === 0) vcpu.setReg("rip", parkEntry(core.base, vcpu.reg("rip")));
  else setMailbox(core.mem, MB.service, 1); // apply what is queued on the way
  expectPark(core, vcpu, PORT.SERVICE, "service run");
}
