import { describe, expect, it } from "vitest";
import { buildGdt, buildIdt, buildTss, idtGate, segmentDescriptor, SELECTOR, starMsr } from "../src/x86/descriptors.ts";
import { ADDR_MASK, indices, loanEntry, PERM, PTE, type PtMemory, userPte, WindowTables, writeRoot } from "../src/x86/paging.ts";
import { KVM, ioc, SIZEOF } from "../src/kvm/abi.ts";
import { HOSTCALL_GATE_OFFSET, PORT } from "../src/guest/layout.ts";
import { runtimeBytes, runtimeSymbol } from "../src/guest/runtime.ts";

describe("descriptors", () => {
  it("encodes the flat 64-bit code segment like every kernel does (0x00af9b000000ffff)", () => {
    const [lo, hi] = segmentDescriptor({ type: 0xb, s: 1, dpl: 0, l: 1 });
    expect(hi.toString(16) + lo.toString(16).padStart(8, "0")).toBe("af9b000000ffff");
  });
  it("encodes the ring-3 code and data segments with DPL 3", () => {
    const [, hiCode] = segmentDescriptor({ type: 0xb, s: 1, dpl: 3, l: 1 });
    const [, hiData] = segmentDescriptor({ type: 0x3, s: 1, dpl: 3, db: 1 });
    expect(hiCode).toBe(0x00affb00);
    expect(hiData).toBe(0x00cff300);
  });
  it("puts a 16-byte TSS descriptor with the full base at 0x28", () => {
    const base = 0x1_2345_6000;
    const gdt = new DataView(buildGdt(base).buffer);
    const lo = gdt.getUint32(0x28, true), hi = gdt.getUint32(0x2c, true), upper = gdt.getUint32(0x30, true);
    expect(lo >>> 16).toBe(base & 0xffff);
    expect(hi & 0xff).toBe((base >>> 16) & 0xff);
    expect((hi >>> 8) & 0xf).toBe(0x9);
    expect(upper).toBe(1);
  });
  it("makes MSR_STAR agree with the GDT (user SS = base+8, user CS = base+16)", () => {
    const star = starMsr();
    const sysret = Number((star >> 48n) & 0xffffn);
    expect(Number((star >> 32n) & 0xffffn)).toBe(SELECTOR.KERNEL_CODE);
    expect((sysret + 8) | 3).toBe(SELECTOR.USER_DATA);
    expect((sysret + 16) | 3).toBe(SELECTOR.USER_CODE);
  });
  it("builds IDT gates with the offset split in three and the IST index", () => {
    const g = new DataView(idtGate({ offset: 0x1_2345_6789, ist: 2 }).buffer);
    expect(g.getUint16(0, true)).toBe(0x6789);
    expect(g.getUint16(6, true)).toBe(0x2345);
    expect(g.getUint32(8, true)).toBe(1);
    expect(g.getUint8(4)).toBe(2);
    expect(g.getUint8(5)).toBe(0x8e);
    expect(buildIdt(32, (v) => ({ offset: v * 16, ist: 1 })).length).toBe(512);
  });
  it("writes RSP0, IST1 and the I/O map base into the TSS", () => {
    const t = new DataView(buildTss({ rsp0: 0x5000, ist: [0, 0x7000, 0x8000] }).buffer);
    expect(t.getUint32(4, true)).toBe(0x5000);
    expect(t.getUint32(36, true)).toBe(0x7000);
    expect(t.getUint32(44, true)).toBe(0x8000);
    expect(t.getUint16(102, true)).toBe(104);
  });
  it("builds an I/O permission bitmap that allows exactly the given ports, and a GDT whose TSS limit covers it", () => {
    const tss = buildTss({ rsp0: 0x5000, ist: [0], ioPorts: [0xd3] });
    // SDM Vol. 1 §19.5.2: bitmap at the map base, one bit per port (0 = allowed), then a 0xff byte.
    expect(new DataView(tss.buffer).getUint16(102, true)).toBe(104);
    expect(tss.length).toBe(104 + (0xd3 >> 3) + 2);
    const allowed = (port: number) => 104 + (port >> 3) + 1 < tss.length && ((tss[104 + (port >> 3)]! >> (port & 7)) & 1) === 0;
    for (let port = 0; port < 0x10000; port++) expect(allowed(port), `port 0x${port.toString(16)}`).toBe(port === 0xd3);
    expect(tss[tss.length - 1]).toBe(0xff);
    const gdt = new DataView(buildGdt(0x2000, tss.length).buffer);
    expect(gdt.getUint16(SELECTOR.TSS, true)).toBe(tss.length - 1);
    expect(() => buildTss({ rsp0: 0, ist: [0], ioPorts: [0x10000] })).toThrow(RangeError);
    expect(() => buildGdt(0x2000, 50)).toThrow(RangeError);
  });
});

