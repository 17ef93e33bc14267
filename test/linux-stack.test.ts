/**
 * The Linux loader's pure parts, natively (no KVM): the initial process stack (argc, argv, envp,
 * auxv, AT_RANDOM, strings), AT_PHDR of the committed hello.elf, and that only a Linux load
 * accepts PT_TLS.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseElf } from "../src/guest/elf.ts";
import { AT, buildInitialStack, programHeaders } from "../src/linux/loader.ts";

const HELLO = new Uint8Array(readFileSync(new URL("../guests/linux/hello.elf", import.meta.url)));

describe("linux loader", () => {
  it("builds the initial stack: argc at a 16-aligned sp, argv, NULL, envp, NULL, auxv ending in AT_NULL", () => {
    const top = 0x2000000;
    const random = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
    const { sp, bytes } = buildInitialStack({ top, argv: ["prog", "x"], env: ["A=1"], execfn: "/bin/prog", random, auxv: [[AT.PAGESZ, 4096], [AT.ENTRY, 0x401000]] });
    expect(sp % 16).toBe(0);
    expect(sp + bytes.length).toBe(top);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const word = (i: number) => Number(dv.getBigUint64(i * 8, true));
    const str = (addr: number) => {
      const o = addr - sp;
      return new TextDecoder().decode(bytes.subarray(o, bytes.indexOf(0, o)));
    };
    expect(word(0)).toBe(2);
    expect(str(word(1))).toBe("prog");
    expect(str(word(2))).toBe("x");
    expect(word(3)).toBe(0);
    expect(str(word(4))).toBe("A=1");
    expect(word(5)).toBe(0);
    const aux = new Map<number, number>();
    let i = 6;
    for (; word(i) !== AT.NULL; i += 2) aux.set(word(i), word(i + 1));
    expect(aux.get(AT.PAGESZ)).toBe(4096);
    expect(aux.get(AT.ENTRY)).toBe(0x401000);
    expect(str(aux.get(AT.EXECFN)!)).toBe("/bin/prog");
    const r = aux.get(AT.RANDOM)!;
    expect(r % 16).toBe(0);
    expect([...bytes.subarray(r - sp, r - sp + 16)]).toEqual([...random]);
    // Everything the pointers designate lies inside the stack, above the vectors.
    for (const p of [word(1), word(2), word(4), r, aux.get(AT.EXECFN)!]) expect(p).toBeGreaterThan(sp + (i + 1) * 8);
  });

  it("finds the program headers of a gcc -static program in its first PT_LOAD (AT_PHDR)", () => {
    const ph = programHeaders(HELLO);
    expect(ph.phent).toBe(56);
    expect(ph.phnum).toBeGreaterThan(3);
    expect(ph.phdr).toBe(0x400040);
  });

  it("accepts PT_TLS only for Linux programs", () => {
    expect(() => parseElf(HELLO)).toThrow(/PT_TLS/);
    const elf = parseElf(HELLO, { linux: true });
    expect(elf.lowest).toBe(0x400000);
    expect(elf.entry).toBeGreaterThan(0x400000);
  });
});
