#!/usr/bin/env node
/**
 * Builds the guest artefacts that are committed to the repository:
 *
 *  (a) guests/runtime/runtime.S  -> src/guest/runtime.generated.ts
 *      (flat binary linked at address 0, base64, plus every defined symbol as an offset)
 *  (b) guests/examples/*.c       -> guests/examples/*.elf
 *      The remotes (kvstore.c, kvshared.c: window 1) first, then each remote's global symbols
 *      into guests/examples/<remote>.syms.ld, then kvcaller.c (window 0) linked against
 *      kvstore's.
 *  (c) guests/linux/*.{c,cc,rs}  -> guests/linux/*.elf
 *      Ordinary static Linux programs, run with Machine.exec and `ipre exec`: *.c with glibc
 *      (`gcc -static -no-pie`, linked at 0x400000 = window 0 base + 4 MiB), *-musl.c with musl
 *      (Debian's musl-gcc), *.cc with g++ (static libstdc++), *.rs with rustc (+crt-static: a
 *      static-PIE), and hello-pie.elf, hello.c as a static-PIE (`gcc -static-pie`). Remotes
 *      (counter.c: window 1) first, with their exports in <remote>.syms.ld; counter-caller.c links
 *      against counter.syms.ld.
 *  (d) guests/linux/pairs/*      -> guests/linux/pairs/*.elf
 *      IPRE pairs of static Linux programs: remotes (*_remote.*, window 1: linked at
 *      0x40400000) and their callers (window 0), in C (gcc), C++ (g++) and Rust (rustc, no
 *      cargo). Callers find remote functions at run time (ipre_remote), so no syms.ld.
 *
 * Usage:  node scripts/build-guests.mjs            build and write the files
 *         node scripts/build-guests.mjs --check    build into a temp dir, compare with the
 *                                                  committed files, exit 1 listing differences
 *         --quiet                                  print only the result
 *
 * Exit codes: 0 ok; 1 (--check) committed files differ from a fresh build; 2 build failed;
 * 3 (--check) the toolchain differs from the one recorded in guests/toolchain.txt (another
 * version, or a tool is missing, in which case the build is not complete), so the bytes cannot
 * be compared (another gcc/binutils version emits different code; that is not an error in the
 * committed files).
 *
 * Needs gcc, ld, objcopy, nm and readelf (GNU binutils), and for (c) static glibc (libc6-dev),
 * g++, musl-gcc (musl-tools) and rustc. No npm dependencies.
 * The output is reproducible: no build ids, no .comment, no debug info, and every path given to
 * the tools is relative to the repository root (STT_FILE symbols name the source as given).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const check = process.argv.includes("--check");
const verbose = !process.argv.includes("--quiet");

const RUNTIME_DIR = "guests/runtime";
const RUNTIME_SRC = `${RUNTIME_DIR}/runtime.S`;
const RUNTIME_LD = `${RUNTIME_DIR}/runtime.ld`;
const RUNTIME_OUT = "src/guest/runtime.generated.ts";
const EXAMPLES = "guests/examples";
const LINKER_SCRIPT = "guests/ipre.ld";
const LIBC_SRC = "guests/lib/ipre_libc.c";
const TOOLCHAIN_FILE = "guests/toolchain.txt";
const LINUX_DIR = "guests/linux";
/** Static Linux programs: the toolchain's own libc, nothing from ipre. */
const LINUX_CFLAGS = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-static", "-no-pie", "-g0", "-Wl,--build-id=none", "-I", "guests/linux"];
const LINUX_PIE_CFLAGS = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-static-pie", "-g0", "-Wl,--build-id=none"];
/** --gc-sections: static libstdc++ (iostream, locales) is 2.2 MB without it, 1.6 MB with. */
const LINUX_CXXFLAGS = ["-std=gnu++17", "-O2", "-Wall", "-Wextra", "-Werror", "-static", "-no-pie", "-g0", "-Wl,--build-id=none", "-Wl,--gc-sections"];
/** rustc's default with crt-static is a static-PIE; paths in panic messages become relative. */
const LINUX_RUSTFLAGS = [
  "--edition", "2021", "-O", "--target", "x86_64-unknown-linux-gnu", "-C", "target-feature=+crt-static",
  "-C", "debuginfo=0", "-C", "strip=debuginfo", "-C", "link-arg=-Wl,--build-id=none", `--remap-path-prefix=${ROOT}=.`,
];
/** Linux programs linked for another window than 0 (remotes of a window-0 caller): at window base + 4 MiB. */
const LINUX_WINDOW_OF = { counter: 1, memtest: 1 };
/**
 * Linux callers that link against a remote's exports (link-time lookup; guests/linux/<remote>.syms.ld
 * holds only the exports, as `ipre symbols` prints them: the remote's own libc must not replace
 * the caller's).
 */
