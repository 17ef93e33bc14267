/**
 * A vCPU: its fd and mmapped `struct kvm_run`. General registers are read and written through
 * KVM_CAP_SYNC_REGS (in the kvm_run page), so the exit loop issues exactly one ioctl per exit.
 */
import { libc } from "../ffi/index.ts";
import { MAP_SHARED, NativeBuffer, PROT_READ, PROT_WRITE } from "../ffi/native.ts";
import { KvmError, OsError } from "../errors.ts";
import { ERRNO } from "../errno.ts";
import { EXIT, KVM, MSR_ENTRY, REGS, type RegName, RUN, SIZEOF, SREGS, SYNC } from "./abi.ts";
import { check, kvmIoctl } from "./system.ts";
import { decodeSregs, encodeSregs, type KvmSregs } from "./sregs.ts";
import { getI64, getU64, setU64, TWO32 } from "../u64.ts";

export class Vcpu {
  #fd: number;
  readonly runAddress: number;
  readonly runSize: number;
  /** The kvm_run page as 32-bit words (aligned fields only). */
  readonly #u32: Uint32Array;
  readonly run: DataView;
  #sregs = NativeBuffer.alloc(SIZEOF.kvm_sregs);
  #regs = NativeBuffer.alloc(SIZEOF.kvm_regs);
  /** Thread id whose watchdog mask is installed (KVM_SET_SIGNAL_MASK); -1: none yet. */
  #maskTid = -1;

