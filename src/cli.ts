/**
 * `ipre` command line: doctor, run, exec, symbols, demo, bench. Runs the same on Node (`npx ipre`), Bun
 * (`bun src/cli.ts`) and Deno (`deno run --allow-all src/cli.ts`).
 */
import process from "node:process";
import { existsSync, readFileSync, writeSync } from "node:fs";
import { libc } from "./ffi/index.ts";
import { CompileError, flattenSuppressed, GuestFault, hex, IpreError, KvmError, LinuxProgramError, TimeoutError } from "./errors.ts";
import { compileFile } from "./guest/compile.ts";
import { examplePath, type ExampleKind } from "./examples.ts";
import { Machine, kvmInfo } from "./machine/machine.ts";
import { parseElf, type ElfImage } from "./guest/elf.ts";
import { isLinuxProgram } from "./linux/loader.ts";
import { MAX_WINDOW, WINDOW_SIZE } from "./guest/layout.ts";
import { connect } from "./ipre/connect.ts";
import { checkOptions, type Flags, parseFlags as parseFlagsOf, UsageError } from "./flags.ts";
import { flavourCapabilities, kvmFlavour, kvmOpenHint, KVM_DEVICE } from "./kvm/system.ts";
import { envAll, isPermissionError, permissionLine, requirePermission } from "./env.ts";
import { VERSION } from "./version.ts";
import { COMMANDS, commandHelp, USAGE } from "./cli-help.ts";
import { EXEC_OPTIONS, execFiles, intArgOption, memoryOption, noMoreWords, parseExecArgs, parseIntArg, stringOption, timeoutOption } from "./cli-options.ts";

export { BOOLEAN_FLAGS, checkOptions, type Flags, parseFlags, UsageError } from "./flags.ts";
export { execFiles, parseExecArgs, parseIntArg } from "./cli-options.ts";

/** Hints printed after an error's line (a #PF in a window with no remote). */
const hints = new WeakMap<object, string>();

function out(line: string): void {
  try {
    process.stdout.write(line + "\n");
  } catch (e) {
    // Deno (and Bun) may throw a closed pipe synchronously; Node emits it as an "error" event.
    if (isBrokenPipe(e)) process.exit(0);
    throw e;
  }
}

/** The reader of stdout went away (`ipre symbols x.elf | head -2`). */
function isBrokenPipe(e: unknown): boolean {
  const x = e as { code?: unknown; name?: unknown } | null;
  return x?.code === "EPIPE" || x?.name === "BrokenPipe";
}

let stdoutGuarded = false;
/** Exit quietly (status 0) when stdout's reader closes the pipe, as `head` does, on every runtime. */
function guardStdout(): void {
  if (stdoutGuarded) return;
  stdoutGuarded = true;
  process.stdout.on("error", (e: unknown) => {
    if (isBrokenPipe(e)) process.exit(0);
    throw e;
  });
}

/** A file's bytes, or an IpreError that names the file and says why in one line. */
function readInput(path: string, what = "file"): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (e) {
    if (isPermissionError(e)) throw e;
    const code = (e as { code?: unknown }).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "is a directory" : e instanceof Error ? e.message : String(e);
    throw new IpreError(`cannot read ${what} ${path}: ${why}`);
  }
}

/**
 * The bytes of a program argument: the file when it exists, else the package's example guest of
 * that name (`add`, `kvstore`, `hello`: guests/examples/NAME.elf, guests/linux/NAME.elf).
 */
function readProgram(word: string, what: string, kinds: readonly ExampleKind[], command: string): Uint8Array {
  requirePermission("read", word); // Deno without --allow-read: its one line, not "no such file"
  if (!existsSync(word)) {
    const example = examplePath(word, kinds);
    if (example) return readInput(example, what);
    if (/^[\w-]+$/.test(word)) throw new IpreError(`cannot read ${what} ${word}: no such file, and no example guest is called ${word} (ipre ${command} --help lists them)`);
  }
  return readInput(word, what);
}

/** A C file compiled for a window (cached): an unreadable file is one line, as for an ELF. */
function compileC(path: string, what: string, options: Parameters<typeof compileFile>[1]): Uint8Array {
  readInput(path, what);
  return compileFile(path, options);
}

