/**
 * The README's Install section, as a new user follows it: `npm pack` this checkout into an empty
 * scratch app, install the tarball with the README's command, then run the section's commands on
 * Node, Bun and Deno, exactly as written there (they are read from the README; only `demo` is
 * swapped for `doctor --json` where a step must work without KVM).
 *
 * Without KVM: the install itself, what the package holds, `ipre doctor` through each runtime's
 * command, the claims about `bunx` and Deno, and the import on each runtime (ESM, CommonJS, Bun,
 * Deno) up to the first KVM call. With KVM (natively, or in the nested harness): the section's
 * demo commands and its app snippets.
 *
 * The install needs koffi from the npm registry or npm's cache: the nested harness has no network,
 * so there it installs with `--offline`, from the cache that a native run (`npm test`) filled.
 *
 * A split CI run (.ci/run, IPRE_TEST_PART) installs once: its native part installs into
 * IPRE_INSTALL_APP and keeps the app there; its KVM part, in the nested harness, runs the demo and
 * the snippets from that app instead of packing and installing again under TCG, where npm is
 * ~40x slower (the installed bytes are the same). The app is used only if what it was packed from
 * is still there byte for byte: a digest of src/, dist/, bin/, guests/ and package.json, kept
 * beside it (not modification times: `npm run test:nested` rebuilds dist/ with the same bytes).
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { newest } from "./cli-run.ts";
import { repoRoot } from "./harness.ts";
import { describeKvm, describePure, HAVE_KVM, NESTED, TEST_PART, upperMs } from "./kvm.ts";

const README = readFileSync(`${repoRoot}README.md`, "utf8");
/** The Install section only: every command below is read from it. */
const INSTALL = (() => {
  const start = README.indexOf("\n## Install\n");
  if (start < 0) throw new Error('README has no "## Install" section');
  const end = README.indexOf("\n## ", start + 1);
  return README.slice(start, end < 0 ? undefined : end);
})();