const LINUX_LINKS_AGAINST = { "counter-caller": "counter" };

/** Window of each example (0 unless listed). The remotes kvstore and kvshared live in window 1. */
const WINDOW_OF = { kvstore: 1, kvshared: 1 };
const GIB = 0x40000000;
/** IPRE pairs: caller -> remote whose symbols it links against. Remotes are built first. */
const LINKS_AGAINST = { kvcaller: "kvstore" };

/**
 * The compiler and linker flags of every guest C file (documented in guests/ipre.h), in
 * guests/build-flags.json: ipre's compile() (C source given to Machine.create) uses the same file.
 */
const BUILD_FLAGS = JSON.parse(readFileSync(join(ROOT, "guests/build-flags.json"), "utf8"));
const GUEST_CFLAGS = BUILD_FLAGS.cflags;
const GUEST_LDFLAGS = [...BUILD_FLAGS.ldflags, "-T", LINKER_SCRIPT];

const log = (msg) => {
  if (verbose) console.log(msg);
};

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: opts.encoding ?? "utf8", maxBuffer: 64 << 20 });
  if (r.error) throw new Error(`cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed (exit ${r.status}):\n${r.stderr}${r.stdout ?? ""}`);
  }
  if (r.stderr && r.stderr.trim() && opts.quietStderr !== true) process.stderr.write(r.stderr);
  return r.stdout;
}

const rel = (p) => relative(ROOT, p) || ".";

// ------------------------------------------------------------------------------------ runtime

/** Parses `nm` output into [name, value] pairs of defined symbols, sorted by value then name. */
function nmSymbols(file) {
  const out = run("nm", ["--defined-only", "--no-sort", file]);
  const syms = new Map();
  for (const line of out.split("\n")) {
    const m = /^([0-9a-fA-F]+)\s+(\S)\s+(\S+)$/.exec(line.trim());
    if (!m) continue;
    const [, hex, type, name] = m;
    if (type === "U" || type === "w" || type === "v") continue;
    const value = BigInt(`0x${hex}`);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${file}: symbol ${name} = 0x${hex} too large`);
    if (!syms.has(name)) syms.set(name, { value: Number(value), type });
  }
  return [...syms.entries()].sort((a, b) => a[1].value - b[1].value || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

function buildRuntime(tmp) {
  if (!existsSync(join(ROOT, RUNTIME_SRC))) {
    log(`runtime: ${RUNTIME_SRC} does not exist yet, skipping ${RUNTIME_OUT}`);
    return [];
  }
  const obj = join(tmp, "runtime.o");
  const elf = join(tmp, "runtime.elf");
  const bin = join(tmp, "runtime.bin");
  run("gcc", ["-c", "-x", "assembler-with-cpp", "-I", RUNTIME_DIR, "-Wa,--fatal-warnings", RUNTIME_SRC, "-o", obj]);
  const ldArgs = existsSync(join(ROOT, RUNTIME_LD))
    ? ["-T", RUNTIME_LD]
    : ["-Ttext=0", "-e", "0", "--no-relax"];
  run("ld", ["-static", "--build-id=none", "-z", "noexecstack", "-z", "max-page-size=4096", ...ldArgs, obj, "-o", elf]);
  run("objcopy", ["-O", "binary", elf, bin]);
  const bytes = readFileSync(bin);
  const symbols = nmSymbols(elf);
  const ident = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
  const lines = [
    `// Generated by scripts/build-guests.mjs from ${RUNTIME_SRC}. Do not edit.`,
    `export const RUNTIME_BYTES_BASE64 =`,
    `  "${bytes.toString("base64")}";`,
    `export const RUNTIME_SYMBOLS = {`,
    ...symbols.map(([name, { value }]) => `  ${ident.test(name) ? name : JSON.stringify(name)}: 0x${value.toString(16)},`),
    `} as const;`,
    ``,
  ];
  const out = join(tmp, "runtime.generated.ts");
  writeFileSync(out, lines.join("\n"));
  log(`runtime: ${RUNTIME_SRC} -> ${RUNTIME_OUT} (${bytes.length} bytes, ${symbols.length} symbols)`);
  return [{ built: out, target: RUNTIME_OUT }];
}

