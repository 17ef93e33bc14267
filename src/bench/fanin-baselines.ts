/**
 * The thread side of the fan-in baselines (loaded by fanin-worker.ts; the main side is in
 * fanin.ts). Both serve the same JsKv store and the same put/get requests as kvshared.c does for
 * IPRE:
 *
 *   atomics_server  the paper's thread-pool + futex baseline (Table III): one server thread, a
 *                   request slot per client in a SharedArrayBuffer; a client fills its slot,
 *                   rings a shared doorbell (Atomics.notify) and sleeps (Atomics.wait) until the
 *                   server, which sleeps on the doorbell when every slot is idle, has replied.
 *   unix_socket     a server process (fanin.ts starts it) with one Unix-socket connection per
 *                   client; fixed-size binary frames (request 16 bytes, reply 8 bytes).
 */
import net from "node:net";
import { JsKv, OP_GET, OP_PUT, type FaninClient } from "./fanin-workload.ts";

// ---------------------------------------------------------------- atomics_server

/** Int32 words per client slot: 64 bytes, so that clients do not share a cache line. */
export const SLOT_WORDS = 16;
/** Slot words: state, then the request (op, key, value), then the reply. */
const STATE = 0, OP = 1, KEY = 2, VALUE = 3, REPLY = 4;
/** Slot states. STOPPED: the server stopped before it replied. */
const IDLE = 0, REQUEST = 1, REPLIED = 2, STOPPED = 3;
/** Control words: the doorbell (bumped with every request) and the stop flag. */
export const DOORBELL = 0, STOP = 1;

/** Stops the server thread and wakes every client waiting for a reply (they then fail). */
export function stopAtomics(init: AtomicsInit): void {
  const c = new Int32Array(init.control);
  const s = new Int32Array(init.slots);
  Atomics.store(c, STOP, 1);
  Atomics.add(c, DOORBELL, 1);
  Atomics.notify(c, DOORBELL);
  // Changing the state (not only notifying) wakes a client that checked STOP just before
  // it went to sleep: Atomics.wait returns at once when the word differs.
  for (let b = 0; b < init.workers * SLOT_WORDS; b += SLOT_WORDS) {
    Atomics.compareExchange(s, b + STATE, REQUEST, STOPPED);
    Atomics.notify(s, b + STATE);
  }
}

export interface AtomicsInit {
  /** Int32Array(2): doorbell, stop. */
  control: SharedArrayBuffer;
  /** Int32Array(workers * SLOT_WORDS): the request slots. */
  slots: SharedArrayBuffer;
  workers: number;
}

/** The client of worker `index`: one synchronous round trip per request. */
export function connectAtomics(init: AtomicsInit, index: number): FaninClient {
  const c = new Int32Array(init.control);
  const s = new Int32Array(init.slots);
  const b = index * SLOT_WORDS;
  const call = (op: number, key: number, value: number): number => {
    s[b + OP] = op;
    s[b + KEY] = key;
    s[b + VALUE] = value;
    Atomics.store(s, b + STATE, REQUEST); // publishes the request words (Atomics are seq-cst)
    Atomics.add(c, DOORBELL, 1);
    Atomics.notify(c, DOORBELL, 1);
    while (Atomics.load(s, b + STATE) !== REPLIED) {
      // Stopped while waiting (the run failed elsewhere): do not sleep forever (Deno cannot
      // terminate a worker blocked in Atomics.wait), see stopAtomics().
      if (Atomics.load(c, STOP) !== 0) throw new Error("atomics server stopped before it replied");
      Atomics.wait(s, b + STATE, REQUEST);
    }
    const reply = s[b + REPLY]!;
    Atomics.store(s, b + STATE, IDLE);
    return reply;
  };
  return { put: (key, value) => call(OP_PUT, key, value), get: (key) => call(OP_GET, key, 0) };
}

/**
 * The server thread: scans the slots and serves every pending request; when a scan finds none it
 * sleeps on the doorbell, unless the doorbell moved since the scan began (no lost wake-up).
 * Returns the number of keys stored once the stop flag is set.
 */
