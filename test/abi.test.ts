/**
 * src/kvm/abi.ts against the kernel's own headers, as rust-vmm/kvm-bindings tests its layouts: a
 * tiny C program compiled with the machine's cc against <linux/kvm.h> prints sizeof/offsetof of
 * every struct and field abi.ts uses, every ioctl number and constant, and the test compares them
 * with abi.ts. Needs no KVM; it skips (visibly) only where no C compiler or no kernel headers exist
 * (Debian: gcc, linux-libc-dev), and .ci/run runs it where both come with the machine.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CAP, CPUID_ENTRY, DTABLE, EXIT, KVM, MEMORY_REGION, MSR_ENTRY, REGS, RUN, SEGMENT, SIZEOF, SREGS, SYNC, MEM_READONLY } from "../src/kvm/abi.ts";

const CC = process.env.CC ?? "cc";
const missing = (() => {
  if (spawnSync(CC, ["--version"]).status !== 0) return `no C compiler (${CC}; apt-get install gcc)`;
  const probe = spawnSync(CC, ["-E", "-x", "c", "-"], { input: "#include <linux/kvm.h>\n" });
  return probe.status !== 0 ? "no <linux/kvm.h> (apt-get install linux-libc-dev)" : undefined;
})();

/** Each check: the name shown on failure, abi.ts's value, and the C expression that must equal it. */
type Check = [name: string, ours: number, c: string];

function checks(): Check[] {
  const out: Check[] = [];
  for (const [k, v] of Object.entries(SIZEOF)) out.push([`sizeof(struct ${k})`, v, `sizeof(struct ${k})`]);
  for (const [k, v] of Object.entries(KVM)) out.push([`KVM_${k}`, v, `KVM_${k}`]);
  for (const [k, v] of Object.entries(CAP)) out.push([`KVM_CAP_${k}`, v, `KVM_CAP_${k}`]);
  for (const [k, v] of Object.entries(EXIT)) out.push([`KVM_EXIT_${k}`, v, `KVM_EXIT_${k}`]);
  for (const [k, v] of Object.entries(SYNC)) out.push([`KVM_SYNC_X86_${k}`, v, `KVM_SYNC_X86_${k}`]);
  out.push(["KVM_MEM_READONLY", MEM_READONLY, "KVM_MEM_READONLY"]);
  // struct kvm_run: abi.ts names the union members flat (io_port is io.port, ...).
  const run: Record<keyof typeof RUN, string> = {
    request_interrupt_window: "request_interrupt_window",
    immediate_exit: "immediate_exit",
    exit_reason: "exit_reason",
    io_direction: "io.direction",
    io_size: "io.size",
    io_port: "io.port",
    io_count: "io.count",
    io_data_offset: "io.data_offset",
    fail_entry_reason: "fail_entry.hardware_entry_failure_reason",
    internal_suberror: "internal.suberror",
    kvm_valid_regs: "kvm_valid_regs",
    kvm_dirty_regs: "kvm_dirty_regs",
    sync_regs: "s.regs.regs",
    sync_sregs: "s.regs.sregs",
  };
  for (const [k, field] of Object.entries(run)) out.push([`kvm_run.${field}`, RUN[k as keyof typeof RUN], `offsetof(struct kvm_run, ${field})`]);
  const fields = (struct: string, table: Record<string, number>) => {
    for (const [k, v] of Object.entries(table)) out.push([`${struct}.${k}`, v, `offsetof(struct ${struct}, ${k})`]);
  };
  fields("kvm_regs", REGS);
  fields("kvm_sregs", SREGS);
  fields("kvm_segment", SEGMENT);
  fields("kvm_dtable", DTABLE);
  fields("kvm_userspace_memory_region", MEMORY_REGION);
  fields("kvm_cpuid_entry2", CPUID_ENTRY);
  fields("kvm_msr_entry", MSR_ENTRY);
  return out;
}

/** Compile and run the C side; its answer for each check, in order. */
function fromHeaders(list: Check[]): bigint[] {
  const dir = mkdtempSync(join(tmpdir(), "ipre-abi-"));
  try {
    const src = [
      "#include <stdio.h>",
      "#include <stddef.h>",
      "#include <linux/kvm.h>",
      "int main(void) {",
      ...list.map(([, , c]) => `  printf("%llu\\n", (unsigned long long)(${c}));`),
      "  return 0;",
      "}",
    ].join("\n");
    writeFileSync(join(dir, "abi.c"), src);
    execFileSync(CC, ["-o", join(dir, "abi"), join(dir, "abi.c")], { stdio: ["ignore", "ignore", "pipe"] });
    return execFileSync(join(dir, "abi"), { encoding: "utf8" }).trim().split("\n").map((l) => BigInt(l));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe(`src/kvm/abi.ts matches <linux/kvm.h>${missing ? ` [skipped: ${missing}]` : ""}`, () => {
  it.skipIf(missing !== undefined)("every struct size, field offset, ioctl number and constant abi.ts uses", () => {
    const list = checks();
    const c = fromHeaders(list);
    expect(c).toHaveLength(list.length);
    const wrong = list.flatMap(([name, ours], i) => (BigInt(ours) === c[i] ? [] : [`${name}: abi.ts ${ours}, <linux/kvm.h> ${c[i]}`]));
    expect(wrong).toEqual([]);
    expect(list.length).toBeGreaterThan(100); // the tables were all walked
  });
});