  constructor(fd: number, runSize: number) {
    this.#fd = fd;
    this.runSize = runSize;
    const addr = libc.mmap(0, runSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (addr === -1) throw new OsError("mmap(kvm_run)", libc.errno());
    this.runAddress = addr;
    const buf = libc.view(addr, runSize);
    this.#u32 = new Uint32Array(buf);
    this.run = new DataView(buf);
    // Ask KVM to store the general registers in kvm_run on every exit.
    this.#u32[RUN.kvm_valid_regs >> 2] = SYNC.REGS;
  }

  get fd(): number {
    if (this.#fd < 0) throw new KvmError("use of closed vCPU", ERRNO.EBADF);
    return this.#fd;
  }

  /**
   * KVM_RUN, the hot path: returns the exit reason, or -errno when the ioctl failed (e.g. -4 for
   * EINTR when a timeout signal arrived). Allocates nothing.
   */
  runOnce(): number {
    const u32 = this.#u32;
    u32[RUN.exit_reason >> 2] = EXIT.UNKNOWN;
    const r = libc.ioctl(this.#fd, KVM.RUN, 0);
    if (r < 0) {
      // KVM marks a signal exit in kvm_run (KVM_EXIT_INTR with -EINTR). Trust that over errno,
      // which the runtime may overwrite between the ioctl and our read of it (seen on Deno:
      // a timeout's EINTR read back as ENOENT).
      if (u32[RUN.exit_reason >> 2] === EXIT.INTR) return -ERRNO.EINTR;
      return -libc.errno();
    }
    return u32[RUN.exit_reason >> 2]!;
  }

  /** The last exit's reason (EXIT.*), until the next KVM_RUN. */
  get exitReason(): number {
    return this.#u32[RUN.exit_reason >> 2]!;
  }
  /** Port of the last KVM_EXIT_IO. */
  get ioPort(): number {
    return this.run.getUint16(RUN.io_port, true);
  }

  /** A general register as an unsigned number (exact below 2^53), from the sync-regs area. */
  reg(name: RegName): number {
    return getU64(this.#u32, (RUN.sync_regs + REGS[name]) >> 2);
  }
  /** A general register as a signed 64-bit value converted to number (exact within ±2^53). */
  regSigned(name: RegName): number {
    return getI64(this.#u32, (RUN.sync_regs + REGS[name]) >> 2);
  }
  regBigInt(name: RegName): bigint {
    return this.run.getBigUint64(RUN.sync_regs + REGS[name], true);
  }
  /** Set a general register for the next KVM_RUN (negative numbers are two's complement). */
  setReg(name: RegName, value: number): void {
    setU64(this.#u32, (RUN.sync_regs + REGS[name]) >> 2, value); // ToUint32 wraps negative values to two's complement
    this.#u32[RUN.kvm_dirty_regs >> 2] = SYNC.REGS;
  }
  setRegBigInt(name: RegName, value: bigint): void {
    this.run.setBigUint64(RUN.sync_regs + REGS[name], BigInt.asUintN(64, value), true);
    this.#u32[RUN.kvm_dirty_regs >> 2] = SYNC.REGS;
  }

  /** KVM_GET_REGS into the sync area (used once, before the first run fills it). */
  loadRegs(): void {
    kvmIoctl(this.fd, "GET_REGS", this.#regs.address);
    new Uint8Array(this.run.buffer, RUN.sync_regs, SIZEOF.kvm_regs).set(this.#regs.bytes.subarray(0, SIZEOF.kvm_regs));
  }
  /** KVM_SET_REGS from the sync area (setup only). */
  storeRegs(): void {
    this.#regs.bytes.set(new Uint8Array(this.run.buffer, RUN.sync_regs, SIZEOF.kvm_regs));
    kvmIoctl(this.fd, "SET_REGS", this.#regs.address);
    this.#u32[RUN.kvm_dirty_regs >> 2] = 0;
  }

  /** KVM_GET_SREGS, decoded. */
  getSregs(): KvmSregs {
    kvmIoctl(this.fd, "GET_SREGS", this.#sregs.address);
    return decodeSregs(this.#sregs.view);
  }
  /** CR2 (the last page-fault address) through KVM_GET_SREGS, as a signed number (upper half < 0). */
  cr2(): number {
    return this.#sregsU64(SREGS.cr2, true);
  }
  /** CR3 (the page-table root the vCPU runs on) through KVM_GET_SREGS, without decoding the rest. */
  cr3(): number {
    return this.#sregsU64(SREGS.cr3, false);
  }
  /** One u64 field of KVM_GET_SREGS (`signed`: its upper half as a signed int32). */
  #sregsU64(offset: number, signed: boolean): number {
    kvmIoctl(this.fd, "GET_SREGS", this.#sregs.address);
    const s = this.#sregs.view;
    return s.getUint32(offset, true) + (signed ? s.getInt32(offset + 4, true) : s.getUint32(offset + 4, true)) * TWO32;
  }

  /** KVM_SET_SREGS with `value` (typically getSregs() with fields changed). */
  setSregs(value: KvmSregs): void {
    encodeSregs(this.#sregs.view, value);
    kvmIoctl(this.fd, "SET_SREGS", this.#sregs.address);
  }

  /** KVM_SET_MSRS */
  setMsrs(msrs: ReadonlyArray<readonly [number, bigint]>): void {
    using buf = NativeBuffer.alloc(SIZEOF.kvm_msrs + msrs.length * SIZEOF.kvm_msr_entry);
    buf.view.setUint32(0, msrs.length, true);
    msrs.forEach(([index, value], i) => {
      const off = SIZEOF.kvm_msrs + i * SIZEOF.kvm_msr_entry;
      buf.view.setUint32(off + MSR_ENTRY.index, index, true);
      buf.view.setBigUint64(off + MSR_ENTRY.data, value, true);
    });
    const n = kvmIoctl(this.fd, "SET_MSRS", buf.address);
    if (n !== msrs.length) throw new KvmError("KVM_SET_MSRS", ERRNO.EINVAL, `only ${n} of ${msrs.length} MSRs set (first rejected: 0x${msrs[n]![0].toString(16)})`);
  }

  /** KVM_SET_CPUID2 with a buffer from Kvm.supportedCpuid(). */
  setCpuid(cpuid: NativeBuffer): void {
    kvmIoctl(this.fd, "SET_CPUID2", cpuid.address);
  }

  /**
   * KVM_SET_SIGNAL_MASK: the signal mask in force while this vCPU is inside KVM_RUN
   * (`struct kvm_signal_mask { u32 len = 8; u8 sigset[8]; }`); null removes it.
   */
  setSignalMask(mask: bigint | null): void {
    this.#maskTid = -1;
    using buf = NativeBuffer.alloc(16);
    if (mask === null) {
      check(libc.ioctl(this.fd, KVM.SET_SIGNAL_MASK, 0), "KVM_SET_SIGNAL_MASK");
      return;
    }
    buf.view.setUint32(0, 8, true);
    buf.view.setBigUint64(4, mask, true);
    check(libc.ioctl(this.fd, KVM.SET_SIGNAL_MASK, buf.address), "KVM_SET_SIGNAL_MASK");
  }

  /**
   * The signal mask of thread `tid` (its watchdog's, src/watchdog.ts), installed once per thread:
   * KVM_SET_SIGNAL_MASK only when another thread installed the last one.
   */
  useThreadMask(tid: number, mask: bigint): void {
    if (this.#maskTid === tid) return;
    this.setSignalMask(mask);
    this.#maskTid = tid;
  }

  close(): void {
    if (this.#fd >= 0) {
      libc.munmap(this.runAddress, this.runSize);
      libc.close(this.#fd);
      this.#fd = -1;
      this.#sregs.close();
      this.#regs.close();
    }
  }
  [Symbol.dispose](): void {
    this.close();
  }
}