function doctor(flags: Flags): number {
  noMoreWords(flags, "doctor", 0);
  const device = flags.options.get("device");
  if (device === true) throw new UsageError("--device needs a path");
  const report: Record<string, unknown> = { runtime: libc.runtime, ffi: libc.backend, device: device ?? KVM_DEVICE, flavour: kvmFlavour(device) };
  try {
    const info = kvmInfo(device);
    report.kvm = info;
    report.ok = true;
  } catch (e) {
    report.ok = false;
    report.error = e instanceof Error ? e.message : String(e);
    if (e instanceof KvmError) report.fix = kvmOpenHint(e.errno, device);
  }
  const info = report.ok ? (report.kvm as ReturnType<typeof kvmInfo>) : undefined;
  // What works on this flavour: a static table per flavour (src/kvm/system.ts), nothing probed.
  const capabilities = flavourCapabilities(info ? info.flavour : "none", info?.cpuidPcid);
  report.capabilities = capabilities;
  if (flags.options.has("json")) {
    out(JSON.stringify(report));
    return report.ok ? 0 : 1;
  }
  const works = () => {
    const line = (label: string, c: { ok: boolean; why: string }) => out(`${label.padEnd(13)}${c.ok ? "yes" : "no "}  ${c.why}`);
    line("ipre", capabilities.ipre);
    line("linux", capabilities.linuxPrograms);
    line("pcid", capabilities.pcid);
  };
  out(`runtime      ${libc.runtime}`);
  out(`ffi          ${libc.backend}`);
  if (!report.ok) {
    const error = report.fix ? (report.error as string).replace(` (${report.fix as string})`, "") : (report.error as string);
    out(`kvm          NOT USABLE (flavour ${report.flavour as string}): ${error}`);
    if (report.fix) out(`fix          ${report.fix as string}`);
    works();
    return 1;
  }
  if (info === undefined) return 1; // (report.ok: set with it)
  out(`kvm          ${report.device as string}, API ${info.api}, flavour ${info.flavour}${info.flavour === "pvm" ? " (paravirtual shadow paging: exits cost tens of microseconds)" : ""}`);
  out(`kvm_run      ${info.vcpuMmapSize} bytes, ${info.cpuidEntries} supported CPUID entries`);
  out(`kvm_caps     ${Object.entries(info.capabilities).map(([k, v]) => `${k}=${v}`).join(" ")}`);
  works();
  return 0;
}

/**
 * `ipre run <elf> <fn> [ints]`. An ELF records no arity, so the registers of missing arguments
 * hold 0: a call with no arguments at all gets a note on stderr unless `--argc 0` says that is
 * meant, and `--argc N` turns any other count into a usage error.
 */