// ------------------------------------------------------------------------------------ examples

/** Runs `readelf -lW` and checks that every PT_LOAD is R E, R or RW, and that none is W+X, all
 * inside the window. `ipreLayout` (guests/ipre.ld): also exactly one R E segment, page-aligned
 * segments that share no page; a Linux program's loader rounds instead. */
function verifySegments(elf, window, ipreLayout = true) {
  const out = run("readelf", ["-lW", elf]);
  const loads = [];
  for (const line of out.split("\n")) {
    const m = /^\s*LOAD\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+([RWE ]+?)\s+0x([0-9a-f]+)\s*$/.exec(line);
    if (m) {
      loads.push({ offset: parseInt(m[1], 16), vaddr: parseInt(m[2], 16), filesz: parseInt(m[4], 16), memsz: parseInt(m[5], 16), flags: m[6].replace(/\s+/g, "") });
    }
  }
  const name = rel(elf);
  if (loads.length === 0) throw new Error(`${name}: no PT_LOAD segments`);
  if (ipreLayout && loads.filter((l) => l.flags === "RE").length !== 1) throw new Error(`${name}: expected exactly one R E segment`);
  const lo = window * GIB, hi = lo + GIB - 2 * 1024 * 1024;
  for (const l of loads) {
    if (!["RE", "R", "RW"].includes(l.flags)) throw new Error(`${name}: PT_LOAD at 0x${l.vaddr.toString(16)} has flags ${l.flags}`);
    if (ipreLayout && l.vaddr % 4096 !== 0) throw new Error(`${name}: PT_LOAD at 0x${l.vaddr.toString(16)} is not page aligned`);
    if (l.vaddr < lo + 0x400000 || l.vaddr + l.memsz > hi) throw new Error(`${name}: PT_LOAD at 0x${l.vaddr.toString(16)} is outside window ${window}`);
  }
  for (let i = 1; ipreLayout && i < loads.length; i++) {
    const prevEnd = Math.ceil((loads[i - 1].vaddr + loads[i - 1].memsz) / 4096) * 4096;
    if (loads[i].vaddr < prevEnd) throw new Error(`${name}: PT_LOAD segments share a page`);
  }
  return loads;
}

/** Global FUNC/OBJECT symbols of an ELF (from readelf -sW), excluding ones in `exclude`. */
function globalSymbols(elf, exclude) {
  const out = run("readelf", ["-sW", elf]);
  const syms = [];
  for (const line of out.split("\n")) {
    const f = line.trim().split(/\s+/);
    // Num: Value Size Type Bind Vis Ndx Name
    if (f.length < 8 || !/^\d+:$/.test(f[0])) continue;
    const [, value, , type, bind, , ndx, symName] = f;
    if (!(type === "FUNC" || type === "OBJECT")) continue;
    if (!(bind === "GLOBAL" || bind === "WEAK")) continue;
    if (ndx === "UND" || ndx === "ABS") continue;
    if (exclude.has(symName)) continue;
    syms.push({ name: symName, value: BigInt(`0x${value}`), type });
  }
  return syms.sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0));
}