export function serveAtomics(init: AtomicsInit, ready: () => void): number {
  const c = new Int32Array(init.control);
  const s = new Int32Array(init.slots);
  const kv = new JsKv();
  ready();
  while (Atomics.load(c, STOP) === 0) {
    const bell = Atomics.load(c, DOORBELL);
    let served = 0;
    for (let b = 0; b < init.workers * SLOT_WORDS; b += SLOT_WORDS) {
      if (Atomics.load(s, b + STATE) !== REQUEST) continue;
      s[b + REPLY] = kv.serve(s[b + OP]!, s[b + KEY]!, s[b + VALUE]!);
      Atomics.store(s, b + STATE, REPLIED);
      Atomics.notify(s, b + STATE, 1);
      served++;
    }
    if (served === 0) Atomics.wait(c, DOORBELL, bell);
  }
  return kv.count;
}

// ---------------------------------------------------------------- unix_socket

export const REQUEST_BYTES = 16;
export const REPLY_BYTES = 8;

/**
 * The server process's code (run by the current runtime's eval, like ipc.ts's children): one JsKv
 * (imported from `workloadUrl`) for every connection; answers each 16-byte request
 * (u32 op, key, value, 0) with 8 bytes (i32 reply, 0). Prints a line when it listens; exits when
 * its stdin closes (the bench ended, or died).
 */
export function socketServerCode(workloadUrl: string, path: string): string {
  return `Promise.all([import("node:net"), import(${JSON.stringify(workloadUrl)})]).then(([netMod, { JsKv }]) => {
  const net = netMod.default ?? netMod;
  const kv = new JsKv();
  const srv = net.createServer((c) => {
    c.setNoDelay?.(true);
    let pending = new Uint8Array(0);
    c.on("data", (d) => {
      let buf = pending.length ? new Uint8Array([...pending, ...d]) : d;
      let i = 0;
      for (; i + ${REQUEST_BYTES} <= buf.length; i += ${REQUEST_BYTES}) {
        const v = new DataView(buf.buffer, buf.byteOffset + i, ${REQUEST_BYTES});
        const r = new Uint8Array(${REPLY_BYTES});
        new DataView(r.buffer).setInt32(0, kv.serve(v.getUint32(0, true), v.getUint32(4, true), v.getUint32(8, true)), true);
        c.write(r);
      }
      pending = buf.slice(i);
    });
    c.on("error", () => {});
  });
  srv.listen(${JSON.stringify(path)}, () => process.stdout.write("ready\\n"));
  process.stdin.on("data", () => {});
  process.stdin.on("end", () => process.exit(0));
  process.stdin.on("close", () => process.exit(0));
});`;
}

export interface SocketInit {
  path: string;
}

/** A connection to the socket server: one request in flight at a time. */
export interface SocketConnection {
  call(op: number, key: number, value: number): Promise<number>;
  close(): void;
}

export async function openSocket(path: string): Promise<SocketConnection> {
  const sock = net.connect(path);
  await new Promise<void>((resolve, reject) => {
    sock.once("connect", resolve);
    sock.once("error", reject);
  });
  sock.setNoDelay?.(true);
  const reply = new Uint8Array(REPLY_BYTES);
  const replyView = new DataView(reply.buffer);
  let fill = 0;
  let waiting: { resolve: (v: number) => void; reject: (e: Error) => void } | undefined;
  let failed: Error | undefined;
  const fail = (e: Error) => {
    failed ??= e;
    const w = waiting;
    waiting = undefined;
    w?.reject(failed);
  };
  sock.on("error", fail);
  sock.on("close", () => fail(new Error(`unix socket ${path}: connection closed`)));
  sock.on("data", (d: Uint8Array) => {
    for (let i = 0; i < d.length; ) {
      const k = Math.min(REPLY_BYTES - fill, d.length - i);
      reply.set(d.subarray(i, i + k), fill);
      fill += k;
      i += k;
      if (fill === REPLY_BYTES) {
        fill = 0;
        const w = waiting;
        waiting = undefined;
        w?.resolve(replyView.getInt32(0, true));
      }
    }
  });
  return {
    call(op, key, value) {
      if (failed) return Promise.reject(failed);
      const request = new Uint8Array(REQUEST_BYTES); // its own buffer: the socket may hold on to it
      const view = new DataView(request.buffer);
      view.setUint32(0, op, true);
      view.setUint32(4, key, true);
      view.setUint32(8, value, true);
      const p = new Promise<number>((resolve, reject) => (waiting = { resolve, reject }));
      sock.write(request);
      return p;
    },
    close: () => void sock.destroy(),
  };
}

/** The client of one worker: its own connection to the server. */
export async function connectSocket(init: SocketInit): Promise<FaninClient> {
  const c = await openSocket(init.path);
  return { put: (key, value) => c.call(OP_PUT, key, value), get: (key) => c.call(OP_GET, key, 0), close: () => c.close() };
}