function run(flags: Flags): number {
  const [path, fn, ...rest] = flags.positional;
  if (!path) throw new UsageError("run needs an ELF file and a function name");
  if (!fn) throw new UsageError(`run needs a function name after ${path}`);
  if (rest.length > 6) throw new UsageError(`at most 6 integer arguments (x86-64 argument registers), got ${rest.length}`);
  const argc = intArgOption(flags, "argc", 0, 6);
  if (argc !== undefined && argc !== rest.length) throw new UsageError(`${fn} takes ${argc} argument${argc === 1 ? "" : "s"} (--argc ${argc}), got ${rest.length}`);
  const remotePath = stringOption(flags, "remote");
  for (const o of ["allow", "loan", "remote-window"]) if (flags.options.has(o) && !remotePath) throw new UsageError(`--${o} needs --remote <elf>`);
  const loan = stringOption(flags, "loan") ?? "none";
  if (loan !== "none" && loan !== "read") throw new UsageError(`--loan is "read" or "none", not "${loan}"`);
  const allow = stringOption(flags, "allow")?.split(",").map((x) => x.trim()).filter((x) => x);
  // Every argument is checked before a file is read or a VM exists: bad input fails the same
  // with or without KVM.
  const args = rest.map(parseIntArg);
  const memory = memoryOption(flags, 32);
  const timeoutMs = timeoutOption(flags, "timeout-ms");
  // A C caller goes in window 0 and is linked against the remote, so the remote is built first.
  const cCaller = path.endsWith(".c");
  const callerBytes = cCaller ? undefined : readProgram(path, "ELF", ["examples", "linux"], "run");
  const callerElf = callerBytes ? parseProgram(callerBytes) : undefined;
  const window = callerElf ? Math.floor(callerElf.lowest / WINDOW_SIZE) : 0;
  const remoteWindowOption = remotePath ? intArgOption(flags, "remote-window", 0, MAX_WINDOW) : undefined;
  const remoteBytes = !remotePath ? undefined
    : remotePath.endsWith(".c") ? compileC(remotePath, "remote C file", { window: remoteWindowOption ?? (window === 1 ? 0 : 1) })
    : readProgram(remotePath, "remote ELF", ["examples", "linux"], "run");
  const remoteElf = remoteBytes ? parseProgram(remoteBytes) : undefined;
  const remoteWindow = remoteElf ? (remoteWindowOption ?? Math.floor(remoteElf.lowest / WINDOW_SIZE)) : undefined;
  const bytes = callerBytes ?? compileC(path, "C file", { window, linkAgainst: remoteElf ? [remoteElf] : [] });
  const elf = callerElf ?? parseProgram(bytes);
  if (!elf.symbols.has(fn)) throw new IpreError(`${path} has no symbol "${fn}"`);
  if (remoteWindow === window) throw new IpreError(`${remotePath} is linked for window ${window}, the caller's window: a remote needs its own window (--remote-window N)`);
  for (const a of allow ?? []) if (!remoteElf?.symbols.has(a)) throw new IpreError(`--allow: ${remotePath} has no symbol "${a}"`);
  if (argc === undefined && args.length === 0) process.stderr.write(`ipre: note: ${fn} called with no arguments; an ELF records no arity, so any it takes are 0 (--argc 0 says none are meant)\n`);

  // With --json, stdout is the JSON document alone: Linux programs print to stderr instead.
  const json = flags.options.has("json");
  // The environment is read only for a Linux program (Deno without --allow-env cannot read it).
  const linux = { stdout: json ? (d: Uint8Array) => void writeSync(2, d) : undefined, get env() {
    return processEnv();
  } };
  using m = Machine.create({ window, memory, name: basename(path) });
  if (!elf.linux) m.load(elf);
  // A Linux remote starts here: its main() runs to ipre_wait_for_requests().
  using remote = remoteElf && remotePath ? Machine.create({ window: remoteWindow, name: basename(remotePath), ...(remoteElf.linux ? { program: remoteBytes, timeoutMs, linux: { ...linux, argv: [remotePath] } } : {}) }) : undefined;
  if (remoteElf && !remoteElf.linux) remote?.load(remoteElf);
  using _conn = remote ? connect(m, remote, { allow, loan }) : undefined;
  let result: bigint;
  try {
    // A Linux caller starts once connected (its main may look up remote functions), then serves the call.
    if (elf.linux) {
      const code = m.exec(bytes, { ...linux, argv: [path], timeoutMs });
      if (code > 0) throw new IpreError(`${path} exited with code ${code} before ${fn} was called (a program that serves calls calls ipre_wait_for_requests())`);
      if (code === 0) process.stderr.write(`ipre: note: ${path} exited before ${fn} was called; calling it on the memory it left\n`);
    }
    result = m.invokeBigInt(fn, args, { timeoutMs });
  } catch (e) {
    if (e instanceof GuestFault && e.vector === 14) {
      const w = Math.floor(e.cr2 / WINDOW_SIZE);
      if (w >= 0 && w <= MAX_WINDOW && w !== window && w !== remoteWindow) {
        hints.set(e, `${hex(e.cr2)} is in window ${w}, where no remote is connected: pass --remote <elf linked for window ${w}>`);
      }
    }
    throw e;
  }
  if (json) {
    // int64 does not fit a JSON number: the result and the arguments are decimal strings.
    out(JSON.stringify({ elf: path, function: fn, args: args.map(String), result: String(result), window, ...(remote ? { remote: remotePath, remoteWindow } : {}) }));
  } else out(String(result));
  return 0;
}

/** An ELF for `run`: a static Linux program (started, not only loaded), or an ipre guest. */
function parseProgram(bytes: Uint8Array): ElfImage & { linux: boolean } {
  const asLinux = parseElf(bytes, { linux: true });
  if (isLinuxProgram(asLinux)) return Object.assign(asLinux, { linux: true });
  return Object.assign(parseElf(bytes), { linux: false });
}

