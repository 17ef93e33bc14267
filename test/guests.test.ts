/**
 * The committed guest ELFs (guests/examples/*.elf) and src/guest/runtime.generated.ts must be
 * what scripts/build-guests.mjs produces from the committed sources, and must have the layout
 * the loader expects.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseElf } from "../src/guest/elf.ts";
import { upperMs } from "./kvm.ts";

const root = fileURLToPath(new URL("../", import.meta.url));
const examples = `${root}guests/examples/`;
const load = (name: string) => parseElf(new Uint8Array(readFileSync(`${examples}${name}.elf`)));

const missingTools = ["gcc", "g++", "rustc", "ld", "objcopy", "nm", "readelf"].filter(
  (tool) => spawnSync(tool, ["--version"], { stdio: "ignore" }).status !== 0,
);

const GIB = 0x40000000;

describe("guest build", () => {
  it("committed guest binaries match a fresh build (build-guests --check)", (ctx) => {
    if (missingTools.length) ctx.skip(`needs ${missingTools.join(", ")} (GNU gcc, g++ and binutils; rustc for guests/linux/pairs), not found`);
    const r = spawnSync(process.execPath, [`${root}scripts/build-guests.mjs`, "--check", "--quiet"], {
      cwd: root,
      encoding: "utf8",
    });
    if (r.status === 3) ctx.skip(`different toolchain, bytes not comparable: ${r.stderr.trim()}`);
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  }, upperMs(60_000)); // gcc runs emulated in the nested harness: scaled like every wall-clock bound
});

describe("committed example ELFs", () => {
  const names = readdirSync(examples).filter((f) => f.endsWith(".elf")).map((f) => f.slice(0, -4)).sort();

  it("there is an ELF for every example source", () => {
    const sources = readdirSync(examples).filter((f) => f.endsWith(".c")).map((f) => f.slice(0, -2)).sort();
    expect(names).toEqual(sources);
  });

  it.each(names)("%s.elf parses, is page-aligned, W^X, and lies in its window", (name) => {
    const img = load(name);
    const window = name === "kvstore" || name === "kvshared" ? 1 : 0;
    expect(img.entry).toBe(0);
    expect(img.lowest).toBe(window * GIB + 0x400000);
    expect(img.highest).toBeLessThanOrEqual((window + 1) * GIB - 2 * 1024 * 1024);
    for (const s of img.segments) {
      expect(s.vaddr % 4096).toBe(0);
      expect(s.readable).toBe(true);
      expect(s.writable && s.executable).toBe(false);
    }
    expect(img.segments.filter((s) => s.executable)).toHaveLength(1);
    expect(img.symbols.get("__ipre_gates")?.value).toBe(window * GIB + 0x3fe00000);
  });

  it("each example defines the functions the tests call", () => {
    const expected: Record<string, string[]> = {
      add: ["add", "mul", "sum_bytes", "str_len"],
      hostcall: ["use_hostcall", "greet", "hostcall_many"],
      faults: ["divide", "touch", "poke", "undefined_insn", "recurse", "write_code", "jump_to", "breakpoint", "general_protection", "ok"],
      spin: ["spin", "spin_for"],
      bench: ["nop", "hostcall_loop"],
      kvshared: ["kv_put", "kv_get", "kv_has", "kv_count", "kv_capacity", "kv_clear"],
      kvstore: ["kv_insert", "kv_lookup", "kv_count", "vec_scale", "checksum", "sum64", "call_back", "remote_hostcall", "remote_fault", "remote_spin", "remote_fsbase", "kv_secret"],
      kvcaller: ["serve", "serve_misses", "fill", "scale_vector", "sum_vector", "double_it", "via_callback", "call_remote_n", "call_secret", "read_remote", "read_marker", "write_marker", "remote_checksum", "remote_sum64"],
    };
    for (const [name, funcs] of Object.entries(expected)) {
      const img = load(name);
      for (const f of funcs) expect(img.symbols.get(f)?.type, `${name}: ${f}`).toBe("func");
    }
  });

  it("kvstore exports exactly its IPRE_EXPORT functions, in window 1", () => {
    const img = load("kvstore");
    expect(img.exports).toEqual([
      "call_back", "checksum", "kv_count", "kv_insert", "kv_lookup", "remote_fault", "remote_fsbase", "remote_hostcall",
      "remote_spin", "sum64", "vec_scale",
    ]);
    expect(img.exports).not.toContain("kv_secret");
    for (const s of img.segments) {
      expect(s.vaddr).toBeGreaterThanOrEqual(GIB);
      expect(s.vaddr + s.memsz).toBeLessThanOrEqual(2 * GIB);
    }
    expect(img.symbols.get("kv_data_marker")).toMatchObject({ type: "object", section: ".data" });
  });

  it("kvshared exports exactly its IPRE_EXPORT functions, in window 1, with a current syms.ld", () => {
    const img = load("kvshared");
    expect(img.exports).toEqual(["kv_capacity", "kv_clear", "kv_count", "kv_get", "kv_has", "kv_put"]);
    for (const s of img.segments) {
      expect(s.vaddr).toBeGreaterThanOrEqual(GIB);
      expect(s.vaddr + s.memsz).toBeLessThanOrEqual(2 * GIB);
    }
    const syms = readFileSync(`${examples}kvshared.syms.ld`, "utf8");
    for (const name of img.exports) expect(syms).toContain(`${name} = 0x${img.symbols.get(name)!.value.toString(16)}; /* func, exported */`);
  });

  it("kvcaller links against kvstore's addresses (kvstore.syms.ld is current)", () => {
    const caller = load("kvcaller");
    const remote = load("kvstore");
    expect(caller.exports).toEqual([]);
    const syms = readFileSync(`${examples}kvstore.syms.ld`, "utf8");
    for (const name of [...remote.exports, "kv_secret", "kv_data_marker"]) {
      const addr = remote.symbols.get(name)!.value;
      expect(caller.symbols.get(name)?.value, name).toBe(addr);
      expect(syms).toContain(`${name} = 0x${addr.toString(16)};`);
    }
    // The caller's own libc is not redirected into the remote.
    expect(caller.symbols.get("memcpy")!.value).toBeLessThan(GIB);
  });
});
