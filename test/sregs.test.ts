/** kvm_sregs codec and the segments derived from ipre's GDT (no KVM needed). */
import { describe, expect, it } from "vitest";
import { decodeSregs, encodeSregs, segmentFromGdt, type KvmSregs } from "../src/kvm/sregs.ts";
import { SIZEOF } from "../src/kvm/abi.ts";
import { buildGdt, SELECTOR, TSS_SIZE } from "../src/x86/descriptors.ts";

describe("kvm_segment from the GDT", () => {
  const tssBase = 3 * 2 ** 30 + 0x2000;
  const gdt = buildGdt(tssBase);
  it("64-bit ring-0 code: L=1, D=0, type 0xB, 4 GiB limit", () => {
    expect(segmentFromGdt(gdt, SELECTOR.KERNEL_CODE)).toEqual({ base: 0, limit: 0xffffffff, selector: 0x08, type: 0xb, present: 1, dpl: 0, db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0 });
  });
  it("ring-0 and ring-3 data: type 3, D/B=1", () => {
    expect(segmentFromGdt(gdt, SELECTOR.KERNEL_DATA)).toMatchObject({ type: 3, db: 1, l: 0, dpl: 0, limit: 0xffffffff });
    expect(segmentFromGdt(gdt, SELECTOR.USER_DATA)).toMatchObject({ type: 3, db: 1, dpl: 3, selector: SELECTOR.USER_DATA });
    expect(segmentFromGdt(gdt, SELECTOR.USER_CODE)).toMatchObject({ type: 0xb, l: 1, dpl: 3 });
  });
  it("the TSS: a 16-byte system descriptor with the full 64-bit base and a byte limit", () => {
    expect(segmentFromGdt(gdt, SELECTOR.TSS)).toMatchObject({ base: tssBase, limit: TSS_SIZE - 1, type: 9, s: 0, g: 0 });
  });
  it("a selector beyond the GDT is a RangeError", () => {
    expect(() => segmentFromGdt(gdt, 0x40)).toThrow(RangeError);
  });
});

describe("kvm_sregs codec", () => {
  it("decode(encode(x)) = x for every field", () => {
    const seg = (i: number) => ({ base: 0x1000 * i, limit: 0xfffff + i, selector: 8 * i, type: i & 15, present: 1 as const, dpl: i & 3, db: (i & 1) as 0 | 1, s: 1 as const, l: 0 as const, g: 1 as const, avl: 0 as const, unusable: 0 as const });
    const x: KvmSregs = {
      cs: seg(1), ds: seg(2), es: seg(3), fs: seg(4), gs: seg(5), ss: seg(6), tr: seg(7), ldt: { ...seg(8), unusable: 1 },
      gdt: { base: 2 ** 40 + 0x1000, limit: 55 }, idt: { base: 0x2000, limit: 511 },
      cr0: 0x80050033n, cr2: 2n ** 63n + 5n, cr3: 0x100000n, cr4: 0x10620n, cr8: 0n, efer: 0xd01n, apicBase: 0xfee00900n,
      interruptBitmap: [1n, 0n, 2n ** 64n - 1n, 7n],
    };
    const dv = new DataView(new ArrayBuffer(SIZEOF.kvm_sregs));
    encodeSregs(dv, x);
    expect(decodeSregs(dv)).toEqual(x);
  });
});
