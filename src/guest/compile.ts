/**
 * C source to a guest ELF with the machine's C compiler: `compile(source, { window })`, and
 * `Machine.create({ source, window })` on top of it. The build is the example guests' own
 * (guests/build-flags.json, shared with scripts/build-guests.mjs): freestanding, linked with
 * guests/ipre.ld for the window and with guests/lib/ipre_libc.c, `-I guests` so that
 * `#include "ipre.h"` works. The package's guests/ directory is found relative to this module,
 * as the example guests are (src/examples.ts).
 *
 * The compiler is `$IPRE_CC`, else the first of cc, gcc, clang on PATH. Results are cached by a
 * hash of everything that decides the bytes (source, local headers it includes, flags, window,
 * the compiler's path and `--version`, ipre.h, ipre.ld, ipre_libc.c, the remotes' exports) in
 * `$IPRE_CACHE_DIR`, else `$XDG_CACHE_HOME/ipre/cc`, else `~/.cache/ipre/cc`, written atomically
 * (a temporary file renamed into place); the compiler's `--version` is cached by its path, size
 * and modification time, so a cache hit runs no compiler at all. The compile itself is
 * synchronous (`spawnSync`, which Bun and Deno support too).
 *
 * Deno needs --allow-run (the compiler), --allow-env (IPRE_CC, PATH, the cache directory) and
 * --allow-write (a temporary directory, the cache) for it, besides --allow-ffi --allow-read.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import { dirname, join, resolve } from "node:path";
import { CompileError, type CompileDiagnostic } from "../errors.ts";
import { envGet, permitted } from "../env.ts";
import { guestsDir } from "../examples.ts";
import { parseElf, type ElfImage } from "./elf.ts";
import { MAX_WINDOW, WINDOW_SIZE } from "./layout.ts";

/** Something whose IPRE exports a caller links against: ELF bytes, a parsed ELF, or a Machine (its program). */
export type LinkTarget = Uint8Array | ElfImage | { readonly program?: ElfImage | undefined; readonly name?: string };

export interface CompileOptions {
  /** The window the program is linked for (default 0; a remote usually 1). */
  window?: number;
  /**
   * Remotes whose exports (IPRE_EXPORT functions) the source calls: linked as `name = address;`
   * lines, as `ipre symbols remote.elf` prints them.
   */
  linkAgainst?: readonly LinkTarget[];
  /** The file name the compiler's messages give for the source (default "source.c"). */
  name?: string;
  /** The compiler (default: $IPRE_CC, else cc, gcc or clang on PATH). */
  cc?: string;
  /** Where compiled guests are kept (default: $IPRE_CACHE_DIR, $XDG_CACHE_HOME/ipre/cc, ~/.cache/ipre/cc); false: no cache. */
  cacheDir?: string | false;
}

/** What a compile did: the ELF, and whether it came from the cache (no compiler ran). */
export interface CompileResult {
  elf: Uint8Array;
  cached: boolean;
  /** The cache file, when there is a cache. */
  cacheFile?: string;
  compiler: string;
}

/** Compile C source (a string) into a guest ELF for `options.window`; a CompileError when it cannot. */
export function compile(source: string, options: CompileOptions = {}): Uint8Array {
  return compileDetailed(source, options).elf;
}

/** compile() of a C file: the compiler's messages name it as given, and headers next to it are found. */
export function compileFile(path: string, options: Omit<CompileOptions, "name"> = {}): Uint8Array {
  return compileFileDetailed(path, options).elf;
}

/** {@link compile}, saying whether the cache answered. */
export function compileDetailed(source: string, options: CompileOptions = {}): CompileResult {
  const name = options.name ?? "source.c";
  if (!/^[\w.+-]+$/.test(name)) throw new RangeError(`compile: name must be a plain file name like "source.c" (got ${JSON.stringify(name)})`);
  return build({ source, name }, options);
}

