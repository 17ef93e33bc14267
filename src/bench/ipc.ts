/**
 * The baselines IPRE is compared with: worker threads (Atomics ping-pong, postMessage of a
 * payload) and a Unix-socket child process. Everything here runs the same on Node, Bun and Deno:
 * workers come from `node:worker_threads` with inline (eval) code, child processes are the
 * current runtime's executable with an inline script (procs.ts), sockets come from `node:net`.
 * No files besides the Unix socket are needed, so it works from `src/` (Bun, Deno, vitest) and
 * from `dist/` (Node) alike.
 */
import type { ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import { join } from "node:path";
import process from "node:process";
import { Worker } from "node:worker_threads";
import { libc } from "../ffi/index.ts";
import { FNV_SOURCE, SUM64_SOURCE, type OpResult, type PayloadOp } from "./payload-ops.ts";
import { killAndWait, readyLine, spawnInline } from "./procs.ts";

// ---------------------------------------------------------------- worker threads

/**
 * A worker thread running `body`, which sees `post(value)` and `onMsg(handler)`. Bun and Deno
 * get their native Web `Worker` (module from a blob URL); Node gets `node:worker_threads` with
 * eval code. (Deno's node:worker_threads compatibility layer copies large messages about 50x
 * slower than its Web Worker, which would measure the polyfill, not postMessage.)
 */
interface Thread {
  post(value: unknown): void;
  next<T>(): Promise<T>;
  terminate(): Promise<void>;
}

type WebWorker = {
  postMessage(v: unknown): void;
  addEventListener(type: string, f: (e: { data?: unknown; message?: string; error?: unknown }) => void, o?: { once?: boolean }): void;
  removeEventListener(type: string, f: (e: { data?: unknown; message?: string; error?: unknown }) => void): void;
  terminate(): void;
};

/** Which worker API startThread() uses on this runtime. */
export function workerApi(): "Web Worker" | "node:worker_threads" {
  return libc.runtime !== "node" && typeof (globalThis as { Worker?: unknown }).Worker === "function" ? "Web Worker" : "node:worker_threads";
}

function startThread(body: string): Thread {
  if (workerApi() === "Web Worker") {
    const code = `const post = (v) => self.postMessage(v);
const onMsg = (f) => self.addEventListener("message", (e) => f(e.data));
${body}`;
    const url = URL.createObjectURL(new Blob([code], { type: "application/javascript" }));
    const W = (globalThis as unknown as { Worker: new (url: string, o: { type: string }) => WebWorker }).Worker;
    const w = new W(url, { type: "module" });
    return {
      post: (v) => w.postMessage(v),
      next: <T>() =>
        new Promise<T>((resolve, reject) => {
          const onError = (e: { message?: string; error?: unknown }) => {
            w.removeEventListener("message", onMessage);
            reject(e.error instanceof Error ? e.error : new Error(`worker error: ${e.message ?? "unknown"}`));
          };
          const onMessage = (e: { data?: unknown }) => {
            w.removeEventListener("error", onError);
            resolve(e.data as T);
          };
          w.addEventListener("message", onMessage, { once: true });
          w.addEventListener("error", onError, { once: true });
        }),
      terminate: async () => {
        w.terminate();
        URL.revokeObjectURL(url);
      },
    };
  }
  const code = `import("node:worker_threads").then(({ parentPort }) => {
const post = (v) => parentPort.postMessage(v);
const onMsg = (f) => parentPort.on("message", f);
${body}
});`;
  const w = new Worker(code, { eval: true });
  return {
    post: (v) => w.postMessage(v),
    next: <T>() =>
      new Promise<T>((resolve, reject) => {
        const onError = (e: Error) => {
          w.off("message", onMessage);
          reject(e);
        };
        const onMessage = (v: T) => {
          w.off("error", onError);
          resolve(v);
        };
        w.once("message", onMessage);
        w.once("error", onError);
      }),
    terminate: async () => {
      await w.terminate();
    },
  };
}

// ---------------------------------------------------------------- atomics ping-pong

const ATOMICS_WORKER = `onMsg((d) => {
  const f = new Int32Array(d.flag);
  const s = new Float64Array(d.samples);
  const total = d.total;
  if (d.role === "ping") {
    const start = performance.now();
    let i = 0;
    for (; i < total; i++) {
      const t = performance.now();
      Atomics.store(f, 0, 1);
      Atomics.notify(f, 0);
      while (Atomics.load(f, 0) === 1) Atomics.wait(f, 0, 1);
      const now = performance.now();
      s[i] = now - t;
      if (now - start > d.limitMs) { i++; break; }
    }
    Atomics.store(f, 0, 2);
    Atomics.notify(f, 0);
    post(i);
  } else {
    post("ready");
    for (;;) {
      while (Atomics.load(f, 0) === 0) Atomics.wait(f, 0, 0);
      if (Atomics.load(f, 0) === 2) break;
      Atomics.store(f, 0, 0);
      Atomics.notify(f, 0);
    }
    post(0);
  }
});`;

/**
 * Round trips between two worker threads that ping-pong through Atomics.wait/notify on a
 * SharedArrayBuffer (both block in the kernel between messages: the scheduler wakes each side).
 * Returns the samples in ns after `warmup` discarded ones.
 */
export async function atomicsPingPong(iterations: number, warmup: number, limitMs: number): Promise<Float64Array> {
  const total = iterations + warmup;
  const flag = new SharedArrayBuffer(8);
  const samples = new SharedArrayBuffer(8 * total);
  const pong = startThread(ATOMICS_WORKER);
  const ping = startThread(ATOMICS_WORKER);
  try {
    const pongReady = pong.next<string>();
    pong.post({ role: "pong", flag, samples, total, limitMs });
    await pongReady;
    const pongDone = pong.next<number>();
    const pingDone = ping.next<number>();
    ping.post({ role: "ping", flag, samples, total, limitMs });
    const done = await pingDone;
    await pongDone;
    const s = new Float64Array(samples);
    const out = new Float64Array(Math.max(0, done - warmup));
    for (let i = 0; i < out.length; i++) out[i] = (s[i + warmup] ?? Number.NaN) * 1e6;
    return out;
  } finally {
    await Promise.all([ping.terminate(), pong.terminate()]);
  }
}

// ---------------------------------------------------------------- worker postMessage (payload)

const PAYLOAD_WORKER: Record<PayloadOp, string> = {
  checksum: `${FNV_SOURCE}
onMsg((p) => post(fnv(p, 0x811c9dc5 | 0) >>> 0));`,
  sum64: `${SUM64_SOURCE}
onMsg((p) => { const acc = new Float64Array(2); sum64Update(acc, p, 0); post(sum64Result(acc)); });`,
};

/** A worker thread that runs `op` over whatever Uint8Array it is sent (copied by structured clone, not transferred). */
export class PayloadWorker {
  readonly #t: Thread;
  private constructor(t: Thread) {
    this.#t = t;
  }
  static async start(op: PayloadOp = "checksum"): Promise<PayloadWorker> {
    const pw = new PayloadWorker(startThread(PAYLOAD_WORKER[op]));
    // The first message also waits for the worker to have loaded.
    await pw.run(new Uint8Array(8));
    return pw;
  }
  /** Post a copy of `p`, wait for the result (a bigint crosses structured clone as it is). */
  run(p: Uint8Array): Promise<OpResult> {
    const reply = this.#t.next<OpResult>();
    this.#t.post(p); // no transfer list: structured clone copies the bytes
    return reply;
  }
  async close(): Promise<void> {
    await this.#t.terminate();
  }
}

// ---------------------------------------------------------------- Unix socket child

/**
 * The child: for every message (8-byte little-endian length + payload) it computes its op
 * (argv[-2]: FNV-1a, or sum64 into 8 bytes) over the payload as it streams in and answers with
 * 8 bytes (the result, little-endian). A ping is a message with an 8-byte payload.
 */
const SOCKET_CHILD = `import("node:net").then((mod) => {
  const net = mod.default ?? mod;
  ${FNV_SOURCE}
  ${SUM64_SOURCE}
  const path = process.argv[process.argv.length - 1];
  const sum = process.argv[process.argv.length - 2] === "sum64";
  const acc = new Float64Array(2);
  const srv = net.createServer((c) => {
    c.setNoDelay?.(true);
    const hdr = new Uint8Array(8);
    let fill = 0, remaining = -1, h = 0, pos = 0;
    c.on("data", (d) => {
      let i = 0;
      while (i < d.length || remaining === 0) {
        if (remaining < 0) {
          const k = Math.min(8 - fill, d.length - i);
          hdr.set(d.subarray(i, i + k), fill); fill += k; i += k;
          if (fill < 8) break;
          const v = new DataView(hdr.buffer);
          remaining = v.getUint32(0, true) + v.getUint32(4, true) * 4294967296;
          fill = 0; h = 0x811c9dc5 | 0; acc[0] = 0; acc[1] = 0; pos = 0;
        }
        const k = Math.min(remaining, d.length - i);
        if (k > 0) {
          if (sum) { sum64Update(acc, d.subarray(i, i + k), pos); pos += k; }
          else h = fnv(d.subarray(i, i + k), h);
          i += k; remaining -= k;
        }
        if (remaining === 0) {
          const r = new Uint8Array(8);
          if (sum) new DataView(r.buffer).setBigUint64(0, sum64Result(acc), true);
          else new DataView(r.buffer).setUint32(0, h >>> 0, true);
          c.write(r);
          remaining = -1;
        }
      }
    });
    c.on("close", () => process.exit(0));
    c.on("error", () => process.exit(0));
  });
  srv.listen(path, () => process.stdout.write("ready\\n"));
});`;

/** A child process of the current runtime that answers over a Unix domain socket. */
export class SocketChild {
  readonly #child: ChildProcess;
  readonly #sock: net.Socket;
  readonly #path: string;
  readonly #op: PayloadOp;
  #reply = new Uint8Array(8);
  #fill = 0;
  /** Called with each complete 8-byte reply's result. */
  #onReply: ((result: OpResult) => void) | undefined;

  private constructor(child: ChildProcess, sock: net.Socket, path: string, op: PayloadOp) {
    this.#child = child;
    this.#sock = sock;
    this.#path = path;
    this.#op = op;
    sock.on("data", (d: Uint8Array) => {
      let i = 0;
      while (i < d.length) {
        const k = Math.min(8 - this.#fill, d.length - i);
        this.#reply.set(d.subarray(i, i + k), this.#fill);
        this.#fill += k;
        i += k;
        if (this.#fill === 8) {
          this.#fill = 0;
          const v = new DataView(this.#reply.buffer);
          this.#onReply?.(this.#op === "sum64" ? v.getBigUint64(0, true) : v.getUint32(0, true));
        }
      }
    });
  }

  /** A child that computes `op` over each message (the op does not matter for pingPong()). */
  static async start(op: PayloadOp = "checksum"): Promise<SocketChild> {
    const path = join(os.tmpdir(), `ipre-bench-${process.pid}-${Math.random().toString(36).slice(2, 10)}.sock`);
    const child = spawnInline(SOCKET_CHILD, [op, path]);
    try {
      await readyLine(child, "unix socket child");
      const sock = net.connect(path);
      await new Promise<void>((resolve, reject) => {
        sock.once("connect", resolve);
        sock.once("error", reject);
      });
      sock.setNoDelay?.(true);
      return new SocketChild(child, sock, path, op);
    } catch (e) {
      await killAndWait(child);
      rmSync(path, { force: true });
      throw e;
    }
  }

  static #header(length: number): Uint8Array {
    const h = new Uint8Array(8);
    const v = new DataView(h.buffer);
    v.setUint32(0, length % 2 ** 32, true);
    v.setUint32(4, Math.floor(length / 2 ** 32), true);
    return h;
  }

  /**
   * Send `p` (framed), resolve with the child's result of its op over it. Large payloads are written in
   * 1 MiB pieces with backpressure (what a streaming sender does; a single huge write is much
   * slower on Bun).
   */
  run(p: Uint8Array): Promise<OpResult> {
    const reply = new Promise<OpResult>((resolve) => {
      this.#onReply = (h) => {
        this.#onReply = undefined;
        resolve(h);
      };
    });
    const sock = this.#sock;
    if (p.length <= SocketChild.#PIECE) {
      sock.cork();
      sock.write(SocketChild.#header(p.length));
      sock.write(p);
      sock.uncork();
      return reply;
    }
    return (async () => {
      sock.write(SocketChild.#header(p.length));
      for (let off = 0; off < p.length; off += SocketChild.#PIECE) {
        if (!sock.write(p.subarray(off, Math.min(p.length, off + SocketChild.#PIECE)))) await new Promise((r) => sock.once("drain", r));
      }
      return reply;
    })();
  }
  static readonly #PIECE = 1024 * 1024;

  /**
   * Round trips of a 16-byte message (header + 8 bytes) and an 8-byte reply, driven from the
   * socket's data callback (no promise per message). Samples in ns after `warmup`.
   */
  pingPong(iterations: number, warmup: number, limitMs: number): Promise<Float64Array> {
    const total = iterations + warmup;
    const samples = new Float64Array(total);
    const msg = new Uint8Array(16);
    msg.set(SocketChild.#header(8));
    return new Promise((resolve) => {
      let i = 0;
      let t = 0;
      const start = performance.now();
      this.#onReply = () => {
        const now = performance.now();
        samples[i++] = now - t;
        if (i === total || now - start > limitMs) {
          this.#onReply = undefined;
          const out = new Float64Array(Math.max(0, i - warmup));
          for (let j = 0; j < out.length; j++) out[j] = (samples[j + warmup] ?? Number.NaN) * 1e6;
          resolve(out);
          return;
        }
        t = performance.now();
        this.#sock.write(msg);
      };
      t = performance.now();
      this.#sock.write(msg);
    });
  }

  async close(): Promise<void> {
    this.#sock.destroy();
    await killAndWait(this.#child);
    rmSync(this.#path, { force: true });
  }
}