/** Names of FUNC symbols in section .ipre_export. */
function exportedNames(elf) {
  const sections = run("readelf", ["-SW", elf]);
  const m = /\[\s*(\d+)\]\s+\.ipre_export\s/.exec(sections);
  if (!m) return new Set();
  const idx = m[1];
  const out = run("readelf", ["-sW", elf]);
  const names = new Set();
  for (const line of out.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && f[3] === "FUNC" && (f[4] === "GLOBAL" || f[4] === "WEAK") && f[6] === idx) names.add(f[7]);
  }
  return names;
}

function writeSymsLd(remoteElf, remoteName, out, libcNames) {
  const exported = exportedNames(remoteElf);
  const syms = globalSymbols(remoteElf, libcNames);
  const lines = [
    `/* Generated by scripts/build-guests.mjs from ${EXAMPLES}/${remoteName}.elf. Do not edit.`,
    ` * Global FUNC/OBJECT symbols of the remote (minus its private libc), for linking a caller.`,
    ` * Only the ones marked "exported" (IPRE_EXPORT, section .ipre_export) may be entered. */`,
    ...syms.map((s) => `${s.name} = 0x${s.value.toString(16)}; /* ${s.type.toLowerCase()}${exported.has(s.name) ? ", exported" : ""} */`),
    ``,
  ];
  writeFileSync(out, lines.join("\n"));
  return syms.length;
}

function buildExamples(tmp) {
  const outputs = [];
  const sources = readdirSync(join(ROOT, EXAMPLES)).filter((f) => f.endsWith(".c")).map((f) => f.slice(0, -2)).sort();
  // Remotes first, then callers that link against them.
  const callers = new Set(Object.keys(LINKS_AGAINST));
  const order = [...sources.filter((s) => !callers.has(s)), ...sources.filter((s) => callers.has(s))];

  // The private libc, compiled once and linked into every example.
  const libcObj = join(tmp, "ipre_libc.o");
  run("gcc", [...GUEST_CFLAGS, "-c", LIBC_SRC, "-o", libcObj]);
  const libcNames = new Set(nmSymbols(libcObj).map(([name]) => name));
  log(`libc: ${LIBC_SRC} (${[...libcNames].join(", ")})`);

  const symsFiles = new Map();
  for (const name of order) {
    const window = WINDOW_OF[name] ?? 0;
    const src = `${EXAMPLES}/${name}.c`;
    const elf = join(tmp, `${name}.elf`);
    const extra = [];
    const remote = LINKS_AGAINST[name];
    if (remote) {
      const syms = symsFiles.get(remote);
      if (!syms) throw new Error(`${name} links against ${remote}, which was not built`);
      extra.push(syms);
    }
    const args = [
      ...GUEST_CFLAGS,
      ...GUEST_LDFLAGS,
      `-Wl,--defsym=IPRE_WINDOW_BASE=0x${(window * GIB).toString(16)}`,
      src,
      libcObj,
      ...extra,
      "-o",
      elf,
    ];
    run("gcc", args);
    const loads = verifySegments(elf, window);
    const exported = [...exportedNames(elf)].sort();
    outputs.push({ built: elf, target: `${EXAMPLES}/${name}.elf` });
    log(
      `example: ${src} -> ${EXAMPLES}/${name}.elf (window ${window}; ` +
        loads.map((l) => `${l.flags} 0x${l.vaddr.toString(16)}+0x${l.memsz.toString(16)}`).join(", ") +
        (exported.length ? `; exports ${exported.join(", ")}` : "") + ")",
    );
    // Every remote gets a syms.ld, so that a caller can be linked against it.
    if (window !== 0 || Object.values(LINKS_AGAINST).includes(name)) {
      const symsOut = join(tmp, `${name}.syms.ld`);
      const n = writeSymsLd(elf, name, symsOut, libcNames);
      symsFiles.set(name, symsOut);
      outputs.push({ built: symsOut, target: `${EXAMPLES}/${name}.syms.ld` });
      log(`symbols: ${EXAMPLES}/${name}.elf -> ${EXAMPLES}/${name}.syms.ld (${n} symbols)`);
    }
  }
  return outputs;
}

