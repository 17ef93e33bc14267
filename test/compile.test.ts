/**
 * C source as a program (src/guest/compile.ts, Machine.create({ source })) on Node, Bun and
 * Deno: test/scenarios/compile.ts in a child process per runtime, with IPRE_CC pointing at a
 * wrapper script that counts its runs and IPRE_CACHE_DIR at a fresh directory:
 *  - a remote and a caller compiled from C, connected, called (KVM);
 *  - the same again in a new process: answered by the cache, the compiler never runs;
 *  - a compile error: a CompileError with the compiler's file:line (source.c, or the name given);
 *  - a missing compiler (explicit, and none on PATH): one line naming what to install;
 *  - Deno with the README's flags only: one line naming --allow-run, --allow-env, --allow-write.
 */
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot, runtimeCommand, RUNTIMES, type Runtime } from "./harness.ts";
import { describeKvm, describePure, upperMs } from "./kvm.ts";

const SCRIPT = `${repoRoot}test/scenarios/compile.ts`;
const root = mkdtempSync(join(tmpdir(), "ipre-compile-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const realCc = spawnSync("sh", ["-c", "command -v cc || command -v gcc || command -v clang"], { encoding: "utf8" }).stdout.trim();

interface Dirs {
  dir: string;
  cache: string;
  count: string;
  wrapper: string;
}

/** A directory per runtime: a cache, and a compiler wrapper that appends a line to `count` per run. */
function dirsFor(rt: Runtime): Dirs {
  const dir = join(root, rt);
  mkdirSync(join(dir, "empty"), { recursive: true });
  const d = { dir, cache: join(dir, "cache"), count: join(dir, "count"), wrapper: join(dir, "cc-counting") };
  writeFileSync(d.wrapper, `#!/bin/sh\necho "$*" >> '${d.count}'\nexec '${realCc}' "$@"\n`);
  chmodSync(d.wrapper, 0o755);
  return d;
}

const runs = (d: Dirs) => (existsSync(d.count) ? readFileSync(d.count, "utf8").trim().split("\n").filter(Boolean).length : 0);

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
  json: any;
}

function scenario(rt: Runtime, phase: string, env: NodeJS.ProcessEnv, denoFlags?: string[]): Promise<Result> {
  let [cmd, argv] = runtimeCommand(rt, SCRIPT, [phase]);
  if (rt === "deno" && denoFlags) argv = ["run", ...denoFlags, SCRIPT, phase];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { cwd: repoRoot, env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", DENO_NO_PROMPT: "1", ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    child.stdout.setEncoding("utf8").on("data", (x: string) => (stdout += x));
    child.stderr.setEncoding("utf8").on("data", (x: string) => (stderr += x));
    const timer = setTimeout(() => child.kill("SIGKILL"), upperMs(60_000));
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      let json: unknown;
      try {
        json = JSON.parse(stdout.trimEnd().split("\n").pop() ?? "");
      } catch {
        json = undefined;
      }
      resolve({ code, stdout, stderr, json });
    });
  });
}

/** The environment of a run: this one's, with the counting compiler and the runtime's cache. */
const envFor = (d: Dirs): NodeJS.ProcessEnv => ({ ...process.env, IPRE_CC: d.wrapper, IPRE_CACHE_DIR: d.cache });

