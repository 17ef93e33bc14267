/**
 * kvm-hello-world through ipre's raw handles: the canonical KVM flow, top to bottom, with nothing
 * from src/machine.ts. Each step is one method of src/kvm/ (one class per fd, as rust-vmm's
 * kvm-ioctls); runtime-neutral, so test/kvm-hello.test.ts runs it on Node, Bun and Deno.
 *
 *  1. Kvm.open()                /dev/kvm, KVM_GET_API_VERSION == 12
 *  2. Vm.create(kvm)            KVM_CREATE_VM
 *  3. libc.mmap + vm.setMemory  anonymous host memory as guest-physical slot 0
 *                               (KVM_SET_USER_MEMORY_REGION); the code is copied into it
 *  4. vm.createVcpu(0)          KVM_CREATE_VCPU and the mmap of its struct kvm_run
 *  5. getSregs / setSregs       real mode (the vCPU's reset state) with CS base 0, so that
 *                               CS:IP = 0:0x1000 is the code (KVM_GET/SET_SREGS)
 *  6. loadRegs / setReg / storeRegs   RIP, RFLAGS (bit 1 is reserved, always 1) (KVM_SET_REGS)
 *  7. runOnce() until KVM_EXIT_HLT    each `out`/`in` exits with KVM_EXIT_IO: port, direction,
 *                               size and the data bytes sit in kvm_run (data at io.data_offset);
 *                               for an `in` the host writes the bytes there before the next run
 *
 * Real mode needs no GDT and no page tables: the simplest guest. (A PVM host runs 64-bit guests
 * only; the test skips there. ipre's own machines are long mode: src/machine.ts.)
 */
import { libc } from "../../src/ffi/index.ts";
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from "../../src/ffi/native.ts";
import { EXIT, EXIT_NAMES, RUN } from "../../src/kvm/abi.ts";
import { Kvm } from "../../src/kvm/system.ts";
import { Vm } from "../../src/kvm/vm.ts";

/** Guest-physical (and, with CS base 0, linear) address of the code. */
export const CODE_GPA = 0x1000;
/** Size of the one memslot. */
export const MEM_SIZE = 0x10000;
/** The debug port of QEMU/Bochs (`-debugcon`), as kvm-hello-world uses. */
export const PORT = 0xe9;
/** The byte the host answers the guest's `in al, 0xE9` with. */
export const IN_BYTE = 0x21; // '!'

/** 16-bit real-mode code: three outs of "Hi\n" (one byte, then a word), an in, its echo, hlt. */
export const CODE = Uint8Array.of(
  0xb0, 0x48, //       mov al, 'H'
  0xe6, 0xe9, //       out 0xE9, al        exit: OUT, size 1, "H"
  0xb8, 0x69, 0x0a, // mov ax, 0x0a69      ("i\n" little-endian)
  0xe7, 0xe9, //       out 0xE9, ax        exit: OUT, size 2, "i\n"
  0xe4, 0xe9, //       in al, 0xE9         exit: IN, size 1; the host supplies IN_BYTE
  0xe6, 0xe9, //       out 0xE9, al        exit: OUT, size 1, IN_BYTE
  0xf4, //             hlt                 exit: HLT
);

export interface IoExit {
  port: number;
  /** KVM_EXIT_IO_IN = 0, KVM_EXIT_IO_OUT = 1. */
  direction: number;
  size: number;
  count: number;
  /** The bytes of an OUT (as the guest wrote them); for an IN, what the host supplied. */
  data: number[];
}

export interface HelloReport {
  runtime: string;
  apiVersion: number;
  exits: IoExit[];
  /** Name of the exit that ended the run (HLT expected). */
  last: string;
  rip: number;
  rax: number;
  text: string;
}

export function helloReport(): HelloReport {
  using kvm = Kvm.open();
  using vm = Vm.create(kvm);

  const host = libc.mmap(0, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (host === -1) throw new Error(`mmap: errno ${libc.errno()}`);
  try {
    new Uint8Array(libc.view(host, MEM_SIZE)).set(CODE, CODE_GPA);
    vm.setMemory({ slot: 0, guestPhysAddr: 0, size: MEM_SIZE, hostAddr: host });

    using vcpu = vm.createVcpu(0);
    const sregs = vcpu.getSregs();
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.setSregs(sregs);

    vcpu.loadRegs();
    vcpu.setReg("rip", CODE_GPA);
    vcpu.setReg("rflags", 0x2);
    vcpu.storeRegs();

    const exits: IoExit[] = [];
    let text = "";
    let reason: number;
    for (;;) {
      reason = vcpu.runOnce();
      if (reason !== EXIT.IO) break;
      const run = vcpu.run;
      const io: IoExit = {
        port: run.getUint16(RUN.io_port, true),
        direction: run.getUint8(RUN.io_direction),
        size: run.getUint8(RUN.io_size),
        count: run.getUint32(RUN.io_count, true),
        data: [],
      };
      const data = new Uint8Array(run.buffer, Number(run.getBigUint64(RUN.io_data_offset, true)), io.size * io.count);
      if (io.direction === 0) data.fill(IN_BYTE);
      io.data = [...data];
      if (io.direction === 1) text += String.fromCharCode(...data);
      exits.push(io);
      if (exits.length > 16) break; // a runaway guest: the test sees the extra exits
    }
    return {
      runtime: libc.runtime,
      apiVersion: kvm.apiVersion(),
      exits,
      last: reason < 0 ? `errno ${-reason}` : (EXIT_NAMES[reason] ?? String(reason)),
      rip: vcpu.reg("rip"),
      rax: vcpu.reg("rax"),
      text,
    };
  } finally {
    libc.munmap(host, MEM_SIZE);
  }
}

if ((import.meta as ImportMeta & { main?: boolean }).main) console.log(JSON.stringify(helloReport()));