/** The compiler and its arguments (before the source) for a Linux program's source file. */
function linuxCompiler(file) {
  if (file.endsWith("-musl.c")) return ["musl-gcc", LINUX_CFLAGS];
  if (file.endsWith(".c")) return ["gcc", LINUX_CFLAGS];
  if (file.endsWith(".cc")) return ["g++", LINUX_CXXFLAGS];
  // A .rs without main is a module for programs to include (ipre.rs), not a program.
  if (file.endsWith(".rs") && /\bfn main\s*\(/.test(readFileSync(join(ROOT, LINUX_DIR, file), "utf8"))) return ["rustc", LINUX_RUSTFLAGS];
  return undefined;
}

function buildLinux(tmp) {
  if (!existsSync(join(ROOT, LINUX_DIR))) return [];
  const jobs = [];
  for (const file of readdirSync(join(ROOT, LINUX_DIR)).sort()) {
    const compiler = linuxCompiler(file);
    if (compiler) jobs.push({ name: file.replace(/\.(c|cc|rs)$/, ""), src: `${LINUX_DIR}/${file}`, cmd: compiler[0], flags: compiler[1] });
  }
  if (existsSync(join(ROOT, LINUX_DIR, "hello.c"))) jobs.push({ name: "hello-pie", src: `${LINUX_DIR}/hello.c`, cmd: "gcc", flags: LINUX_PIE_CFLAGS });
  // Remotes first: their callers link against their exports.
  jobs.sort((a, b) => Number(b.name in LINUX_WINDOW_OF) - Number(a.name in LINUX_WINDOW_OF));
  const outputs = [];
  const symsFiles = new Map();
  for (const { name, src, cmd, flags } of jobs) {
    const elf = join(tmp, `linux-${name}.elf`);
    const window = LINUX_WINDOW_OF[name] ?? 0;
    const at = window === 0 ? [] : [`-Wl,-Ttext-segment=0x${(window * GIB + 0x400000).toString(16)}`];
    const remote = LINUX_LINKS_AGAINST[name];
    if (remote !== undefined && !symsFiles.has(remote)) throw new Error(`${name} links against ${remote}, which was not built`);
    run(cmd, [...flags, ...at, src, ...(remote !== undefined ? [symsFiles.get(remote)] : []), "-o", elf]);
    const bytes = readFileSync(elf);
    if (bytes.includes(ROOT)) throw new Error(`${src}: the output contains this machine's path ${ROOT}`);
    outputs.push({ built: elf, target: `${LINUX_DIR}/${name}.elf` });
    log(`linux: ${src} -> ${LINUX_DIR}/${name}.elf (${cmd}, ${bytes.length} bytes)`);
    if (Object.values(LINUX_LINKS_AGAINST).includes(name)) {
      const exported = [...exportedNames(elf)];
      const values = new Map(globalSymbols(elf, new Set()).map((s) => [s.name, s.value]));
      const out = join(tmp, `linux-${name}.syms.ld`);
      writeFileSync(out, [
        `/* Generated by scripts/build-guests.mjs from ${LINUX_DIR}/${name}.elf (as \`ipre symbols\` prints them). Do not edit.`,
        ` * The remote's exports only: its own libc must not replace the caller's. */`,
        ...exported.sort().map((n) => `${n} = 0x${values.get(n).toString(16)};`),
        ``,
      ].join("\n"));
      symsFiles.set(name, out);
      outputs.push({ built: out, target: `${LINUX_DIR}/${name}.syms.ld` });
    }
  }
  return outputs;
}

// ------------------------------------------------------------------------------------ pairs

const PAIRS_DIR = `${LINUX_DIR}/pairs`;
/** Flags of every pair program: static, non-PIE, small and reproducible (no build id, no debug
 * info; .comment is removed after linking; the symbol table stays). */
const PAIR_CCFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-g0", "-I", LINUX_DIR, "-static", "-no-pie", "-Wl,--build-id=none"];
/** Unused sections are dropped. Nothing in a remote refers to its exports (section
 * .ipre_export), so a remote is linked twice: once keeping everything, to read the names of its
 * exports, then with each export as a root (-u name). */
const GC = ["-ffunction-sections", "-fdata-sections", "-Wl,--gc-sections"];
/** A remote lives in window 1: its image at window base + 4 MiB. */
const REMOTE_TEXT = "-Wl,-Ttext-segment=0x40400000";
const RUSTFLAGS = [
  "--edition=2021",
  "-O",
  // A panic reaching an extern "C" entry must not unwind into the caller: the panic hook prints
  // the message on stderr, then abort() (a RemoteFault for the caller).
  "-C", "panic=abort",
  "-C", "codegen-units=1",
  "-C", "strip=debuginfo",
  "-C", "target-feature=+crt-static",
  "-C", "relocation-model=static",
  // GNU ld through cc, like the C programs (rust-lld, rustc's default, puts the image at 0x200000).
  "-C", "linker-features=-lld",
  "-C", "link-arg=-no-pie",
  "-C", "link-arg=-Wl,--build-id=none",
  `--remap-path-prefix=${ROOT}=.`,
];

/**
 * Source file extension -> the compiler and its arguments for one program. `link` are linker
 * flags (-Wl,...); `gc` false keeps every section.
 */
const PAIR_BUILDERS = {
  c: (src, out, link, gc) => ["gcc", ["-std=gnu11", ...PAIR_CCFLAGS, ...(gc ? GC : []), ...link, src, "-o", out]],
  cpp: (src, out, link, gc) => ["g++", ["-std=gnu++17", ...PAIR_CCFLAGS, ...(gc ? GC : []), ...link, src, "-o", out]],
  // rustc passes --gc-sections itself.
  rs: (src, out, link, gc) => [
    "rustc",
    [...RUSTFLAGS, ...[...link, ...(gc ? [] : ["-Wl,--no-gc-sections"])].flatMap((a) => ["-C", `link-arg=${a}`]), src, "-o", out],
  ],
};

function buildPairs(tmp) {
  if (!existsSync(join(ROOT, PAIRS_DIR))) return [];
  const outputs = [];
  const sources = readdirSync(join(ROOT, PAIRS_DIR))
    .map((f) => /^(.+)\.(c|cpp|rs)$/.exec(f))
    .filter((m) => m !== null)
    .sort((a, b) => (a[0] < b[0] ? -1 : 1));
  for (const [file, name, ext] of sources) {
    const remote = name.endsWith("_remote");
    const window = remote ? 1 : 0;
    const src = `${PAIRS_DIR}/${file}`;
    const elf = join(tmp, `pair-${name}.elf`);
    const link = remote ? [REMOTE_TEXT] : [];
    if (remote) {
      const [cmd, args] = PAIR_BUILDERS[ext](src, elf, link, false);
      run(cmd, args);
      for (const sym of [...exportedNames(elf)].sort()) link.push(`-Wl,-u,${sym}`);
    }
    const [cmd, args] = PAIR_BUILDERS[ext](src, elf, link, true);
    run(cmd, args);
    run("objcopy", ["--remove-section=.comment", elf]);
    const loads = verifySegments(elf, window, false);
    const bytes = readFileSync(elf);
    if (bytes.includes(Buffer.from(ROOT))) throw new Error(`${src}: the built program contains the path ${ROOT}`);
    const exported = [...exportedNames(elf)].sort();
    if (remote && exported.length === 0) throw new Error(`${src}: a remote without IPRE_EXPORT functions (section .ipre_export)`);
    outputs.push({ built: elf, target: `${PAIRS_DIR}/${name}.elf` });
    log(
      `pair: ${src} -> ${PAIRS_DIR}/${name}.elf (${cmd}, window ${window}, ${bytes.length} bytes; ` +
        loads.map((l) => `${l.flags} 0x${l.vaddr.toString(16)}+0x${l.memsz.toString(16)}`).join(", ") +
        (exported.length ? `; exports ${exported.join(", ")}` : "") + ")",
    );
  }
  return outputs;
}

// ------------------------------------------------------------------------------------ main

/** The first line of a tool's version, or "<tool>: missing". */
function version(cmd, args = ["--version"]) {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: "utf8" });
  if (r.error) return `${cmd}: missing`;
  return `${r.stdout}${r.stderr}`.split("\n")[0].trim();
}