describePure("compile(): errors, on Node, Bun and Deno (no KVM needed)", () => {
  const results = new Map<string, Result>();
  beforeAll(async () => {
    expect(realCc, "a C compiler on PATH").not.toBe("");
    await Promise.all(RUNTIMES.map(async (rt) => {
      const d = dirsFor(rt);
      results.set(`${rt}:errors`, await scenario(rt, "errors", envFor(d)));
      // No IPRE_CC and nothing on PATH.
      const { IPRE_CC: _, ...rest } = envFor(d);
      results.set(`${rt}:nocc`, await scenario(rt, "nocc", { ...rest, PATH: join(d.dir, "empty") }));
    }));
    results.set("deno:denied", await scenario("deno", "denied", envFor(dirsFor("deno")), ["--allow-ffi", "--allow-read"]));
  }, upperMs(120_000));

  describe.each(RUNTIMES)("%s", (rt) => {
    const get = (phase: string) => {
      const r = results.get(`${rt}:${phase}`)!;
      expect(r.code, r.stderr).toBe(0);
      return r.json;
    };
    it("a compile error is a CompileError carrying the compiler's messages with file:line (source.c, or the name given)", () => {
      const { error, named } = get("errors");
      expect(error).toMatchObject({ threw: true, typed: true, name: "CompileError", reason: "error" });
      expect(error.message).toMatch(/^source\.c:3:\d+: error: /);
      expect(error.diagnostics[0]).toMatchObject({ file: "source.c", line: 3, severity: "error" });
      expect(error.output).toContain("source.c:3:");
      expect(named.message).toMatch(/^experiment\.c:3:\d+: error: /);
      // Machine.create({ name, source }): the messages name the machine's source; no VM was made.
      expect(get("errors").machine).toMatchObject({ threw: true, typed: true, reason: "error", message: expect.stringMatching(/^store\.c:3:\d+: error: /) });
    });
    it("a missing compiler is one line naming what to install (an explicit cc, and none on PATH)", () => {
      const { missing } = get("errors");
      expect(missing).toMatchObject({ threw: true, typed: true, reason: "no-compiler" });
      expect(missing.message).toContain("/nonexistent/bin/cc");
      const { error } = get("nocc");
      expect(error).toMatchObject({ threw: true, typed: true, reason: "no-compiler" });
      for (const m of [missing.message, error.message]) {
        expect(m).not.toContain("\n");
        expect(m).toContain("apt-get install gcc");
        expect(m).toContain("dnf install gcc");
        expect(m).toContain("IPRE_CC");
      }
      expect(error.message).toMatch(/cc, gcc or clang/);
    });
  });

  it("Deno with --allow-ffi --allow-read only: one line naming --allow-run, --allow-env and --allow-write", () => {
    const r = results.get("deno:denied")!;
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.error).toMatchObject({ threw: true, typed: true, reason: "permission" });
    expect(r.json.error.message).toContain("--allow-run --allow-env --allow-write");
    expect(r.json.error.message).not.toContain("\n");
  });
});

describeKvm("compile(): C source as a program, cached, on Node, Bun and Deno", () => {
  const results = new Map<string, { build: Result; rebuild: Result; before: number; after: number; files: string[] }>();
  beforeAll(async () => {
    for (const rt of RUNTIMES) {
      const d = dirsFor(rt);
      rmSync(d.cache, { recursive: true, force: true });
      rmSync(d.count, { force: true });
      const build = await scenario(rt, "build", envFor(d));
      const before = runs(d);
      const rebuild = await scenario(rt, "rebuild", envFor(d));
      results.set(rt, { build, rebuild, before, after: runs(d), files: existsSync(d.cache) ? readdirSync(d.cache) : [] });
    }
  }, upperMs(180_000));

  describe.each(RUNTIMES)("%s", (rt) => {
    it("Machine.create({ source }): a C remote and a C caller linked against it, connected, called", () => {
      const r = results.get(rt)!;
      expect(r.build.code, r.build.stderr).toBe(0);
      expect(r.build.json.result).toBe(42);
      // The compiler ran: its --version once, then the remote and the caller.
      expect(r.before).toBe(3);
    });
    it("a second process is answered by the cache: the compiler does not run", () => {
      const r = results.get(rt)!;
      expect(r.rebuild.code, r.rebuild.stderr).toBe(0);
      expect(r.rebuild.json.result).toBe(42);
      expect(r.after).toBe(r.before);
      console.log(`${rt}: two machines from C in ${r.build.json.ms.toFixed(0)} ms compiled, ${r.rebuild.json.ms.toFixed(1)} ms cached`);
    });
    it("the cache holds the two ELFs and the compiler's version, written atomically (no temporary file left)", () => {
      const r = results.get(rt)!;
      expect(r.files.filter((f) => f.endsWith(".elf"))).toHaveLength(2);
      expect(r.files).toContain("compilers");
      expect(r.files.filter((f) => f.endsWith(".tmp"))).toEqual([]);
    });
  });
});
