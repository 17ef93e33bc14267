import { spawnSync } from "node:child_process";
import { describe, expect, test } from "vitest";
import { LibcLoadError } from "../src/errors.ts";
import { LIBC_ENV, LIBC_PATH, loadLibc } from "../src/ffi/index.ts";
import { repoRoot, runtimeCommand, type ScenarioRuntime } from "./harness.ts";
import type { LibcLoadReport } from "./scenarios/libc-load.ts";

const SCENARIO = "test/scenarios/libc-load.ts";
const MISSING = "/nonexistent/ipre-test/libc-missing.so.6";

/** Runs the scenario on `runtime` with `env` added; `argv` replaces the runtime's own flags. */
function run(runtime: ScenarioRuntime, env: Record<string, string>, argv?: string[]): LibcLoadReport {
  const [command, args] = runtimeCommand(runtime, SCENARIO);
  const res = spawnSync(command, argv ?? args, {
    cwd: repoRoot,
    env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", DENO_NO_PROMPT: "1", ...env },
    encoding: "utf8",
    timeout: 60_000,
  });
  const line = res.stdout.trim().split("\n").at(-1) ?? "";
  expect(res.status, res.stderr).toBe(0);
  return JSON.parse(line) as LibcLoadReport;
}

describe("a libc that cannot be opened gives a LibcLoadError with a hint", () => {
  test("in process on Node: loadLibc with a missing path", () => {
    let caught: unknown;
    try {
      loadLibc("node", MISSING);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(LibcLoadError);
    const e = caught as LibcLoadError;
    expect(e.library).toBe(MISSING);
    expect(e.runtime).toBe("node");
    expect(e.cause).toBeInstanceOf(Error);
    expect(e.message).toContain(`cannot load ${MISSING} through koffi on Node`);
  });

  test.each(["node", "bun", "deno"] as const)(`on %s, through ${LIBC_ENV}`, (runtime) => {
    const r = run(runtime, { [LIBC_ENV]: MISSING });
    expect(r).toMatchObject({ ok: false, runtime, name: "LibcLoadError", isIpreError: true, isLibcLoadError: true, library: MISSING, errorRuntime: runtime, sameOnRetry: true });
    // The hint names the override and what to use instead, on glibc and on musl.
    expect(r.hint).toContain(`${LIBC_ENV}=${MISSING} is set`);
    expect(r.hint).toContain(LIBC_PATH);
    expect(r.hint).toContain("musl");
    expect(r.message).toContain(`cannot load ${MISSING} through`);
    expect(r.message).toContain(r.hint);
  });

  test.each(["node", "bun", "deno"] as const)("on %s, the default library loads", (runtime) => {
    const r = run(runtime, {});
    expect(r.ok).toBe(true);
    expect(r.runtime).toBe(runtime);
  });

  test("on Deno without --allow-ffi the hint names the permission", () => {
    const r = run("deno", {}, ["run", "--allow-read", SCENARIO]);
    expect(r).toMatchObject({ ok: false, name: "LibcLoadError", library: LIBC_PATH, errorRuntime: "deno", sameOnRetry: true });
    expect(r.hint).toContain("--allow-ffi");
  });
});
