/**
 * Refreshes the README's two plots from a real run on this machine:
 *
 *   npm run readme-plots                                   # 10,000 samples / ops (the defaults)
 *   npm run readme-plots -- --iterations 2000 --ops 2000   # a quick run
 *
 * (or `node_modules/.bin/bun scripts/readme-plots.ts …`). It runs `ipre bench latency` and
 * `ipre bench fanin --workers 1,2,4` on Bun, copies their latency.svg and fanin.svg to
 * docs/img/, writes docs/img/README.md (what was measured, on what, and the benches' tables), and
 * rewrites the README's `<!-- plot: latency -->` and `<!-- plot: fanin -->` blocks (the image and
 * a caption naming the machine, the KVM flavour, the runtime, the load average and the sizes).
 * Run it on a quiet machine: other processes show up in the numbers.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { MachineDescription } from "../src/bench/machine-info.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

function option(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(args[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} needs a positive integer`);
  return v;
}

/** Runs `ipre bench …` on Bun, results in `out`; progress and tables go to this terminal. */
function bench(args: string[], out: string): void {
  const cmd = [join(ROOT, "node_modules/.bin/bun"), join(ROOT, "src/cli.ts"), "bench", ...args, "--out", out];
  process.stderr.write(`$ ipre bench ${args.join(" ")}\n`);
  const r = spawnSync(cmd[0]!, cmd.slice(1), { cwd: ROOT, stdio: "inherit" });
  if (r.status !== 0) throw new Error(`ipre bench ${args.join(" ")} failed (exit ${r.status})`);
}

interface Run {
  machine: MachineDescription;
  config: { iterations?: number; ops?: number; warmup: number; workers?: number[] };
  summary: string;
}

function read(dir: string): Run {
  const results = JSON.parse(readFileSync(join(dir, "results.json"), "utf8")) as Pick<Run, "machine" | "config">;
  return { machine: results.machine, config: results.config, summary: readFileSync(join(dir, "summary.txt"), "utf8") };
}

/** "AMD EPYC, 2 cores, KVM pvm, bun 1.4.5": for alt texts. */
function short(m: MachineDescription): string {
  return `${m.cpu}, ${m.cores} cores, KVM ${"flavour" in m.kvm ? m.kvm.flavour : "none"}, ${m.runtime_version}`;
}

/** What a plot was measured on, and how much. */
function facts(m: MachineDescription, sizes: string): string {
  const kvm = "flavour" in m.kvm ? `KVM flavour ${m.kvm.flavour}` : "no KVM";
  return `${m.date.slice(0, 10)}, ${m.cpu}, ${m.cores} cores, ${m.kernel}, ${kvm}, ${m.runtime_version}; ${sizes}; load average ${m.loadavg[0]} at the start (other processes count as load)`;
}

/** The caption under a plot in the README. */
function caption(m: MachineDescription, sizes: string): string {
  return `*Measured by \`npm run readme-plots\` on ${facts(m, sizes)}. The benches' tables: [docs/img/README.md](docs/img/README.md).*`;
}

/** Replaces the body of `<!-- plot: NAME -->` … `<!-- /plot -->` in the README. */
function replaceBlock(readme: string, name: string, body: string): string {
  const re = new RegExp(`(<!-- plot: ${name} -->\\n)[\\s\\S]*?(<!-- /plot -->)`);
  if (!re.test(readme)) throw new Error(`README.md has no "<!-- plot: ${name} -->" … "<!-- /plot -->" block`);
  return readme.replace(re, (_all, open: string, close: string) => `${open}${body}\n${close}`);
}

function main(args: string[]): void {
  const iterations = option(args, "iterations", 10_000);
  const ops = option(args, "ops", 10_000);
  const tmp = mkdtempSync(join(tmpdir(), "ipre-readme-plots-"));
  try {
    const latencyArgs = ["latency", "--iterations", String(iterations)];
    const faninArgs = ["fanin", "--workers", "1,2,4", "--ops", String(ops)];
    bench(latencyArgs, join(tmp, "latency"));
    bench(faninArgs, join(tmp, "fanin"));
    const latency = read(join(tmp, "latency"));
    const fanin = read(join(tmp, "fanin"));

    const img = join(ROOT, "docs/img");
    mkdirSync(img, { recursive: true });
    copyFileSync(join(tmp, "latency/latency.svg"), join(img, "latency.svg"));
    copyFileSync(join(tmp, "fanin/fanin.svg"), join(img, "fanin.svg"));

    const latencySizes = `${latency.config.iterations} samples per row after ${latency.config.warmup} warm-up`;
    const faninSizes = `${fanin.config.ops} ops per worker after ${fanin.config.warmup} warm-up, ${fanin.config.workers?.join(", ")} workers`;
    writeFileSync(
      join(img, "README.md"),
      [
        "# The README's plots",
        "",
        "Written by `npm run readme-plots` (scripts/readme-plots.ts), which ran, on Bun:",
        "",
        "```sh",
        `ipre bench ${latencyArgs.join(" ")}`,
        `ipre bench ${faninArgs.join(" ")}`,
        "```",
        "",
        `- \`latency.svg\`, measured on ${facts(latency.machine, latencySizes)}.`,
        `- \`fanin.svg\`, measured on ${facts(fanin.machine, faninSizes)}.`,
        "",
        "What the benches printed:",
        "",
        "```",
        latency.summary.trimEnd(),
        "```",
        "",
        "```",
        fanin.summary.trimEnd(),
        "```",
        "",
      ].join("\n"),
    );

    let readme = readFileSync(join(ROOT, "README.md"), "utf8");
    readme = replaceBlock(readme, "latency", `![ipre bench latency: a histogram of round-trip times per operation (${short(latency.machine)})](docs/img/latency.svg)\n\n${caption(latency.machine, latencySizes)}`);
    readme = replaceBlock(readme, "fanin", `![ipre bench fanin: operations per second against client workers (${short(fanin.machine)})](docs/img/fanin.svg)\n\n${caption(fanin.machine, faninSizes)}`);
    writeFileSync(join(ROOT, "README.md"), readme);
    process.stderr.write("wrote docs/img/latency.svg, docs/img/fanin.svg, docs/img/README.md and the README's captions\n");
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

main(process.argv.slice(2));
