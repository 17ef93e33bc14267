/**
 * The README's usage snippet is real code: extract it and run it on Node (the compiled package,
 * resolved by its own name), Bun (TypeScript sources) and Deno (deno.json maps "ipre").
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ensureDist } from "./cli-run.ts";
import { describeKvm } from "./kvm.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const DIR = `${ROOT}test/.readme`;

function snippet(name: string): string {
  const readme = readFileSync(`${ROOT}README.md`, "utf8");
  const m = readme.match(new RegExp(`<!-- snippet: ${name} -->\\s*\`\`\`ts\\n([\\s\\S]*?)\`\`\``));
  if (!m) throw new Error(`README has no snippet "${name}"`);
  return m[1]!;
}

function run(cmd: string, args: string[]): { code: number | null; stdout: string; stderr: string } {
  // IPRE_CACHE_DIR: the C snippet's compile cache, not the user's ~/.cache/ipre/cc.
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: "utf8", env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", IPRE_CACHE_DIR: `${DIR}/cc-cache` } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describeKvm("README quickstart snippet", () => {
  beforeAll(() => {
    mkdirSync(DIR, { recursive: true });
    const code = snippet("quickstart");
    writeFileSync(`${DIR}/quickstart.ts`, code);
    writeFileSync(`${DIR}/quickstart.mjs`, code);
    // Node runs the compiled package (dist/), as an installed user would: built unless fresh
    // (under TCG a needless tsc costs minutes).
    ensureDist();
  });
  afterAll(() => rmSync(DIR, { recursive: true, force: true }));

  const expected = ["42", "71"];
  it("runs on Node", () => {
    const r = run(process.execPath, [`${DIR}/quickstart.mjs`]);
    expect(r.stderr).toBe("");
    expect(r.stdout.trim().split("\n")).toEqual(expected);
  });
  it("runs on Bun", () => {
    const r = run(`${ROOT}node_modules/.bin/bun`, [`${DIR}/quickstart.ts`]);
    expect(r.stdout.trim().split("\n")).toEqual(expected);
  });
  it("runs on Deno", () => {
    const r = run(`${ROOT}node_modules/.bin/deno`, ["run", "--allow-all", `${DIR}/quickstart.ts`]);
    expect(r.stdout.trim().split("\n")).toEqual(expected);
  });
});

/** "C source as a program": two C snippets compiled, connected, called and timed, on each runtime. */
describeKvm("README C-source snippet (c-experiment)", () => {
  beforeAll(() => {
    mkdirSync(DIR, { recursive: true });
    const code = snippet("c-experiment");
    writeFileSync(`${DIR}/c-experiment.ts`, code);
    writeFileSync(`${DIR}/c-experiment.mjs`, code);
    ensureDist();
  });
  afterAll(() => rmSync(DIR, { recursive: true, force: true }));

  const check = (r: { code: number | null; stdout: string; stderr: string }) => {
    expect(r.code, r.stderr).toBe(0);
    const [sum, timing, ...rest] = r.stdout.trim().split("\n");
    expect(sum).toBe("332833500");
    expect(timing).toMatch(/^\d+\.\d µs per remote call$/);
    expect(rest).toEqual([]);
  };
  it("runs on Node", () => {
    const r = run(process.execPath, [`${DIR}/c-experiment.mjs`]);
    expect(r.stderr).toBe("");
    check(r);
  });
  it("runs on Bun", () => check(run(`${ROOT}node_modules/.bin/bun`, [`${DIR}/c-experiment.ts`])));
  it("runs on Deno", () => check(run(`${ROOT}node_modules/.bin/deno`, ["run", "--allow-all", `${DIR}/c-experiment.ts`])));
});