/**
 * This process's environment, as a Linux program gets it from exec; empty where it may not be
 * read (Deno without --allow-env: the README says so).
 */
function processEnv(): Record<string, string> {
  return envAll() ?? {};
}

/**
 * `ipre exec <program> [args...]`: Machine.exec with argv = [program as given, ...args], this
 * process's environment and stdin, the program's stdout/stderr written here as it writes them,
 * and the files of --allow-read and --mount.
 */
function exec(flags: Flags & { lists?: Map<string, string[]> }): number {
  const [path, ...args] = flags.positional;
  if (!path) throw new UsageError("exec needs a program (a static Linux ELF)");
  const memory = memoryOption(flags, 64);
  const timeoutMs = timeoutOption(flags, "timeout");
  const files = execFiles(flags);
  const program = readProgram(path, "program", ["linux", "examples"], "exec");
  // A bad file is an ElfError before any VM exists; an ipre guest (no entry point) is no program.
  const elf = parseElf(program, { linux: true });
  if (elf.entry === 0) throw new IpreError(`${path} has no entry point: not a Linux program (ipre guests are called with ipre run)`);
  // The window the program is linked for (a static-PIE is placed in window 0).
  const window = Math.floor(elf.lowest / WINDOW_SIZE);
  using m = Machine.create({ memory, window, name: basename(path) });
  try {
    let code: number;
    try {
      code = m.exec(program, { argv: [path, ...args], env: processEnv(), timeoutMs, stdin: "inherit", files });
    } catch (e) {
      if (e instanceof RangeError && e.message.startsWith("files:")) throw new IpreError(e.message); // a --mount or --allow-read path
      throw e;
    }
    if (code === Machine.WAITING) {
      process.stderr.write(`ipre: ${path} called ipre_wait_for_requests(): it serves calls (ipre run ${path} <function> calls one)\n`);
      return 0;
    }
    return code;
  } catch (e) {
    if (e instanceof LinuxProgramError && e.signal !== undefined) {
      process.stderr.write(`ipre: ${e.name}: ${e.message}\n`);
      return 128 + e.signal;
    }
    throw e;
  }
}

function basename(path: string): string {
  return path.split("/").pop() || path;
}

/** The guest libc that every example links privately: never redirect a caller's copy to it. */
const PRIVATE_LIBC = new Set(["memcpy", "memmove", "memset", "memcmp", "strlen"]);

/**
 * `ipre symbols remote.elf > remote.syms.ld`: the remote's IPRE exports (with --all, every global
 * function and object) as absolute symbol assignments a caller's link can use (`-T remote.syms.ld`
 * or as an extra input); only exported functions may be entered at run time.
 */
