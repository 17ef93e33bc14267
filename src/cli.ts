/**
 * `ipre` command line: doctor, run, demo, bench. Runs the same on Node (`npx ipre`), Bun
 * (`bun src/cli.ts`) and Deno (`deno run --allow-all src/cli.ts`).
 */
import process from "node:process";
import { readFileSync } from "node:fs";
import { libc } from "./ffi/index.ts";
import { IpreError, KvmError, TimeoutError } from "./errors.ts";
import { Machine, kvmInfo } from "./machine.ts";
import { parseElf } from "./guest/elf.ts";
import { WINDOW_SIZE, MiB } from "./guest/layout.ts";
import { kvmFlavour, kvmOpenHint, KVM_DEVICE } from "./kvm/system.ts";

const USAGE = `usage: ipre <command> [options]

commands:
  doctor [--json] [--device PATH]      check /dev/kvm, KVM flavour, capabilities and the FFI backend
  run <elf> <function> [int args...]   load a guest ELF and call a function; prints the result last
      [--memory MiB] [--timeout-ms N]
  symbols <elf> [--all]                a remote's exported functions as linker-script lines
                                       (name = 0xADDR;) for linking a caller against it
  demo                                 the IPRE key-value demo (caller VM calls a remote VM's store)
  bench latency|load|payload [--json]   the paper's experiments on this machine (ipre bench help)
`;

export interface Flags {
  positional: string[];
  options: Map<string, string | true>;
}

export function parseFlags(argv: string[]): Flags {
  const positional: string[] = [];
  const options = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      if (eq > 0) options.set(a.slice(2, eq), a.slice(eq + 1));
      else if (i + 1 < argv.length && !argv[i + 1]!.startsWith("--") && !BOOLEAN_FLAGS.has(a.slice(2))) options.set(a.slice(2), argv[++i]!);
      else options.set(a.slice(2), true);
    } else positional.push(a);
  }
  return { positional, options };
}
const BOOLEAN_FLAGS = new Set(["json", "help", "quiet"]);

