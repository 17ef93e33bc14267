/**
 * Cost of reset(), Machine.fork(snapshot) and Machine.create(+load), 200 samples each (p50, p90,
 * min, mean in microseconds), printed as a table and then as one JSON line.
 *
 *   node_modules/.bin/bun bench/reset.ts [--iterations 200]
 *   node_modules/.bin/deno run --allow-all bench/reset.ts [--iterations 200]
 *   node --import ./test/node-ts.mjs bench/reset.ts [--iterations 200]     (Node 20: TS via hooks)
 *
 * Rows:
 *  - reset/N pages (host): the host dirtied N pages of user memory with Machine.write (8 bytes
 *    per page) since the last reset. Host writes and guest writes both copy-on-write the same
 *    private pages of the snapshot mapping, which MADV_DONTNEED drops.
 *  - reset/N pages (guest): the guest dirtied N pages with faults.elf poke() (one vmcall per
 *    page, outside the timed region); the guest's stage-2 / shadow mappings of those pages must
 *    be invalidated too.
 *  - fork: Machine.fork(snapshot) of a 32 MiB machine (VM, memslot, vCPU, CPUID, sregs, boot).
 *    fork+call adds the first call (ok()). close(fork) is timed separately.
 *  - create+load: Machine.create({ program: add.elf }) (memfd, VM, vCPU, runtime area, page
 *    tables, boot, ELF load and the page-table service run). close(create) likewise.
 * Anchor (TinyKVM, ARM64): ~33 us reset, ~88 us fork.
 */
import process from "node:process";
import { libc } from "../src/ffi/index.ts";
import { Machine } from "../src/machine/machine.ts";
import { kvmFlavour } from "../src/kvm/system.ts";
import { PAGE_SIZE } from "../src/guest/layout.ts";
import { exampleElf as elf } from "../src/examples.ts";
import { checkOptions, intOption, parseFlags } from "../src/flags.ts";
import { percentile } from "../src/bench/stats.ts";

const flags = parseFlags(process.argv.slice(2));
checkOptions(flags, ["iterations"], "bench/reset.ts");
const ITER = intOption(flags, "iterations", 200);
const WARMUP = Math.max(5, Math.floor(ITER / 10));

interface Row {
  name: string;
  n: number;
  p50: number;
  p90: number;
  min: number;
  mean: number;
}

function stats(name: string, us: number[]): Row {
  const s = [...us].sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 10) / 10;
  return { name, n: s.length, p50: r(percentile(s, 50)), p90: r(percentile(s, 90)), min: r(s[0]!), mean: r(s.reduce((a, b) => a + b, 0) / s.length) };
}

/** Sample `timed` ITER times after WARMUP unrecorded runs; `prepare` runs before each, untimed. */
function sample(name: string, timed: () => void, prepare: () => void = () => {}): Row {
  const us: number[] = [];
  for (let i = 0; i < WARMUP + ITER; i++) {
    prepare();
    const t0 = performance.now();
    timed();
    const dt = (performance.now() - t0) * 1000;
    if (i >= WARMUP) us.push(dt);
  }
  return stats(name, us);
}

const rows: Row[] = [];
const faults = elf("faults");
const add = elf("add");

{
  using m = Machine.create({ program: faults, name: "reset-bench" });
  m.snapshot();
  const area = m.userStart + 4 * 1024 * 1024; // free user memory (RW, no-execute), below the stack
  const one = new Uint8Array(8).fill(0xab);
  const hostDirty = (pages: number) => () => {
    for (let p = 0; p < pages; p++) m.write(area + p * PAGE_SIZE, one);
  };
  const guestDirty = (pages: number) => () => {
    for (let p = 0; p < pages; p++) m.call("poke", area + p * PAGE_SIZE, 0x5a);
  };
  rows.push(sample("reset/0 pages", () => m.reset()));
  for (const pages of [1, 256]) {
    rows.push(sample(`reset/${pages} pages (host)`, () => m.reset(), hostDirty(pages)));
    rows.push(sample(`reset/${pages} pages (guest)`, () => m.reset(), guestDirty(pages)));
  }
  // Sanity: the reset really drops what the guest wrote.
  m.call("poke", area, 0x77);
  m.reset();
  if (m.readU64(area) !== 0n) throw new Error("reset did not restore guest memory");
}

{
  using parent = Machine.create({ program: faults, name: "fork-bench" });
  const snap = parent.snapshot();
  const made: Machine[] = [];
  rows.push(sample("fork", () => { made.push(Machine.fork(snap)); }, () => made.pop()?.close()));
  made.pop()?.close();
  rows.push(sample("fork+call", () => {
    const f = Machine.fork(snap);
    made.push(f);
    f.call("ok");
  }, () => made.pop()?.close()));
  made.pop()?.close();
  const forks: Machine[] = [];
  for (let i = 0; i < WARMUP + ITER; i++) forks.push(Machine.fork(snap));
  rows.push(sample("close(fork)", () => forks.pop()!.close()));
}

{
  const made: Machine[] = [];
  rows.push(sample("create+load", () => { made.push(Machine.create({ program: add })); }, () => made.pop()?.close()));
  made.pop()?.close();
  const ms: Machine[] = [];
  for (let i = 0; i < WARMUP + ITER; i++) ms.push(Machine.create({ program: add }));
  rows.push(sample("close(create)", () => ms.pop()!.close()));
}

const pad = (s: string | number, n: number) => String(s).padStart(n);
console.log(`reset/fork/create on ${libc.runtime} (${libc.backend}), KVM ${kvmFlavour()}, ${ITER} samples after ${WARMUP} warm-up, microseconds`);
console.log(`${"row".padEnd(24)}${pad("p50", 10)}${pad("p90", 10)}${pad("min", 10)}${pad("mean", 10)}`);
for (const r of rows) console.log(`${r.name.padEnd(24)}${pad(r.p50, 10)}${pad(r.p90, 10)}${pad(r.min, 10)}${pad(r.mean, 10)}`);
console.log("anchor: TinyKVM (ARM64) ~33 us reset, ~88 us fork");
console.log(JSON.stringify({ runtime: libc.runtime, backend: libc.backend, kvm: kvmFlavour(), iterations: ITER, warmup: WARMUP, unit: "us", rows }));