/** {@link compileFile}, saying whether the cache answered. */
export function compileFileDetailed(path: string, options: Omit<CompileOptions, "name"> = {}): CompileResult {
  requirePermissions();
  return build({ source: readFileSync(path, "utf8"), name: path, path }, options);
}

interface Input {
  source: string;
  /** The name in messages: a plain name (written into a temporary directory), or the file's path. */
  name: string;
  /** A real file, compiled where it is. */
  path?: string;
}

function build(input: Input, options: CompileOptions): CompileResult {
  requirePermissions();
  const window = options.window ?? 0;
  if (!Number.isInteger(window) || window < 0 || window > MAX_WINDOW) throw new RangeError(`window must be an integer in 0..${MAX_WINDOW}`);
  const cc = findCompiler(options.cc);
  const cacheDir = options.cacheDir === false ? undefined : (options.cacheDir ?? defaultCacheDir());
  const version = compilerVersion(cc, cacheDir);
  const targets = (options.linkAgainst ?? []).map(exportsOf);
  const syms = targets.map((t) => t.lines).join("");
  // The small code model reaches addresses below 2 GiB only: windows 0 and 1, for the program and what it calls.
  const far = window >= 2 || targets.some((t) => t.highest >= 2 ** 31);
  const { cflags, ldflags } = guestFlags(far, version);
  const guests = guestsDir();
  const guest = (f: string) => readFileSync(`${guests}${f}`, "utf8");
  const key = hash([
    "ipre-cc-1", cc.path, version, cflags, ldflags, window, input.name, input.source,
    input.path ? localHeaders(input.path, input.source) : [],
    guest("ipre.h"), guest("ipre.ld"), guest("lib/ipre_libc.c"), syms,
  ]);
  const cacheFile = cacheDir ? join(cacheDir, `${key}.elf`) : undefined;
  if (cacheFile && existsSync(cacheFile)) {
    try {
      return { elf: new Uint8Array(readFileSync(cacheFile)), cached: true, cacheFile, compiler: cc.path };
    } catch {
      // unreadable: build it again
    }
  }

  const tmp = mkdtempSync(join(tmpdir(), "ipre-cc-"));
  try {
    // A string is written as `name` in a temporary directory and compiled there; a file where it is.
    const src = input.path ?? input.name;
    if (!input.path) writeFileSync(join(tmp, input.name), input.source);
    const extra: string[] = [];
    if (syms) {
      writeFileSync(join(tmp, "remotes.syms.ld"), syms);
      extra.push(join(tmp, "remotes.syms.ld"));
    }
    const out = join(tmp, "guest.elf");
    const args = [
      ...cflags, ...ldflags, "-T", `${guests}ipre.ld`, `-Wl,--defsym=IPRE_WINDOW_BASE=0x${(window * WINDOW_SIZE).toString(16)}`,
      "-I", guests, src, `${guests}lib/ipre_libc.c`, ...extra, "-o", out,
    ];
    const r = spawnSync(cc.path, args, { cwd: input.path ? undefined : tmp, encoding: "utf8", maxBuffer: 16 << 20 });
    if (r.error) throw noCompiler(`cannot run ${cc.path}: ${r.error.message}`);
    if (r.status !== 0) throw compileFailed(input.name, cc.path, `${r.stderr ?? ""}${r.stdout ?? ""}`, r.status);
    const elf = new Uint8Array(readFileSync(out));
    if (cacheFile) writeAtomically(cacheFile, elf);
    return { elf, cached: false, cacheFile, compiler: cc.path };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- the compiler

interface Compiler {
  /** As found (PATH entry or IPRE_CC). */
  path: string;
}

const INSTALL_HINT = "install one (Debian/Ubuntu: apt-get install gcc; Fedora: dnf install gcc; Alpine: apk add gcc) or set IPRE_CC to a C compiler";

function findCompiler(explicit?: string): Compiler {
  const given = explicit ?? envGet("IPRE_CC");
  if (given) {
    const path = given.includes("/") ? (isExecutable(given) ? given : undefined) : searchPath(given);
    if (!path) throw noCompiler(`${explicit ? "cc" : "IPRE_CC"}=${given}: no such executable; ${INSTALL_HINT}`);
    return { path };
  }
  for (const name of ["cc", "gcc", "clang"]) {
    const path = searchPath(name);
    if (path) return { path };
  }
  throw noCompiler(`no C compiler: ipre compiles C with cc, gcc or clang from PATH and found none; ${INSTALL_HINT}`);
}

function searchPath(name: string): string | undefined {
  for (const dir of (envGet("PATH") ?? "").split(":")) {
    if (!dir) continue;
    const p = join(dir, name);
    if (isExecutable(p)) return p;
  }
  return undefined;
}

/** A file with an execute bit (not accessSync(X_OK): Deno's needs --allow-sys for the uid). */
function isExecutable(p: string): boolean {
  try {
    const st = statSync(p);
    return st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/**
 * The first line of `cc --version` (part of the cache key), itself cached by the compiler's real
 * path, size and modification time: a cache hit runs no compiler.
 */
function compilerVersion(cc: Compiler, cacheDir: string | undefined): string {
  let id: string;
  try {
    const real = realpathSync(cc.path);
    const st = statSync(real);
    id = hash([cc.path, real, st.size, st.mtimeMs, st.ino]);
  } catch {
    id = "";
  }
  const file = cacheDir && id ? join(cacheDir, "compilers", `${id}.txt`) : undefined;
  if (file && existsSync(file)) {
    try {
      return readFileSync(file, "utf8");
    } catch {
      // ask the compiler
    }
  }
  const r = spawnSync(cc.path, ["--version"], { encoding: "utf8" });
  if (r.error) throw noCompiler(`cannot run ${cc.path}: ${r.error.message}; ${INSTALL_HINT}`);
  if (r.status !== 0) throw noCompiler(`${cc.path} --version failed (exit ${r.status}): ${(r.stderr || r.stdout || "").trim().split("\n")[0]}; is it a C compiler?`);
  const version = (r.stdout || "").trim().split("\n")[0] ?? "";
  if (file) writeAtomically(file, version);
  return version;
}

/**
 * The example guests' flags; `far`: code or a remote above 2 GiB (window 2 and up), which the
 * small code model cannot reach (guests/ipre.h): -mcmodel=large. clang ignores one gcc-only
 * option (without -Werror tripping on it).
 */
function guestFlags(far: boolean, version: string): { cflags: string[]; ldflags: string[] } {
  const flags = JSON.parse(readFileSync(`${guestsDir()}build-flags.json`, "utf8")) as { cflags: string[]; ldflags: string[] };
  const cflags = flags.cflags.map((f) => (f === "-mcmodel=small" && far ? "-mcmodel=large" : f));
  if (/clang/i.test(version)) cflags.push("-Wno-ignored-optimization-argument", "-Wno-unused-command-line-argument");
  return { cflags, ldflags: flags.ldflags };
}

// ---------------------------------------------------------------- inputs of the key

/** `name = 0xADDR;` lines of a remote's exports (what `ipre symbols` prints), and the highest address. */
function exportsOf(target: LinkTarget): { lines: string; highest: number } {
  let elf: ElfImage | undefined;
  if (target instanceof Uint8Array) elf = parseElf(target, { linux: true });
  else if ("symbols" in target && "exports" in target) elf = target;
  else elf = (target as { program?: ElfImage }).program;
  if (!elf) throw new RangeError(`linkAgainst: ${(target as { name?: string }).name ?? "a machine"} has no program loaded`);
  const values = elf.exports.map((n) => [n, elf.symbols.get(n)!.value] as const);
  return { lines: values.map(([n, v]) => `${n} = 0x${v.toString(16)};\n`).join(""), highest: Math.max(0, ...values.map(([, v]) => v)) };
}

/** The local headers a file includes (`#include "x.h"`, next to it, recursively): their paths and contents. */
function localHeaders(path: string, source: string, seen = new Set<string>()): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(/^\s*#\s*include\s*"([^"]+)"/gm)) {
    const p = resolve(dirname(path), m[1] ?? "");
    if (seen.has(p) || !existsSync(p)) continue;
    seen.add(p);
    const text = readFileSync(p, "utf8");
    out.push(p, text, ...localHeaders(p, text, seen));
  }
  return out;
}

function hash(parts: unknown): string {
  return createHash("sha256").update(JSON.stringify(parts)).digest("hex").slice(0, 40);
}

// ---------------------------------------------------------------- the cache

/** $IPRE_CACHE_DIR, else $XDG_CACHE_HOME/ipre/cc, else ~/.cache/ipre/cc; undefined when none is known. */
export function defaultCacheDir(): string | undefined {
  const own = envGet("IPRE_CACHE_DIR");
  if (own) return own;
  const xdg = envGet("XDG_CACHE_HOME");
  if (xdg) return join(xdg, "ipre", "cc");
  const home = envGet("HOME");
  return home ? join(home, ".cache", "ipre", "cc") : undefined;
}

/** Write to a temporary file beside `file`, then rename: a reader never sees half a file. A cache that cannot be written is no error. */
function writeAtomically(file: string, data: Uint8Array | string): void {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`;
  try {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(tmp, data);
    renameSync(tmp, file);
  } catch {
    rmSync(tmp, { force: true });
  }
}

// ---------------------------------------------------------------- errors

/** Deno: the permissions a compile needs, checked before anything runs (querySync never prompts). */
function requirePermissions(): void {
  const missing = (["run", "env", "write"] as const).filter((p) => !permitted(p)).map((p) => `--allow-${p}`);
  if (missing.length) {
    throw new CompileError(
      `compiling C on Deno needs ${missing.join(" ")} (--allow-run for the C compiler, --allow-env for IPRE_CC, PATH and the cache directory, --allow-write for the cache): run with --allow-run --allow-env --allow-write, or --allow-all`,
      "permission",
    );
  }
}

function noCompiler(message: string): CompileError {
  return new CompileError(message, "no-compiler");
}

const DIAGNOSTIC = /^(.+?):(\d+):(?:(\d+):)? (fatal error|error|warning|note): (.*)$/;

function compileFailed(name: string, cc: string, output: string, status: number | null): CompileError {
  const lines = output.split("\n");
  const diagnostics: CompileDiagnostic[] = [];
  for (const l of lines) {
    const m = DIAGNOSTIC.exec(l);
    const [, file = "", line, column, severity = "", message = ""] = m ?? [];
    if (m) diagnostics.push({ file, line: Number(line), column: Number(column ?? 0), severity, message });
  }
  const errors = diagnostics.filter((d) => d.severity.endsWith("error"));
  // A linker message has no line: `source.c:(.text+0x9): undefined reference to `kv_get'`.
  const linker = lines.filter((l) => /undefined reference|multiple definition|ld: .*error|error: ld returned/.test(l));
  const first = errors[0] ? `${errors[0].file}:${errors[0].line}:${errors[0].column ? `${errors[0].column}:` : ""} ${errors[0].severity}: ${errors[0].message}` : (linker[0] ?? lines.find((l) => l.trim()) ?? `exit ${status}`);
  const more = Math.max(errors.length, errors.length ? 0 : linker.filter((l) => !/ld returned/.test(l)).length) - 1;
  return new CompileError(`${first}${more > 0 ? ` (and ${more} more error${more === 1 ? "" : "s"}; ${name} compiled by ${cc})` : ""}`, "error", output, diagnostics, cc);
}
