import { describe, expect, test } from "vitest";
import { BUN_SYMBOLS } from "../src/ffi/bun.ts";
import { DENO_SYMBOLS } from "../src/ffi/deno.ts";
import { libc } from "../src/ffi/index.ts";
import { KOFFI_SYMBOLS } from "../src/ffi/node.ts";
import { SYMBOLS } from "../src/ffi/symbols.ts";

describe("one libc symbol table, three derived declarations", () => {
  test("every Libc call has a symbol with a C prototype whose arity matches", () => {
    const calls = Object.keys(libc).filter((k) => !["runtime", "backend", "errno", "view"].includes(k));
    for (const name of calls) {
      const def = (SYMBOLS as Record<string, { c: string; params: readonly string[] }>)[name];
      expect(def, name).toBeDefined();
      expect(def!.c, name).toMatch(new RegExp(`[ *]${name}\\(`));
      const cParams = def!.c.slice(def!.c.indexOf("(") + 1, -1);
      expect(cParams === "void" ? 0 : cParams.split(",").length, name).toBe(def!.params.length);
    }
    expect(SYMBOLS.__errno_location.result).toBe("pointer");
  });

  test("each backend gets its own types (the former hand-written tables)", () => {
    expect(BUN_SYMBOLS.ioctl).toEqual({ args: ["i32", "u64", "u64"], returns: "i32" });
    expect(BUN_SYMBOLS.mmap).toEqual({ args: ["ptr", "u64", "i32", "i32", "i32", "i64"], returns: "i64_fast" });
    expect(BUN_SYMBOLS.__errno_location).toEqual({ args: [], returns: "ptr" });
    expect(DENO_SYMBOLS.ioctl).toEqual({ parameters: ["i32", "u64", "u64"], result: "i32" });
    expect(DENO_SYMBOLS.mmap).toEqual({ parameters: ["u64", "u64", "i32", "i32", "i32", "i64"], result: "i64" });
    expect(DENO_SYMBOLS.memfd_create).toEqual({ parameters: ["u64", "u32"], result: "i32" });
    expect(DENO_SYMBOLS.__errno_location).toEqual({ parameters: [], result: "pointer" });
    expect(KOFFI_SYMBOLS.ioctl).toEqual({ result: "int", params: ["int", "unsigned long", "unsigned long"] });
    expect(KOFFI_SYMBOLS.mmap).toEqual({ result: "intptr_t", params: ["uintptr_t", "unsigned long", "int", "int", "int", "int64_t"] });
    expect(KOFFI_SYMBOLS.timer_settime).toEqual({ result: "int", params: ["unsigned long", "int", "uintptr_t", "uintptr_t"] });
  });
});