/** The lines of the ```sh block after `<!-- install: NAME -->`, without their `# comments`. */
function commands(name: string): string[] {
  const m = INSTALL.match(new RegExp(`<!-- install: ${name} -->\\s*\`\`\`sh\\n([\\s\\S]*?)\`\`\``));
  if (!m) throw new Error(`README Install has no "install: ${name}" block`);
  return m[1]!.split("\n").map((l) => l.replace(/\s+#.*$/, "").trim()).filter(Boolean);
}

/** The code block after `<!-- snippet: NAME -->`. */
function snippet(name: string): string {
  const m = INSTALL.match(new RegExp(`<!-- snippet: ${name} -->\\s*\`\`\`(?:js|ts)\\n([\\s\\S]*?)\`\`\``));
  if (!m) throw new Error(`README Install has no "snippet: ${name}" block`);
  return m[1]!;
}

/** The one command of `block` that starts with `prefix`. */
function command(block: string, prefix: string): string {
  const found = commands(block).filter((c) => c.startsWith(prefix));
  if (found.length !== 1) throw new Error(`README "install: ${block}" has ${found.length} commands starting with "${prefix}"`);
  return found[0]!;
}

/** An inline `code` span of the Install section that starts with `prefix`. */
function inline(prefix: string): string {
  const prose = INSTALL.replace(/```[\s\S]*?```/g, "");
  const m = [...prose.matchAll(/`([^`]+)`/g)].map((x) => x[1]!.replace(/\s+/g, " ")).find((c) => c.startsWith(prefix));
  if (!m) throw new Error(`README Install has no inline command starting with "${prefix}"`);
  return m;
}

const VERSION = (JSON.parse(readFileSync(`${repoRoot}package.json`, "utf8")) as { version: string }).version;
const NPM_INSTALL = command("npm", "npm install ./");
const CLI = { node: command("cli", "npx "), bun: command("cli", "bunx "), deno: command("cli", "deno ") };
const BACKEND = { node: /^koffi /, bun: /^bun:ffi /, deno: /^Deno\.dlopen / };

let app = "";
/** Where a split run keeps the installed app between its two parts (see the top). */
const SHARED_APP = process.env.IPRE_INSTALL_APP || undefined;
const INSTALLED = ".ipre-installed";

/**
 * The child's environment: none of the npm_* variables of the `npm test` that runs vitest (an
 * inherited npm_config_local_prefix would point npm at this checkout), the checkout's Bun and Deno
 * on PATH (as a user would have them), and npm offline in the nested harness (no network there).
 */
function env(): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k) && k !== "INIT_CWD") e[k] = v;
  return {
    ...e,
    PATH: `${repoRoot}node_modules/.bin:${process.env.PATH ?? ""}`,
    NO_COLOR: "1",
    DENO_NO_UPDATE_CHECK: "1",
    DENO_NO_PROMPT: "1",
    // C compiled by the app goes to a cache in the scratch app, not the user's ~/.cache/ipre/cc.
    ...(app ? { IPRE_CACHE_DIR: `${app}/cc-cache` } : {}),
    npm_config_audit: "false",
    npm_config_fund: "false",
    npm_config_update_notifier: "false",
    ...(NESTED ? { npm_config_offline: "true" } : { npm_config_prefer_offline: "true" }),
  };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The last stdout line. */
  last: string;
}

/** Runs a README command line with `sh -c` in the scratch app (or `cwd`). */
function sh(line: string, cwd = app, limitMs = 60_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn("sh", ["-c", line], { cwd, env: env(), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), upperMs(limitMs));
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, last: stdout.trimEnd().split("\n").pop() ?? "" });
    });
  });
}

/** A digest of what the tarball is packed from: every file of src/, dist/, bin/, guests/ and package.json, by path and content. */
function packedDigest(): string {
  const hash = createHash("sha256");
  const add = (rel: string) => {
    const p = `${repoRoot}${rel}`;
    if (statSync(p).isDirectory()) {
      for (const e of readdirSync(p).sort()) add(`${rel}/${e}`);
    } else {
      hash.update(`${rel}\0`).update(readFileSync(p)).update("\0");
    }
  };
  for (const d of ["src", "dist", "bin", "guests", "package.json"]) add(d);
  return hash.digest("hex");
}

/** Bytes under a directory (recursive, symlinks not followed). */
function size(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    n += e.isDirectory() ? size(p) : e.isFile() ? statSync(p).size : 0;
  }
  return n;
}

beforeAll(async () => {
  if (SHARED_APP && TEST_PART === "kvm" && existsSync(`${SHARED_APP}/${INSTALLED}`)) {
    if (readFileSync(`${SHARED_APP}/${INSTALLED}`, "utf8") === packedDigest()) {
      app = SHARED_APP;
      return;
    }
  }
  // The tarball takes dist/ as it is: build it unless it is newer than every source (`npm test`
  // and `npm run test:nested` have just built it), then pack without the prepare script.
  if (!existsSync(`${repoRoot}dist/mod.js`) || newest(`${repoRoot}dist`) < newest(`${repoRoot}src`)) {
    const tsc = await sh(`"${process.execPath}" node_modules/typescript/bin/tsc -p tsconfig.json`, repoRoot, 180_000);
    if (tsc.code !== 0) throw new Error(`tsc failed:\n${tsc.stdout}${tsc.stderr}`);
  }
  // Not under /dev: Deno wants --allow-all for any path there, and the nested harness sets
  // TMPDIR=/dev/shm (its /tmp is the host's, over 9p, where npm works too).
  if (SHARED_APP) {
    rmSync(SHARED_APP, { recursive: true, force: true });
    mkdirSync(SHARED_APP, { recursive: true });
  }
  app = SHARED_APP ?? mkdtempSync(join(tmpdir().startsWith("/dev/") ? "/tmp" : tmpdir(), "ipre-install-"));
  // What `npm init -y` writes: a CommonJS package.
  writeFileSync(`${app}/package.json`, JSON.stringify({ name: "scratch-app", version: "1.0.0", private: true }, null, 2));
  const digest = packedDigest();
  const pack = await sh(`npm pack --ignore-scripts --pack-destination "${app}"`, repoRoot);
  if (pack.code !== 0) throw new Error(`npm pack failed:\n${pack.stderr}`);
  expect(pack.last).toBe(`ipre-${VERSION}.tgz`);
  const install = await sh(NPM_INSTALL, app, 180_000);
  if (install.code !== 0) {
    const hint = /ENOTCACHED|ENOTFOUND|EAI_AGAIN/.test(install.stderr)
      ? "\nkoffi is not in npm's cache and the registry cannot be reached (the nested harness has no network): run `npm test` natively once, which fills the cache"
      : "";
    throw new Error(`${NPM_INSTALL} failed (exit ${install.code}):\n${install.stderr}${hint}`);
  }
  writeFileSync(`${app}/app.mjs`, snippet("install-esm"));
  writeFileSync(`${app}/app.cjs`, snippet("install-cjs"));
  writeFileSync(`${app}/main.ts`, snippet("install-deno"));
  if (SHARED_APP) writeFileSync(`${app}/${INSTALLED}`, digest);
}, upperMs(300_000));

afterAll(() => {
  if (app && !SHARED_APP) rmSync(app, { recursive: true, force: true });
});

describePure("README Install: a packed tarball in a scratch app, without KVM", () => {
  it(`installs with the README's command (${NPM_INSTALL}): ipre and koffi, none of the dev dependencies`, () => {
    expect(NPM_INSTALL).toBe(`npm install ./ipre-${VERSION}.tgz`);
    const deps = readdirSync(`${app}/node_modules`).filter((d) => !d.startsWith("."));
    expect(deps).toContain("ipre");
    expect(deps).toContain("koffi");
    for (const dev of ["bun", "deno", "typescript", "vitest", "@types"]) expect(deps).not.toContain(dev);
    const mb = size(`${app}/node_modules`) / 2 ** 20;
    expect(mb).toBeLessThan(15); // the README says ~12 MB (11.7 MiB on 2026-12-02)
    const pkg = JSON.parse(readFileSync(`${app}/package.json`, "utf8")) as { dependencies: Record<string, string> };
    expect(pkg.dependencies.ipre).toBe(`file:ipre-${VERSION}.tgz`);
  });

  it("holds what the README says it holds, and every package path the README names", () => {
    const ipre = `${app}/node_modules/ipre`;
    for (const p of ["dist/mod.js", "dist/mod.d.ts", "dist/cli.js", "src/mod.ts", "bin/ipre.js", "guests/ipre.h", "guests/ipre.ld", "guests/examples/add.elf", "guests/examples/add.c", "README.md", "LICENSE"]) {
      expect(existsSync(`${ipre}/${p}`), p).toBe(true);
    }
    for (const p of ["test", "bench", "scripts", "docs", "node_modules", "tsconfig.json"]) expect(existsSync(`${ipre}/${p}`), p).toBe(false);
    // Every file of the package directories that the README names (in `code`) is in the package;
    // the repository-only directories are named as such in the Install section.
    const named = [...README.matchAll(/`((?:guests|src|bin|dist)\/[\w./-]+)`/g)].map((m) => m[1]!);
    expect(named.length).toBeGreaterThan(5);
    for (const p of named) if (existsSync(`${repoRoot}${p}`)) expect(existsSync(`${ipre}/${p}`), p).toBe(true);
    for (const dir of ["test/", "bench/", "scripts/", "docs/"]) expect(INSTALL).toContain(`\`${dir}\``);
    expect(readFileSync(`${ipre}/LICENSE`, "utf8")).toMatch(/^MIT License/);
  });

  for (const rt of ["node", "bun", "deno"] as const) {
    it(`the CLI on ${rt}: ${CLI[rt].replace(/ demo$/, " doctor --json")}`, async () => {
      expect(CLI[rt]).toMatch(/ demo$/);
      const r = await sh(CLI[rt].replace(/ demo$/, " doctor --json"));
      const report = JSON.parse(r.last) as { runtime: string; ffi: string; ok: boolean; flavour: string; fix?: string };
      expect(report.runtime).toBe(rt);
      expect(report.ffi).toMatch(BACKEND[rt]);
      expect(report.ok).toBe(HAVE_KVM);
      expect(r.code).toBe(HAVE_KVM ? 0 : 1);
      if (!HAVE_KVM) expect(report.flavour).toBe("none");
    });
  }

  it("plain `bunx ipre` runs on Node, as the README warns", async () => {
    expect(INSTALL).toContain("Plain `bunx ipre …` runs on *Node*");
    const r = await sh(CLI.bun.replace("bunx --bun ", "bunx ").replace(/ demo$/, " doctor --json"));
    expect((JSON.parse(r.last) as { runtime: string }).runtime).toBe("node");
  });

  it("Deno: node_modules/ipre/src/cli.ts fails as the README says; the compiled bin works", async () => {
    const failing = await sh(`${inline("deno run node_modules/ipre/src/cli.ts")} doctor`);
    expect(failing.code).not.toBe(0);
    expect(failing.stderr).toContain("ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING");
    const bin = inline("deno run --allow-ffi --allow-read node_modules/ipre/bin/ipre.js");
    expect(bin).toMatch(/ demo$/);
    const r = await sh(bin.replace(/ demo$/, " doctor --json"));
    expect((JSON.parse(r.last) as { runtime: string }).runtime).toBe("deno");
  });

  // The import on each runtime, with each README run command, up to the first KVM call: a probe
  // with the snippet's import line in place of the snippet's body.
  const probes = [
    { command: () => command("run-esm", "node "), file: "app.mjs", snippet: "install-esm", runtime: "node" },
    { command: () => command("run-esm", "bun "), file: "app.mjs", snippet: "install-esm", runtime: "bun" },
    { command: () => command("run-cjs", "node "), file: "app.cjs", snippet: "install-cjs", runtime: "node" },
    { command: () => command("run-deno", "deno "), file: "main.ts", snippet: "install-deno", runtime: "deno" },
  ] as const;
  for (const p of probes) {
    it(`imports ipre: ${p.command()} (the snippet's import, then kvmInfo())`, async () => {
      const importLine = snippet(p.snippet).split("\n").find((l) => /from "|require\(/.test(l))!;
      const probe = `probe-${p.runtime}-${p.file}`;
      writeFileSync(
        `${app}/${probe}`,
        `${importLine.replace(/\{[^}]*\}/, "{ kvmInfo, libc, IpreError }")}\n` +
          "let kvm;\ntry { kvmInfo(); kvm = 'ok'; } catch (e) { kvm = `${e.name}: ${e.message}`; }\n" +
          "console.log(JSON.stringify({ runtime: libc.runtime, backend: libc.backend, kvm, typed: typeof IpreError }));\n",
      );
      const line = p.command();
      expect(line.endsWith(` ${p.file}`)).toBe(true);
      const r = await sh(line.slice(0, -p.file.length) + probe);
      expect(r.code, r.stderr).toBe(0);
      const report = JSON.parse(r.last) as { runtime: string; backend: string; kvm: string; typed: string };
      expect(report.runtime).toBe(p.runtime);
      expect(report.backend).toMatch(BACKEND[p.runtime]);
      expect(report.typed).toBe("function");
      if (HAVE_KVM) expect(report.kvm).toBe("ok");
      else expect(report.kvm).toMatch(/^KvmError: open\(\/dev\/kvm\) failed: ENOENT/);
      expect(r.stderr).not.toMatch(/Error|Warning/);
    });
  }

  it("Deno imports ipre without --allow-ffi; the first FFI call says which flags it needs", async () => {
    writeFileSync(
      `${app}/noffi.ts`,
      'import { libc } from "npm:ipre";\nconsole.log(JSON.stringify({ imported: libc.runtime }));\n' +
        "try { libc.getpid(); } catch (e) { console.log(JSON.stringify({ name: e.name, message: e.message })); }\n",
    );
    const r = await sh("deno run --allow-read noffi.ts");
    expect(r.code, r.stderr).toBe(0);
    const [imported, failed] = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, string>);
    expect(imported).toEqual({ imported: "deno" });
    expect(failed!.name).toBe("LibcLoadError");
    expect(failed!.message).toContain("--allow-ffi --allow-read");
  });
});

