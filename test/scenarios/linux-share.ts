/**
 * A Linux program shared with Workers (machine.share() / Remote.attach): guests/linux/counter.elf
 * (window 1) runs in the main thread; one worker at a time attaches, connects a caller VM of its
 * own and calls the program, whose printf and malloc are served by the worker's syscall layer
 * (its own stdout sink, or this process's stdout by default). The owner then sees what the
 * workers' calls left in the program's memory.
 *
 *   linux-share.ts     prints one JSON line (after the default-sink worker's output)
 */
import { readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { Machine } from "../../src/machine/machine.ts";
import { libc } from "../../src/ffi/index.ts";
import { isMain } from "./common.ts";

const COUNTER = new Uint8Array(readFileSync(new URL("../../guests/linux/counter.elf", import.meta.url)));

function runWorker(workerData: unknown): Promise<Record<string, unknown>> {
  const w = new Worker(new URL("./linux-share-worker.ts", import.meta.url), { workerData });
  return new Promise((resolve, reject) => {
    w.once("message", (m) => {
      void w.terminate();
      resolve(m as Record<string, unknown>);
    });
    w.once("error", reject);
  });
}

export async function linuxShareReport() {
  const dec = new TextDecoder();
  let out = "";
  const owner = Machine.create({ window: 1, program: COUNTER, linux: { stdout: (b) => (out += dec.decode(b)), stderr: () => {} }, timeoutMs: 20_000 });
  out = "";
  const handle = owner.share();
  const captured = await runWorker({ handle, capture: true });
  const toStdout = await runWorker({ handle, capture: false });
  const ownerOut = out;
  const ownerDump = owner.call("counter_dump");
  const ownerHeapBig = owner.call("counter_heap", 300_000); // the owner still maps memory
  const report = { runtime: libc.runtime, captured, toStdout, ownerOut, ownerDump, ownerHeapBig, ownerDumpOut: out.slice(ownerOut.length), ownerCalls: owner.call("counter_calls") };
  owner.close();
  return report;
}

if (isMain(import.meta)) console.log(JSON.stringify(await linuxShareReport()));
