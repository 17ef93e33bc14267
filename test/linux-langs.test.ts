/**
 * Static Linux programs of several toolchains (Machine.exec, src/linux/) on Node (in this vitest
 * process), Bun and Deno (test/scenarios/linux-langs.ts): musl C, C++ with static libstdc++
 * (an exception thrown and caught inside), Rust std as a static-PIE, and hello.c as a glibc
 * static-PIE; the static-PIEs in window 0 and in window 2. Each prints exactly what it should,
 * exits with its code and makes no unknown syscall.
 */
import { expect, it } from "vitest";
import { describeScenario } from "./harness.ts";
import { langsReport, type LangRun } from "./scenarios/linux-langs.ts";

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

describeScenario("linux: musl, C++ and Rust programs, static and static-PIE", { script: "test/scenarios/linux-langs.ts", report: langsReport, timeoutMs: 240_000 }, (rt, get) => {
    it("musl C (static ET_EXEC): stdio, argv, getenv, malloc through musl's start-up", () => {
      const r = get();
      expect(r.runtime).toBe(rt);
      expectRun(r.window0["hello-musl"], "hello-musl");
      expect(r.window0["hello-musl"]!.syscalls).toContain("arch_prctl"); // musl sets its own TLS
    });

    it("C++ (g++ -static): STL containers, iostream, an exception thrown and caught", () => {
      expectRun(get().window0["hello-cpp"], "hello-cpp");
    });

    it("Rust std (static-PIE, +crt-static): Vec, HashMap, println!, eprintln!, process::exit", () => {
      expectRun(get().window0["hello-rs"], "hello-rs");
    });

    it("glibc static-PIE (hello.c, gcc -static-pie) relocates itself in window 0", () => {
      expectRun(get().window0["hello-pie"], "hello-pie");
    });

    it("the static-PIEs run in window 2 as well", () => {
      const r = get();
      // Machine.exec places a static-PIE at its own window (parseElf with the window's base).
      for (const name of ["hello-rs", "hello-pie"]) expectRun(r.window2[name], name);
    });
});
