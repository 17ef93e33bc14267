/**
 * `ipre exec <program> [args...]` on Node (the compiled bin/ipre.js), Bun and Deno (src/cli.ts),
 * against the real /dev/kvm: the C (glibc), C++ and Rust hellos print their text and the program's
 * exit code is the CLI's; argv is [program as given, ...args] (a program's `--flags` and `-h`
 * are its own), the environment is the process's; an abort is one line on stderr and 134.
 * Also `ipre run` with Linux programs: a caller and a --remote are started before the call.
 * In the style of test/cli.test.ts (all commands start in beforeAll, a few at a time).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { ensureDist, runCli, type CliResult } from "./cli-run.ts";
import { parseExecArgs } from "../src/cli.ts";
import { RUNTIMES, type Runtime } from "./harness.ts";
import { describeKvm, describePure, upperMs } from "./kvm.ts";

describePure("parseExecArgs: options end at the program", () => {
  it("options before the program are ipre's, every word after it the program's", () => {
    const f = parseExecArgs(["--timeout", "5", "--memory=8", "prog", "--timeout", "1", "-h", "--", "x"]);
    expect(f.positional).toEqual(["prog", "--timeout", "1", "-h", "--", "x"]);
    expect([...f.options]).toEqual([["timeout", "5"], ["memory", "8"]]);
  });
  it("a bare -- ends the options (a program whose name starts with --); -h before the program is help", () => {
    expect(parseExecArgs(["--", "--odd", "a"]).positional).toEqual(["--odd", "a"]);
    expect(parseExecArgs(["-h"]).options.get("help")).toBe(true);
  });
  it("an unknown option or a missing value is kept for checkOptions and the option readers to refuse", () => {
    expect([...parseExecArgs(["--bogus", "prog"]).options]).toEqual([["bogus", true]]);
    expect(parseExecArgs(["--bogus", "prog"]).positional).toEqual(["prog"]);
    expect([...parseExecArgs(["--timeout"]).options]).toEqual([["timeout", true]]);
  });
});

const CASES = {
  c: ["exec", "guests/linux/hello.elf", "a", "--foo"],
  cpp: ["exec", "--timeout", "60000", "guests/linux/hello-cpp.elf", "--memory", "1"],
  rust: ["exec", "guests/linux/hello-rs.elf", "-h", "--help", "x"],
  abort: ["exec", "guests/linux/hello.elf", "abort"],
  // ipre run with Linux programs: started first (main to ipre_wait_for_requests()), then called
  runPair: ["run", "guests/linux/libc-bench.elf", "call_remote_n", "3", "--remote", "guests/linux/counter.elf"],
  runJson: ["run", "guests/linux/counter.elf", "counter_add", "5", "--json"],
  runUnconnected: ["run", "guests/linux/libc-bench.elf", "call_remote_n", "3"],
  waits: ["exec", "guests/linux/counter.elf"],
} as const;
type Case = keyof typeof CASES;

describeKvm("ipre exec on Node, Bun and Deno", () => {
  const results = new Map<string, CliResult>();
  beforeAll(async () => {
    ensureDist();
    const jobs = RUNTIMES.flatMap((rt) => (Object.keys(CASES) as Case[]).map((c) => async () => results.set(`${rt}:${c}`, await runCli(rt, [...CASES[c]], { env: { IPRE_WHO: `cli-${rt}` } }))));
    let next = 0;
    await Promise.all(Array.from({ length: 3 }, async () => {
      while (next < jobs.length) await jobs[next++]!();
    }));
  }, upperMs(300_000));
  const res = (rt: Runtime, c: Case): CliResult => results.get(`${rt}:${c}`)!;
  const detail = (r: CliResult) => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

  describe.each(RUNTIMES)("%s", (rt) => {
    it("C (glibc): argv as given, a program's --flag is its own, the process's environment, exit 3 + argc", () => {
      const r = res(rt, "c");
      expect(r.code, detail(r)).toBe(6);
      expect(r.stdout).toMatch(/^hello from a Linux guest: argc=3 envc=\d+\n/);
      expect(r.stdout).toContain("argv[0]=guests/linux/hello.elf\nargv[1]=a\nargv[2]=--foo\n");
      expect(r.stdout).toContain(`IPRE_WHO=cli-${rt}\n`);
      expect(r.stderr).toBe("bye from stderr\n");
    });

    it("C++: iostream output and the caught exception; options before the program are ipre's, after it the program's", () => {
      const r = res(rt, "cpp");
      expect(r.code, detail(r)).toBe(23);
      expect(r.stdout).toBe("hello from C++: argc=3\nargv[0]=guests/linux/hello-cpp.elf\nargv[1]=--memory\nargv[2]=1\na=3 b=2 c=1 \ncaught: not a number: 12x\nparsed 42\n");
      expect(r.stderr).toBe("C++ stderr\n");
    });

    it("Rust: println!/eprintln! and process::exit's code; -h after the program is the program's", () => {
      const r = res(rt, "rust");
      expect(r.code, detail(r)).toBe(34);
      expect(r.stdout).toBe("hello from Rust: argc=4\nargv[0]=guests/linux/hello-rs.elf\nargv[1]=-h\nargv[2]=--help\nargv[3]=x\na=3 b=2 c=1\nsum 4999950000\n");
      expect(r.stderr).toBe("Rust stderr\n");
    });

    it("abort(): the program's stderr, then one line naming LinuxProgramError and SIGABRT, exit 134", () => {
      const r = res(rt, "abort");
      expect(r.code, detail(r)).toBe(134);
      const lines = r.stderr.trimEnd().split("\n");
      expect(lines[0]).toBe("giving up");
      expect(lines.slice(1)).toHaveLength(1);
      expect(lines[1]).toMatch(/^ipre: LinuxProgramError: .*signal 6 \(SIGABRT: abort\(\)\)/);
    });

    it("run: a Linux caller with a Linux --remote, both started; the caller's function calls the remote", () => {
      const r = res(rt, "runPair");
      expect(r.stderr, detail(r)).toBe("");
      expect(r.stdout).toBe("counter: ready\n6\n"); // counter's main printed; counter_calls is 2 after main: 3 calls sum to 6
      expect(r.code).toBe(0);
    });

    it("run --json: stdout is the JSON document alone, the program prints to stderr", () => {
      const r = res(rt, "runJson");
      expect(r.code, detail(r)).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ elf: "guests/linux/counter.elf", function: "counter_add", args: ["5"], result: "5", window: 1 });
      expect(r.stderr).toBe("counter: ready\n");
    });

    it("exec of a program that waits for requests: its output, a note naming ipre run, exit 0", () => {
      const r = res(rt, "waits");
      expect(r.code, detail(r)).toBe(0);
      expect(r.stdout).toBe("counter: ready\n");
      expect(r.stderr).toBe("ipre: guests/linux/counter.elf called ipre_wait_for_requests(): it serves calls (ipre run guests/linux/counter.elf <function> calls one)\n");
    });

    it("run: a caller whose main exits non-zero (no remote to find) is a one-line error, exit 1", () => {
      const r = res(rt, "runUnconnected");
      expect(r.code, detail(r)).toBe(1);
      expect(r.stderr).toBe("libc-bench: connect counter.elf (window 1) before starting\nipre: IpreError: guests/linux/libc-bench.elf exited with code 1 before call_remote_n was called (a program that serves calls calls ipre_wait_for_requests())\n");
    });
  });
});