describe("hostcall gates", () => {
  it("the runtime's gate page: 256 gates of `out PORT.HOSTCALL, al; ret`, hlt padding, nothing else", () => {
    const start = runtimeSymbol("hostcall_gates");
    expect(start % 4096).toBe(0);
    expect(runtimeSymbol("hostcall_gates_end") - start).toBe(4096);
    const page = runtimeBytes().subarray(start, start + 4096);
    for (let g = 0; g < 256; g++) expect([...page.subarray(g * 16, g * 16 + 16)]).toEqual([0xe6, PORT.HOSTCALL, 0xc3, ...Array(13).fill(0xf4)]);
  });
  it("maps the gate pages user read-only and executable through their own PT; the no-exec PD copy and setGates(false) leave them out", () => {
    const spec = { base: 1 << 30, memory: 8 << 20, pml4: (1 << 30) + 0x100000, pdpt: (1 << 30) + 0x101000, pd: (1 << 30) + 0x102000, ptBase: (1 << 30) + 0x110000 };
    const gates = { va: spec.base + HOSTCALL_GATE_OFFSET, pages: 16, pt: spec.base + 0xf000, page: spec.base + 0x12000 };
    const mem = mapMemory();
    const t = new WindowTables({ ...spec, gates });
    t.init(mem);
    const pde = mem.read64(spec.pd + 511 * 8);
    expect(pde & (PTE.P | PTE.US | PTE.RW)).toBe(PTE.P | PTE.US);
    expect(pde & ADDR_MASK).toBe(BigInt(gates.pt));
    for (let i = 0; i < 512; i++) {
      const pte = mem.read64(gates.pt + i * 8);
      if (i >= 16) expect(pte, `PT[${i}]`).toBe(0n); // the return and exit traps stay unmapped
      else expect(pte & (PTE.P | PTE.US | PTE.RW | PTE.NX | ADDR_MASK)).toBe(PTE.P | PTE.US | BigInt(gates.page));
    }
    t.writeNoExecPd(mem, 0x70000);
    expect(mem.read64(0x70000 + 511 * 8)).toBe(0n);
    t.setGates(mem, false);
    expect(mem.read64(spec.pd + 511 * 8)).toBe(0n);
    t.setGates(mem, true);
    expect(mem.read64(spec.pd + 511 * 8)).toBe(pde);
    expect(() => new WindowTables({ ...spec, gates: { ...gates, va: spec.base + (4 << 20) } })).toThrow(/above its memory/);
    expect(() => new WindowTables(spec).setGates(mem, true)).toThrow(/no gate pages/);
  });
});

function mapMemory(): PtMemory & { m: Map<number, bigint> } {
  const m = new Map<number, bigint>();
  return { m, read64: (a) => m.get(a) ?? 0n, write64: (a, v) => void m.set(a, v) };
}