describeKvm("README Install: the demo and the app snippets, with KVM", () => {
  for (const rt of ["node", "bun", "deno"] as const) {
    it(`the demo on ${rt}: ${CLI[rt]}`, async () => {
      const r = await sh(CLI[rt], app, 180_000);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^ipre demo on ${rt} `));
      expect(r.last).toBe("demo ok");
    });
  }

  for (const line of [...commands("run-esm"), ...commands("run-cjs"), ...commands("run-deno")]) {
    it(`the app snippet: ${line}`, async () => {
      const r = await sh(line);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe("42");
    });
  }
});

/** The examples of `ipre <cmd> --help` (its "example(s):" lines, without the leading `ipre <cmd> `'s indentation). */
function helpExamples(help: Run, cmd: string): string[] {
  expect(help.code, help.stderr).toBe(0);
  const examples = help.stdout.slice(help.stdout.lastIndexOf("example")).split("\n").filter((l) => l.startsWith(`  ipre ${cmd} `)).map((l) => l.trim());
  expect(examples.length, help.stdout).toBeGreaterThan(0);
  return examples;
}

/** An example of run, exec or symbols ran: ipre's own errors are 1 or 2 with an "ipre:" line; exec exits with the program's code (hello: 3 + argc). */
function expectExampleRan(r: Run, e: string, cmd: string): void {
  expect(r.stderr, e).not.toMatch(/^ipre: (?!note)/m);
  if (cmd !== "exec") expect(r.code, `${e}\n${r.stderr}`).toBe(0);
  else expect(r.code, `${e}\n${r.stderr}`).toBeGreaterThan(2);
}

// The help pages and `symbols` need no KVM: natively, through npx as a user types them. What
// needs KVM (run, exec) runs the same bin without npx, whose start-up (npm's own JavaScript)
// costs ~50 s per command under TCG; that npx finds ipre in the app is what the doctor test above
// shows on every runtime.
describePure("README Install: what the CLI's --help shows, in the app, without KVM", () => {
  it("run, exec and symbols --help show examples by name (not repository paths); every symbols example works", async () => {
    for (const cmd of ["run", "exec", "symbols"]) {
      const examples = helpExamples(await sh(`npx ipre ${cmd} --help`), cmd);
      for (const e of examples) expect(e).not.toMatch(/guests\//);
      if (cmd === "symbols") for (const e of examples) expectExampleRan(await sh(`npx ${e}`), e, cmd);
    }
  }, upperMs(60_000));
});

describeKvm("README Install: what the CLI's --help shows, Deno with the README's flags, and C, in the app", () => {
  it("every example of run and exec --help works in the app (example guests by name, not repository paths): node_modules/.bin/ipre, as npx runs it", async () => {
    for (const cmd of ["run", "exec"]) {
      for (const e of helpExamples(await sh(`node_modules/.bin/ipre ${cmd} --help`), cmd)) {
        expectExampleRan(await sh(`node_modules/.bin/${e}`), e, cmd);
      }
    }
  }, upperMs(180_000));

  it("Deno with the README's flags runs run and exec: deno run --allow-ffi --allow-read npm:ipre …", async () => {
    const deno = CLI.deno.replace(/ demo$/, "");
    expect(deno).toBe("deno run --allow-ffi --allow-read npm:ipre");
    const add = await sh(`${deno} run add add 2 40`);
    expect(add.code, add.stderr).toBe(0);
    expect(add.stderr).toBe("");
    expect(add.last).toBe("42");
    const hello = await sh(`${deno} exec hello a b`);
    expect(hello.code, hello.stderr).toBe(6);
    expect(hello.stdout).toContain("argv[0]=hello");
  }, upperMs(60_000));

  const C = 'import { Machine } from "IPRE";\nconst m = Machine.create({ source: `#include "ipre.h"\\nlong twice(long x) { return 2 * x; }\\n` });\nconsole.log(m.call("twice", 21));\nm.close();\n';
  for (const [rt, file, line] of [
    ["node", "c.mjs", "node c.mjs"],
    ["bun", "c.mjs", "bun c.mjs"],
    ["deno", "c.ts", "deno run --allow-ffi --allow-read --allow-run --allow-env --allow-write c.ts"],
  ] as const) {
    it(`C source compiles with the package's ipre.h and ipre.ld from node_modules on ${rt}: ${line}`, async () => {
      writeFileSync(`${app}/${file}`, C.replace("IPRE", rt === "deno" ? "npm:ipre" : "ipre"));
      const r = await sh(line);
      expect(r.code, r.stderr).toBe(0);
      expect(r.last).toBe("42");
    }, upperMs(60_000));
  }
});