function symbols(flags: Flags): number {
  const [path] = flags.positional;
  if (!path) throw new UsageError("symbols needs an ELF file");
  noMoreWords(flags, "symbols", 1);
  const elf = parseElf(readProgram(path, "ELF", ["examples", "linux"], "symbols"), { linux: true }); // Linux programs too (PT_TLS)
  const exported = new Set(elf.exports);
  const all = flags.options.has("all");
  const rows = [...elf.symbols.values()]
    .filter((s) => (all ? (s.bind === "global" || s.bind === "weak") && (s.type === "func" || s.type === "object") && !PRIVATE_LIBC.has(s.name) : exported.has(s.name)))
    .sort((a, b) => a.value - b.value || a.name.localeCompare(b.name));
  if (flags.options.has("json")) {
    out(JSON.stringify({ elf: path, all, symbols: rows.map((s) => ({ name: s.name, address: `0x${s.value.toString(16)}`, type: s.type, exported: exported.has(s.name) })) }));
    return 0;
  }
  out(`/* ${rows.length} symbols of ${path.split("/").pop()}, by ipre symbols${all ? " --all" : ""}; only "exported" ones may be entered. */`);
  for (const s of rows) out(`${s.name} = 0x${s.value.toString(16)}; /* ${s.type}${exported.has(s.name) ? ", exported" : ""} */`);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  guardStdout();
  // -h is --help, before a bare `--` only (after it, "-h" is an argument).
  const dd = argv.indexOf("--");
  // exec's options end at the program: the words after it are the program's, whatever they look like.
  const flags = argv[0] === "exec" ? parseExecArgs(argv.slice(1)) : parseFlagsOf(argv.map((a, i) => (a === "-h" && (dd < 0 || i < dd) ? "--help" : a)));
  if (argv[0] === "exec") flags.positional.unshift("exec");
  const help = flags.options.has("help");
  const [command] = flags.positional;
  if (command === undefined && flags.options.has("version")) {
    out(`ipre ${VERSION}`);
    return 0;
  }
  flags.positional.shift();
  if (command === undefined || command === "help") {
    const topic = command === "help" ? flags.positional[0] : undefined;
    if (flags.positional.length > 1) return usageLine(`help takes one command (got "${flags.positional[1]}")`, "");
    if (topic === "bench") return (await import("./bench.ts")).bench({ positional: flags.positional.slice(1), options: new Map([["help", true]]) });
    if (topic !== undefined && !Object.hasOwn(COMMANDS, topic)) return unknownCommand(topic);
    if (topic !== undefined) process.stdout.write(commandHelp(topic));
    else if (command || help) process.stdout.write(USAGE);
    else process.stderr.write(USAGE);
    return command || help ? 0 : 2;
  }
  if (!Object.hasOwn(COMMANDS, command)) return unknownCommand(command);
  if (help && command !== "bench") {
    process.stdout.write(commandHelp(command));
    return 0;
  }
  try {
    switch (command) {
      case "doctor":
        checkOptions(flags, ["json", "device"], command);
        return doctor(flags);
      case "run":
        checkOptions(flags, ["memory", "timeout-ms", "argc", "remote", "remote-window", "allow", "loan", "json"], command);
        return run(flags);
      case "exec":
        checkOptions(flags, EXEC_OPTIONS, command);
        return exec(flags);
      case "symbols":
        checkOptions(flags, ["all", "json"], command);
        return symbols(flags);
      case "demo":
        checkOptions(flags, ["json"], command);
        noMoreWords(flags, "demo", 0);
        return (await import("./demo.ts")).demo(flags);
      default:
        return await (await import("./bench.ts")).bench(flags);
    }
  } catch (caught) {
    // `using` wraps an error thrown while disposing after another one: report the first cause
    // and print every error it carries.
    const [e, ...later] = flattenSuppressed(caught);
    const also = () => {
      const hint = e instanceof Object ? hints.get(e) : undefined;
      if (hint) process.stderr.write(`ipre: hint: ${hint}\n`);
      for (const x of later) process.stderr.write(`ipre: then, while cleaning up: ${x instanceof Error ? `${x.name}: ${x.message}` : String(x)}\n`);
    };
    if (e instanceof UsageError) {
      const sub = command === "bench" && flags.positional[0] ? ` ${flags.positional[0]}` : "";
      return usageLine(e.message, ` ${command}${sub}`);
    }
    if (isPermissionError(e)) {
      process.stderr.write(`ipre: ${permissionLine(e)}\n`);
      return 1;
    }
    if (e instanceof TimeoutError) {
      process.stderr.write(`ipre: ${e.name}: ${e.message}\n`);
      also();
      return 124;
    }
    if (e instanceof IpreError) {
      // The compiler's own messages first, as it printed them (file:line:column).
      if (e instanceof CompileError && e.output) process.stderr.write(e.output.endsWith("\n") ? e.output : `${e.output}\n`);
      process.stderr.write(`ipre: ${e.name}: ${e.message}\n`);
      also();
      return 1;
    }
    throw caught;
  }
}

/** A usage error: one line on stderr naming the --help to read, exit 2. */
function usageLine(message: string, command: string): number {
  process.stderr.write(`ipre: ${message} (see ipre${command} --help)\n`);
  return 2;
}

function unknownCommand(command: string): number {
  process.stderr.write(`ipre: unknown command "${command}" (see ipre --help; commands: ${Object.keys(COMMANDS).join(", ")})\n`);
  return 2;
}

if ((import.meta as { main?: boolean }).main) {
  process.exitCode = await main(process.argv.slice(2));
}
