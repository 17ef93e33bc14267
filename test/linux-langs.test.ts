/**
 * Static Linux programs of several toolchains (Machine.exec, src/linux/) on Node (in this vitest
 * process), Bun and Deno (test/scenarios/linux-langs.ts): musl C, C++ with static libstdc++
 * (an exception thrown and caught inside), Rust std as a static-PIE, and hello.c as a glibc
 * static-PIE; the static-PIEs in window 0 and in window 2. Each prints exactly what it should,
 * exits with its code and makes no unknown syscall.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { collectReports, ReportSet, RUNTIMES } from "./harness.ts";
import { describeKvm } from "./kvm.ts";
import { langsReport, type LangRun, type LangsReport } from "./scenarios/linux-langs.ts";

const argvLines = (name: string) => [`argv[0]=/bin/${name}`, "argv[1]=x", "argv[2]=y"];

/** stdout, stderr and exit code of each program run with argv [/bin/<name>, x, y] and IPRE_WHO=ipre. */
const EXPECTED: Record<string, { stdout: string; stderr: string; exitCode: number }> = {
  // 50 blocks whose byte 99 is i: 0 + … + 49 = 1225.
  "hello-musl": { stdout: ["hello from musl: argc=3", ...argvLines("hello-musl"), "IPRE_WHO=ipre", "sum 1225", ""].join("\n"), stderr: "musl stderr\n", exitCode: 13 },
  "hello-cpp": {
    stdout: ["hello from C++: argc=3", ...argvLines("hello-cpp"), "a=3 b=2 c=1 ", "caught: not a number: 12x", "parsed 42", ""].join("\n"),
    stderr: "C++ stderr\n",
    exitCode: 23,
  },
  "hello-rs": { stdout: ["hello from Rust: argc=3", ...argvLines("hello-rs"), "a=3 b=2 c=1", "sum 4999950000", ""].join("\n"), stderr: "Rust stderr\n", exitCode: 33 },
  // hello.c: see test/linux.test.ts (envc counts IPRE_WHO and LANG).
  "hello-pie": {
    stdout: ["hello from a Linux guest: argc=3 envc=2", ...argvLines("hello-pie"), "IPRE_WHO=ipre", "malloc'd 595000 bytes, sum 4957", ""].join("\n"),
    stderr: "bye from stderr\n",
    exitCode: 6,
  },
};

function expectRun(r: LangRun | undefined, name: string): void {
  expect(r, name).toBeDefined();
  expect(r!.error, `${name}: ${r!.error}\nstderr: ${r!.stderr}\nlast syscalls:\n${r!.tail?.join("\n")}`).toBeUndefined();
  const want = EXPECTED[name]!;
  expect(r!.stdout).toBe(want.stdout);
  expect(r!.stderr).toBe(want.stderr);
  expect(r!.exitCode).toBe(want.exitCode);
  expect(r!.warnings).toEqual([]);
  expect(r!.syscalls.at(-1)).toBe("exit_group");
}

describeKvm("linux: musl, C++ and Rust programs, static and static-PIE", () => {
  let set = new ReportSet<LangsReport>();
  beforeAll(async () => {
    set = await collectReports("test/scenarios/linux-langs.ts", () => [], langsReport, 240_000);
  }, 480_000);

  describe.each(RUNTIMES)("%s", (rt) => {
    it("musl C (static ET_EXEC): stdio, argv, getenv, malloc through musl's start-up", () => {
      const r = set.report(rt);
      expect(r.runtime).toBe(rt);
      expectRun(r.window0["hello-musl"], "hello-musl");
      expect(r.window0["hello-musl"]!.syscalls).toContain("arch_prctl"); // musl sets its own TLS
    });

    it("C++ (g++ -static): STL containers, iostream, an exception thrown and caught", () => {
      expectRun(set.report(rt).window0["hello-cpp"], "hello-cpp");
    });

    it("Rust std (static-PIE, +crt-static): Vec, HashMap, println!, eprintln!, process::exit", () => {
      expectRun(set.report(rt).window0["hello-rs"], "hello-rs");
    });

    it("glibc static-PIE (hello.c, gcc -static-pie) relocates itself in window 0", () => {
      expectRun(set.report(rt).window0["hello-pie"], "hello-pie");
    });

    it("the static-PIEs run in window 2 as well", (ctx) => {
      const r = set.report(rt);
      for (const name of ["hello-rs", "hello-pie"]) {
        // Machine.exec places a static-PIE at its window only once it passes its base to parseElf
        // (src/machine/machine.ts: parseElf(program, { linux: true, base: this.base + ELF_LINK_OFFSET })).
        if (/linked for window 0; this machine is window 2/.test(r.window2[name]?.error ?? "")) ctx.skip(`${name}: this Machine.exec places a static-PIE in window 0 only`);
        expectRun(r.window2[name], name);
      }
    });
  });
});
