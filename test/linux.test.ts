/**
 * Static Linux programs (Machine.exec, src/linux/) on Node (in this vitest process), Bun and Deno
 * (test/scenarios/linux.ts): guests/linux/hello.elf, a glibc `gcc -static` program, runs to exit
 * with argv/env and its output in sinks; one exit per syscall; an unknown syscall gives ENOSYS
 * and exactly one warning; user handlers override; reset() and exec again.
 */
import { expect, it } from "vitest";
import { describeScenario } from "./harness.ts";
import { linuxReport } from "./scenarios/linux.ts";

/** 100 blocks of 1000 + 100 i bytes; the last bytes sum to 0 + … + 99, plus 7 from the 1 MiB block. */
const PLAIN = [
  "hello from a Linux guest: argc=3 envc=2",
  "argv[0]=/bin/hello",
  "argv[1]=a",
  "argv[2]=b",
  "IPRE_WHO=ipre",
  "malloc'd 595000 bytes, sum 4957",
  "",
].join("\n");

describeScenario("linux: static glibc programs run with a TypeScript syscall layer", { script: "test/scenarios/linux.ts", report: linuxReport, timeoutMs: 120_000 }, (rt, get) => {
    it("runs main() to exit: stdout, stderr, exit code 3 + argc, one exit per syscall", () => {
      const r = get();
      expect(r.runtime).toBe(rt);
      expect(r.plain.error, `${r.plain.error}\nstderr: ${r.plain.stderr}\nlast syscalls:\n${r.plain.tail?.join("\n")}\ncpuid:\n${r.cpuid?.join("\n")}`).toBeUndefined();
      expect(r.plain.stdout).toBe(PLAIN);
      expect(r.plain.stderr).toBe("bye from stderr\n");
      expect(r.plain.exitCode).toBe(6);
      expect(r.plain.warnings).toEqual([]);
      // glibc's start-up: TLS through arch_prctl, brk for the heap, mmap for the 1 MiB block, exit_group.
      expect(r.plain.syscalls).toContain("arch_prctl");
      expect(r.plain.syscalls).toContain("brk");
      expect(r.plain.syscalls).toContain("mmap");
      expect(r.plain.syscalls.at(-1)).toBe("exit_group");
      expect(r.plain.exits).toBe(r.plain.syscalls.length);
    });

    it("an unknown syscall returns -ENOSYS and warns exactly once, by name", () => {
      const r = get();
      expect(r.enosys.error, `${r.enosys.error}\nstderr: ${r.enosys.stderr}\nlast syscalls:\n${r.enosys.tail?.join("\n")}`).toBeUndefined();
      expect(r.enosys.stdout).toContain("argc=2 ");
      expect(r.enosys.stdout).toContain("syscall(999)=-1 errno=38 again=-1\n");
      expect(r.enosys.warnings).toEqual(["syscall_999:999"]);
      expect(r.enosys.exitCode).toBe(5);
    });

    it("a user handler overrides a syscall number", () => {
      const r = get();
      expect(r.override.error, `${r.override.error}\nstderr: ${r.override.stderr}`).toBeUndefined();
      expect(r.override.stdout).toMatch(/syscall\(999\)=42 errno=\d+ again=42\n/);
      expect(r.override.warnings).toEqual([]);
      expect(r.override.exitCode).toBe(5);
    });

    it("abort() is a LinuxProgramError with SIGABRT and what the program wrote to stderr", () => {
      const r = get();
      expect(r.abort).toMatchObject({ name: "LinuxProgramError", signal: 6 });
      expect((r.abort as { message: string }).message).toContain("giving up");
    });

    it("the PVM route on every flavour: a ring-3 jump to LSTAR with RCX/R11 set is a syscall; resume at RCX, RFLAGS from R11 less IOPL", () => {
      const r = get().pvmRoute;
      expect(r.error, `${r.error}\n${r.tail?.join("\n")}`).toBeUndefined();
      expect(r.stdout).toBe("pvm route\nvia syscall\n");
      expect(r.exitCode).toBe(0); // no bit set: result, CF and IOPL as Linux's sysret gives them
      expect(r.syscalls).toEqual(["write", "write", "exit_group"]);
      expect(r.exits).toBe(3); // one exit per syscall on either route
    });

    it("execs again on the same machine after reset() (also after an abort)", () => {
      const r = get();
      expect(r.again).toHaveLength(2);
      for (const a of r.again) {
        expect(a.stdout).toBe(PLAIN);
        expect(a.exitCode).toBe(6);
        expect(a.syscalls).toEqual(r.plain.syscalls);
      }
    });
});