/** musl's version: its libc.so prints it when run (next to the specs file musl-gcc uses). */
function muslVersion() {
  const wrapper = spawnSync("sh", ["-c", "cat \"$(command -v musl-gcc)\""], { encoding: "utf8" }).stdout ?? "";
  const specs = /-specs\s+"?([^"\s]+)"?/.exec(wrapper);
  if (!specs) return "musl-gcc: missing";
  const r = spawnSync(join(dirname(specs[1]), "libc.so"), [], { encoding: "utf8" });
  const m = /Version\s+(\S+)/.exec(`${r.stdout ?? ""}${r.stderr ?? ""}`);
  return m ? `musl ${m[1]}` : "musl: version unknown";
}

/** The tools' versions: the bytes are reproducible for these. */
function toolchain() {
  return [version("gcc"), version("ld"), version("ldd"), version("g++"), muslVersion(), version("rustc").replace(/\)$/, ") x86_64-unknown-linux-gnu"), ""].join("\n");
}

function main() {
  log(`gcc flags: ${[...GUEST_CFLAGS, ...GUEST_LDFLAGS].join(" ")}`);
  const tmp = mkdtempSync(join(tmpdir(), "ipre-guests-"));
  try {
    const tools = toolchain();
    const committedTools = join(ROOT, TOOLCHAIN_FILE);
    const toolsDiffer = existsSync(committedTools) && readFileSync(committedTools, "utf8") !== tools;
    let outputs;
    try {
      outputs = [...buildRuntime(tmp), ...buildExamples(tmp), ...buildLinux(tmp), ...buildPairs(tmp)];
    } catch (err) {
      if (!(check && toolsDiffer)) throw err;
      console.error(`build-guests --check: ${err instanceof Error ? err.message.split("\n")[0] : err}`);
    }
    const toolsFile = join(tmp, "toolchain.txt");
    writeFileSync(toolsFile, tools);
    if (check) {
      if (toolsDiffer) {
        console.error(
          `build-guests --check: ${outputs ? "the guests build, but " : ""}the toolchain differs from ${TOOLCHAIN_FILE}, so the bytes ` +
            `cannot be compared.\n  committed: ${readFileSync(committedTools, "utf8").trim().replace(/\n/g, "; ")}` +
            `\n  here:      ${tools.trim().replace(/\n/g, "; ")}`,
        );
        process.exit(3);
      }
      const diffs = [];
      for (const { built, target } of outputs) {
        const committed = join(ROOT, target);
        if (!existsSync(committed)) diffs.push(`${target}: missing (run node scripts/build-guests.mjs)`);
        else if (!readFileSync(committed).equals(readFileSync(built))) diffs.push(`${target}: differs from a fresh build`);
      }
      if (diffs.length) {
        console.error(`build-guests --check: ${diffs.length} file(s) out of date:\n  ${diffs.join("\n  ")}`);
        process.exit(1);
      }
      console.log(`build-guests --check: ${outputs.length} file(s) match a fresh build`);
    } else {
      outputs.push({ built: toolsFile, target: TOOLCHAIN_FILE });
      for (const { built, target } of outputs) {
        const dest = join(ROOT, target);
        const same = existsSync(dest) && readFileSync(dest).equals(readFileSync(built));
        if (!same) copyFileSync(built, dest);
        log(`${same ? "unchanged" : "wrote"} ${target}`);
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

try {
  main();
} catch (err) {
  console.error(`build-guests: ${err instanceof Error ? err.message : err}`);
  process.exit(2);
}