describe("paging", () => {
  const spec = { base: 1 << 30, memory: 8 << 20, pml4: (1 << 30) + 0x100000, pdpt: (1 << 30) + 0x101000, pd: (1 << 30) + 0x102000, ptBase: (1 << 30) + 0x110000 };
  it("splits a virtual address into its four indices", () => {
    expect(indices(0x4040_1000)).toEqual({ pml4: 0, pdpt: 1, pd: 2, pt: 1 });
  });
  it("sets NX for non-executable and RW for writable user pages", () => {
    expect(userPte(0x5000, PERM.RX) & PTE.NX).toBe(0n);
    expect(userPte(0x5000, PERM.RX) & PTE.RW).toBe(0n);
    expect(userPte(0x5000, PERM.RW) & (PTE.NX | PTE.RW | PTE.US | PTE.P)).toBe(PTE.NX | PTE.RW | PTE.US | PTE.P);
  });
  it("builds a window: runtime area as a supervisor 2 MiB page, user pages in PTs", () => {
    const mem = mapMemory();
    const t = new WindowTables(spec);
    t.init(mem);
    expect(mem.read64(spec.pml4) & ~0xfffn).toBe(BigInt(spec.pdpt));
    expect(mem.read64(spec.pdpt + 8) & ~0xfffn).toBe(BigInt(spec.pd));
    const rt = mem.read64(spec.pd);
    expect(rt & PTE.PS).toBe(PTE.PS);
    expect(rt & PTE.US).toBe(0n);
    expect(t.ptCount).toBe(3);
    expect(t.getPage(mem, spec.base + (2 << 20))).toEqual({ write: true, exec: false });
    t.setPages(mem, spec.base + (4 << 20), 5000, PERM.RX);
    expect(t.getPage(mem, spec.base + (4 << 20) + 4096)).toEqual({ write: false, exec: true });
    expect(t.getPage(mem, spec.base + (4 << 20) + 8192)).toEqual({ write: true, exec: false });
    t.setPages(mem, spec.base + (6 << 20), 1, null);
    expect(t.getPage(mem, spec.base + (6 << 20))).toBeNull();
    expect(() => t.pteAddress(spec.base + 0x1000)).toThrow(/not user memory/);
  });
  it("writes the same entries through the BigInt-free bulk path as through write64", () => {
    for (const window of [0, 1, 300]) {
      const base = window * 2 ** 30;
      const sp = { base, memory: 8 << 20, pml4: base + 0x100000, pdpt: base + 0x101000, pd: base + 0x102000, ptBase: base + 0x118000 };
      const slow = mapMemory();
      new WindowTables(sp).init(slow, PERM.RX);
      const fast = mapMemory();
      const dv = new DataView(new ArrayBuffer(8));
      (fast as PtMemory).write64Parts = (gpa, lo, hi) => {
        dv.setUint32(0, lo, true);
        dv.setUint32(4, hi, true);
        fast.m.set(gpa, dv.getBigUint64(0, true));
      };
      new WindowTables(sp).init(fast, PERM.RX);
      expect(fast.m.size).toBe(slow.m.size);
      for (const [gpa, v] of slow.m) expect(fast.m.get(gpa), `0x${gpa.toString(16)}`).toBe(v);
    }
  });
  it("builds a second root that maps a remote window, and a read-only no-exec loan of it", () => {
    const mem = mapMemory();
    const entry = 0x4010_2000n | 7n;
    writeRoot(mem, 0x9000, 0xa000, new Map([[0, 0x3000n | 7n], [1, entry]]));
    expect(mem.read64(0xa000 + 8)).toBe(entry);
    const loan = loanEntry(entry);
    expect(loan & PTE.RW).toBe(0n);
    expect(loan & PTE.NX).toBe(PTE.NX);
    writeRoot(mem, 0x9000, 0xa000, new Map([[0, 0x3000n | 7n]]));
    expect(mem.read64(0xa000 + 8)).toBe(0n);
  });
});

describe("KVM ABI", () => {
  it("computes ioctl numbers from _IOC and the C struct sizes", () => {
    expect(KVM.RUN).toBe(0xae80);
    expect(KVM.GET_SUPPORTED_CPUID).toBe(0xc008ae05);
    expect(KVM.SET_USER_MEMORY_REGION).toBe(0x4020ae46);
    expect(KVM.GET_REGS).toBe(0x8090ae81);
    expect(KVM.SET_SREGS).toBe(0x4138ae84);
    expect(KVM.SET_MSRS).toBe(0x4008ae89);
    expect(KVM.SET_CPUID2).toBe(0x4008ae90);
    expect(KVM.SET_SIGNAL_MASK).toBe(0x4004ae8b);
    expect(ioc(3, 0xae, 5, SIZEOF.kvm_cpuid2)).toBe(KVM.GET_SUPPORTED_CPUID);
  });
});
