/**
 * Soak: many create/call/close cycles and many fork/call/reset/close cycles in one process. Prints
 * the process's fds (by kind) and its ipre mappings (guest-memory memfds, vCPU kvm_run pages)
 * after 100 cycles and at the end of each loop; they must be equal. Progress goes to stderr every
 * 1000 cycles; the last stdout line is a JSON summary. Exits 1 if anything grew.
 *
 *   node_modules/.bin/bun bench/soak.ts [--cycles 10000]
 *   node_modules/.bin/deno run --allow-all bench/soak.ts [--cycles 10000]
 *   node --import ./test/node-ts.mjs bench/soak.ts [--cycles 10000]     (Node 20: TS via hooks)
 *
 * Every 100th create cycle also times out a spinning guest (timeoutMs 5) and every 100th fork
 * cycle faults, so the watchdog and the recovery paths are soaked too. A guard timer (+50 ms)
 * stops a spinning guest whose timeout was lost; such a *late* timeout is counted and fails the run.
 */
import process from "node:process";
import { libc } from "../src/ffi/index.ts";
import { Machine } from "../src/machine/machine.ts";
import { exampleElf as elf } from "../src/examples.ts";
import { checkOptions, intOption, parseFlags } from "../src/flags.ts";
import { fdTargets, GuardTimer, resources, type Resources } from "../test/scenarios/lifecycle.ts";

const flags = parseFlags(process.argv.slice(2));
checkOptions(flags, ["cycles"], "bench/soak.ts");
const CYCLES = intOption(flags, "cycles", 10_000);
const CHECKPOINT = Math.min(100, CYCLES);

/** What a leak would grow (the JS heap's anonymous memory is not part of it). */
function view(r: Resources) {
  return { fds: r.fds, fdKinds: r.fdKinds, memfdMaps: r.memfdMaps, memfdBytes: r.memfdBytes, vcpuMaps: r.vcpuMaps, vcpuBytes: r.vcpuBytes };
}
const fmt = (r: Resources) =>
  `fds ${r.fds} (kvm ${r.fdKinds["/dev/kvm"]}, vm ${r.fdKinds["kvm-vm"]}, vcpu ${r.fdKinds["kvm-vcpu"]}, memfd ${r.fdKinds["memfd:ipre"]}, other ${r.fdKinds.other}), ` +
  `memfd maps ${r.memfdMaps} (${r.memfdBytes / 2 ** 20} MiB), vcpu maps ${r.vcpuMaps} (${r.vcpuBytes} B), all maps ${r.allMaps}, anon ${(r.anonBytes / 2 ** 20).toFixed(1)} MiB`;

interface LoopResult {
  name: string;
  cycles: number;
  seconds: number;
  usPerCycle: number;
  after100: ReturnType<typeof view>;
  end: ReturnType<typeof view>;
  flat: boolean;
  failures: number;
}

function loop(name: string, body: (i: number) => void): LoopResult {
  let after100: Resources | undefined;
  let targets100: Record<string, string> = {};
  let failures = 0;
  const t0 = performance.now();
  for (let i = 0; i < CYCLES; i++) {
    try {
      body(i);
    } catch (e) {
      if (failures++ < 5) process.stderr.write(`${name}: cycle ${i}: ${(e as Error).name}: ${(e as Error).message}\n`);
    }
    if (i + 1 === CHECKPOINT) {
      after100 = resources();
      targets100 = fdTargets();
      console.log(`${name}: after ${CHECKPOINT}: ${fmt(after100)}`);
    }
    if ((i + 1) % 1000 === 0) process.stderr.write(`${name}: ${i + 1}/${CYCLES} (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
  }
  const seconds = (performance.now() - t0) / 1000;
  const end = resources();
  console.log(`${name}: after ${CYCLES}: ${fmt(end)}`);
  const flat = JSON.stringify(view(end)) === JSON.stringify(view(after100!));
  if (!flat) {
    const now = fdTargets();
    const diff = [...new Set([...Object.keys(now), ...Object.keys(targets100)])]
      .filter((fd) => now[fd] !== targets100[fd])
      .map((fd) => `fd ${fd}: ${targets100[fd] ?? "-"} -> ${now[fd] ?? "-"}`);
    console.log(`${name}: fds that changed: ${diff.join("; ")}`);
  }
  console.log(`${name}: ${flat ? "flat" : "GREW"}, ${seconds.toFixed(1)} s, ${((seconds * 1e6) / CYCLES).toFixed(0)} us/cycle, ${failures} failures`);
  return { name, cycles: CYCLES, seconds, usPerCycle: (seconds * 1e6) / CYCLES, after100: view(after100!), end: view(end), flat, failures };
}

// Bun opens an extra fd on the first write to process.stderr: do that before any measurement.
process.stderr.write(`soak on ${libc.runtime}: ${CYCLES} cycles per loop, progress every 1000\n`);
console.log(`soak on ${libc.runtime} (${libc.backend}): ${CYCLES} cycles per loop; start: ${fmt(resources())}`);
const spin = elf("spin");
const results: LoopResult[] = [];
const guard = new GuardTimer();
let late = 0;

results.push(loop("create/call/close", (i) => {
  const m = Machine.create({ program: spin });
  try {
    if (m.call("spin_for", i) !== i) throw new Error("wrong result");
    if (i % 100 === 99) {
      const t0 = performance.now();
      guard.arm(55);
      try {
        m.invoke("spin", [], { timeoutMs: 5 });
        throw new Error("no timeout");
      } catch (e) {
        if ((e as Error).name !== "TimeoutError") throw e;
      } finally {
        guard.disarm();
      }
      const ms = performance.now() - t0;
      if (ms > 25) {
        late++;
        process.stderr.write(`create/call/close: cycle ${i}: the 5 ms timeout fired after ${ms.toFixed(1)} ms (rescued by the guard timer)\n`);
      }
      if (m.call("spin_for", 3) !== 3) throw new Error("wrong result after timeout");
    }
  } finally {
    m.close();
  }
}));

{
  using parent = Machine.create({ window: 1, program: elf("kvstore"), name: "soak-parent" });
  for (let k = 0; k < 20; k++) parent.call("kv_insert", k, k);
  const snap = parent.snapshot();
  results.push(loop("fork/call/reset/close", (i) => {
    const f = Machine.fork(snap);
    try {
      if (f.call("kv_insert", 1000 + i, i) !== 1) throw new Error("insert");
      if (i % 100 === 99) {
        try {
          f.call("remote_fault");
          throw new Error("no fault");
        } catch (e) {
          if ((e as Error).name !== "GuestFault") throw e;
        }
      }
      f.reset();
      if (f.call("kv_count") !== 20) throw new Error("reset did not restore kv_count");
    } finally {
      f.close();
    }
  }));
}

guard.close();
const end = resources();
console.log(`end: ${fmt(end)}; late timeouts: ${late}`);
const ok = results.every((r) => r.flat && r.failures === 0) && late === 0;
console.log(JSON.stringify({ runtime: libc.runtime, backend: libc.backend, cycles: CYCLES, ok, lateTimeouts: late, loops: results, end: view(end) }));
if (!ok) process.exitCode = 1;
