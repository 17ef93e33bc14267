/**
 * Whether this /dev/kvm lets a vCPU run with CR4.PCIDE: KVM's supported CPUID (leaf 1 ECX bit
 * 17, PCID; leaf 7 EBX bit 10, INVPCID), then ipre's own boot path (createVm, the runtime area,
 * setSpecialRegisters) followed by one KVM_SET_SREGS with CR4.PCIDE added; then the same after
 * forcing the PCID bit into the vCPU's CPUID (KVM_SET_CPUID2), which KVM accepts from userspace
 * but which cannot lift a CR4 bit the host itself lacks. Prints one JSON line.
 *   bun scripts/pcid-probe.ts
 */
import { createVm, kvmInfo, releaseKvm, setSpecialRegisters, writeRuntimeArea } from "../src/engine/boot.ts";
import { GuestMemory } from "../src/engine/memory.ts";
import { WINDOW_SIZE } from "../src/guest/layout.ts";

const PCIDE = 1n << 17n;
const window = 1;
const base = window * WINDOW_SIZE;
const size = 4 << 20;
const info = kvmInfo();
const mem = GuestMemory.create(base, size, "pcid-probe");
const { kvm, vm, vcpu } = createVm(base, size, mem.hostAddr);
type Attempt = { ok: boolean; error?: string; cr4?: string };
let result: Attempt;
let forced: Attempt | undefined;
const attempt = (): Attempt => {
  const s = vcpu.getSregs();
  try {
    vcpu.setSregs({ ...s, cr4: s.cr4 | PCIDE });
    return { ok: true, cr4: "0x" + vcpu.getSregs().cr4.toString(16) };
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
};
try {
  writeRuntimeArea(mem, base);
  setSpecialRegisters(vcpu, mem, base, base + 0x100000); // RT.PML4: page-aligned, PCID 0
  result = attempt();
  if (!result.ok) {
    // Leaf 1's ECX (offset 20 of a 40-byte entry after the 8-byte header), bit 17.
    const view = kvm.cpuid.view;
    for (let i = 0, n = view.getUint32(0, true); i < n; i++) {
      const e = 8 + i * 40;
      if (view.getUint32(e, true) === 1) view.setUint32(e + 20, view.getUint32(e + 20, true) | (1 << 17), true);
    }
    try {
      vcpu.setCpuid(kvm.cpuid);
      forced = attempt();
    } catch (e) {
      forced = { ok: false, error: "KVM_SET_CPUID2 with PCID: " + (e instanceof Error ? e.message : String(e)) };
    }
  }
} finally {
  vcpu.close();
  vm.close();
  releaseKvm();
}
console.log(JSON.stringify({ flavour: info.flavour, cpuidPcid: info.cpuidPcid, setSregsWithPcide: result, withPcidForcedInCpuid: forced }));
