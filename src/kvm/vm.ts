/** A KVM VM file descriptor: memslots and vCPU creation (KVM API §4.x). */
import { libc } from "../ffi/index.ts";
import { NativeBuffer } from "../ffi/native.ts";
import { KvmError } from "../errors.ts";
import { ERRNO } from "../errno.ts";
import { MEMORY_REGION, SIZEOF } from "./abi.ts";
import { type Kvm, kvmIoctl } from "./system.ts";
import { Vcpu } from "./vcpu.ts";
import { setU64View } from "../u64.ts";

export interface MemorySlot {
  slot: number;
  guestPhysAddr: number;
  size: number;
  hostAddr: number;
  readonly?: boolean;
}

export class Vm {
  #fd: number;
  readonly kvm: Kvm;
  /** Scratch for struct kvm_userspace_memory_region. */
  #region = NativeBuffer.alloc(SIZEOF.kvm_userspace_memory_region);

  private constructor(kvm: Kvm, fd: number) {
    this.kvm = kvm;
    this.#fd = fd;
  }

  /** KVM_CREATE_VM */
  static create(kvm: Kvm): Vm {
    return new Vm(kvm, kvm.createVmFd());
  }

  get fd(): number {
    if (this.#fd < 0) throw new KvmError("use of closed VM", ERRNO.EBADF);
    return this.#fd;
  }

  /** KVM_SET_USER_MEMORY_REGION; a size of 0 deletes the slot. */
  setMemory(m: MemorySlot): void {
    const dv = this.#region.view;
    dv.setUint32(MEMORY_REGION.slot, m.slot, true);
    dv.setUint32(MEMORY_REGION.flags, m.readonly ? 2 : 0, true);
    setU64View(dv, MEMORY_REGION.guest_phys_addr, m.guestPhysAddr);
    setU64View(dv, MEMORY_REGION.memory_size, m.size);
    setU64View(dv, MEMORY_REGION.userspace_addr, m.hostAddr);
    kvmIoctl(this.fd, "SET_USER_MEMORY_REGION", this.#region.address);
  }

  /** KVM_SET_TSS_ADDR (Intel needs a 3-page region outside guest memory for real-mode emulation). */
  setTssAddr(gpa: number): void {
    kvmIoctl(this.fd, "SET_TSS_ADDR", gpa);
  }

  /** KVM_CREATE_VCPU and mmap of its kvm_run page. */
  createVcpu(id: number): Vcpu {
    const fd = kvmIoctl(this.fd, "CREATE_VCPU", id);
    try {
      return new Vcpu(fd, this.kvm.vcpuMmapSize());
    } catch (e) {
      libc.close(fd);
      throw e;
    }
  }

  close(): void {
    if (this.#fd >= 0) {
      libc.close(this.#fd);
      this.#fd = -1;
      this.#region.close();
    }
  }
  [Symbol.dispose](): void {
    this.close();
  }
}
