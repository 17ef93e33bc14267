/** What the benchmark ran on: CPU, cores, kernel, KVM flavour, JS runtime and FFI backend. */
import { readFileSync } from "node:fs";
import os from "node:os";
import process from "node:process";
import { libc } from "../ffi/index.ts";
import { kvmInfo } from "../machine/machine.ts";

export interface MachineDescription {
  cpu: string;
  cores: number;
  kernel: string;
  kvm: { flavour: string; api: number } | { error: string };
  runtime: string;
  runtime_version: string;
  ffi: string;
  hostname: string;
  date: string;
  /** 1, 5, 15 minute load averages when the run started (other work on the machine). */
  loadavg: number[];
}

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (m) return m[1]!.trim();
  } catch {
    // fall through
  }
  return os.cpus()[0]?.model ?? "unknown";
}

/** Online CPUs this process may run on. */
export function coreCount(): number {
  const avail = (os as { availableParallelism?: () => number }).availableParallelism;
  const n = typeof avail === "function" ? avail() : os.cpus().length;
  return n > 0 ? n : 1;
}

export function runtimeVersion(): string {
  const g = globalThis as { Bun?: { version: string }; Deno?: { version: { deno: string; v8: string } } };
  if (g.Bun) return `bun ${g.Bun.version}`;
  if (g.Deno) return `deno ${g.Deno.version.deno} (v8 ${g.Deno.version.v8})`;
  return `node ${process.version}`;
}

export function describeMachine(): MachineDescription {
  let kvm: MachineDescription["kvm"];
  try {
    const info = kvmInfo();
    kvm = { flavour: info.flavour, api: info.api };
  } catch (e) {
    kvm = { error: e instanceof Error ? e.message : String(e) };
  }
  return {
    cpu: cpuModel(),
    cores: coreCount(),
    kernel: `${os.type()} ${os.release()}`,
    kvm,
    runtime: libc.runtime,
    runtime_version: runtimeVersion(),
    ffi: libc.backend,
    hostname: os.hostname(),
    date: new Date().toISOString(),
    loadavg: os.loadavg().map((v) => Math.round(v * 100) / 100),
  };
}

/** The subtitle of a plot: the CPU, cores, KVM flavour and runtime it was measured on (machine.json has the rest). */
export function plotSubtitle(d: MachineDescription, extra?: string): string {
  const kvm = "flavour" in d.kvm ? `KVM ${d.kvm.flavour}` : "no KVM";
  return [`${d.cpu}, ${d.cores} cores`, kvm, d.runtime_version, extra].filter(Boolean).join("; ");
}

export function machineLine(d: MachineDescription): string {
  const kvm = "flavour" in d.kvm ? `KVM ${d.kvm.flavour} (API ${d.kvm.api})` : `KVM unavailable: ${d.kvm.error}`;
  return `${d.runtime_version}, ffi ${d.ffi}; ${d.cpu}, ${d.cores} cores; ${d.kernel}; ${kvm}; loadavg ${d.loadavg.join(" ")}`;
}