export function numberOption(flags: Flags, name: string, fallback: number): number {
  const v = flags.options.get(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (v === true || !Number.isFinite(n) || n <= 0) throw new IpreError(`--${name} needs a positive number`);
  return n;
}

function out(line: string): void {
  process.stdout.write(line + "\n");
}

function doctor(flags: Flags): number {
  const device = flags.options.get("device");
  if (device === true) throw new IpreError("--device needs a path");
  const report: Record<string, unknown> = { runtime: libc.runtime, ffi: libc.backend, device: device ?? KVM_DEVICE, flavour: kvmFlavour(device) };
  try {
    const info = kvmInfo(device);
    report.kvm = info;
    report.ok = true;
  } catch (e) {
    report.ok = false;
    report.error = e instanceof Error ? e.message : String(e);
    if (e instanceof KvmError) report.fix = kvmOpenHint(e.errno);
  }
  if (flags.options.has("json")) {
    out(JSON.stringify(report));
    return report.ok ? 0 : 1;
  }
  out(`runtime      ${libc.runtime}`);
  out(`ffi          ${libc.backend}`);
  if (!report.ok) {
    out(`kvm          NOT USABLE (flavour ${report.flavour as string}): ${report.error as string}`);
    if (report.fix) out(`fix          ${report.fix as string}`);
    return 1;
  }
  const info = report.kvm as ReturnType<typeof kvmInfo>;
  out(`kvm          ${report.device as string}, API ${info.api}, flavour ${info.flavour}${info.flavour === "pvm" ? " (paravirtual shadow paging: exits cost tens of microseconds)" : ""}`);
  out(`kvm_run      ${info.vcpuMmapSize} bytes, ${info.cpuidEntries} supported CPUID entries`);
  out(`capabilities ${Object.entries(info.capabilities).map(([k, v]) => `${k}=${v}`).join(" ")}`);
  return 0;
}

export function parseIntArg(s: string): number | bigint {
  if (!/^-?(0x[0-9a-f]+|\d+)$/i.test(s)) throw new IpreError(`argument "${s}" is not an integer`);
  const b = BigInt(s.startsWith("-") ? -BigInt(s.slice(1)) : BigInt(s));
  return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
}

function run(flags: Flags): number {
  const [path, fn, ...rest] = flags.positional;
  if (!path || !fn) throw new IpreError("usage: ipre run <elf> <function> [int args...]");
  const elf = parseElf(new Uint8Array(readFileSync(path)));
  const window = Math.floor(elf.lowest / WINDOW_SIZE);
  const memory = numberOption(flags, "memory", 32) * MiB;
  // Every argument is checked before a VM exists: bad input fails the same with or without KVM.
  const args = rest.map(parseIntArg);
  const timeoutMs = flags.options.has("timeout-ms") ? numberOption(flags, "timeout-ms", 0) : 0;
  if (!elf.symbols.has(fn)) throw new IpreError(`${path} has no symbol "${fn}"`);
  using m = Machine.create({ window, memory, name: path.split("/").pop() ?? path });
  m.load(elf);
  const result = m.invokeBigInt(fn, args, { timeoutMs });
  out(String(result));
  return 0;
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
  if (!path) throw new IpreError("usage: ipre symbols <elf> [--all]");
  const elf = parseElf(new Uint8Array(readFileSync(path)));
  const exported = new Set(elf.exports);
  const all = flags.options.has("all");
  const rows = [...elf.symbols.values()]
    .filter((s) => (all ? (s.bind === "global" || s.bind === "weak") && (s.type === "func" || s.type === "object") && !PRIVATE_LIBC.has(s.name) : exported.has(s.name)))
    .sort((a, b) => a.value - b.value || a.name.localeCompare(b.name));
  out(`/* ${rows.length} symbols of ${path.split("/").pop()}, by ipre symbols${all ? " --all" : ""}; only "exported" ones may be entered. */`);
  for (const s of rows) out(`${s.name} = 0x${s.value.toString(16)}; /* ${s.type}${exported.has(s.name) ? ", exported" : ""} */`);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const flags = parseFlags(argv);
  const [command] = flags.positional;
  flags.positional.shift();
  try {
    switch (command) {
      case "doctor":
        return doctor(flags);
      case "run":
        return run(flags);
      case "symbols":
        return symbols(flags);
      case "demo":
        return (await import("./demo.ts")).demo(flags);
      case "bench":
        return await (await import("./bench.ts")).bench(flags);
      case undefined:
      case "help":
        out(USAGE);
        return command ? 0 : 2;
      default:
        process.stderr.write(`ipre: unknown command "${command}"\n${USAGE}`);
        return 2;
    }
  } catch (caught) {
    // `using` wraps an error thrown while disposing after another one: report the first cause
    // and print every error it carries.
    const [e, ...later] = flattenSuppressed(caught);
    const also = () => {
      for (const x of later) process.stderr.write(`ipre: then, while cleaning up: ${x instanceof Error ? `${x.name}: ${x.message}` : String(x)}\n`);
    };
    if (e instanceof TimeoutError) {
      process.stderr.write(`ipre: ${e.name}: ${e.message}\n`);
      also();
      return 124;
    }
    if (e instanceof IpreError) {
      process.stderr.write(`ipre: ${e.name}: ${e.message}\n`);
      also();
      return 1;
    }
    throw caught;
  }
}

/**
 * The errors inside a (nested) SuppressedError, the first one thrown first. Duck-typed: on Node 20
 * the `using` helper emitted by tsc builds its own SuppressedError.
 */
function flattenSuppressed(e: unknown): unknown[] {
  if (e instanceof Error && e.name === "SuppressedError" && "error" in e && "suppressed" in e) return [...flattenSuppressed(e.suppressed), ...flattenSuppressed(e.error)];
  return [e];
}

if ((import.meta as { main?: boolean }).main) {
  process.exitCode = await main(process.argv.slice(2));
}
