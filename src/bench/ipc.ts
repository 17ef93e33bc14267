/**
 * The baselines IPRE is compared with, and the CPU load generator. Everything here runs the same
 * on Node, Bun and Deno: workers come from `node:worker_threads` with inline (eval) code, child
 * processes are the current runtime's executable with an inline script (`node -e`, `bun -e`,
 * `deno eval`), sockets come from `node:net`. No files besides the Unix socket are needed, so
 * it works from `src/` (Bun, Deno, vitest) and from `dist/` (Node) alike.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants as fsConstants, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import { delimiter, join } from "node:path";
import process from "node:process";
import { Worker } from "node:worker_threads";
import { libc } from "../ffi/index.ts";

/** 32-bit FNV-1a, the same function as kvstore.c's checksum(). */
export function fnv1a(p: Uint8Array): number {
  let h = 0x811c9dc5 | 0;
  for (let i = 0; i < p.length; i++) {
    h ^= p[i]!;
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

const FNV_SOURCE = `function fnv(p, h) { for (let i = 0; i < p.length; i++) { h ^= p[i]; h = Math.imul(h, 16777619); } return h; }`;

// ---------------------------------------------------------------- child processes

/** argv that makes the current runtime's executable run `code`; extra args land at the end of process.argv. */
export function evalArgs(code: string, args: string[] = []): [string, string[]] {
  return [process.execPath, libc.runtime === "deno" ? ["eval", code, ...args] : ["-e", code, ...args]];
}

function spawnInline(code: string, args: string[] = []): ChildProcess {
  const [cmd, argv] = evalArgs(code, args);
  return spawn(cmd, argv, {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
  });
}

/** Resolves when the child prints its first line on stdout; rejects if it exits first or after timeoutMs. */
export function readyLine(child: ChildProcess, what: string, timeoutMs = 15_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`${what}: no ready line after ${timeoutMs} ms`)), timeoutMs);
    const onExit = (code: number | null, signal: string | null) => fail(new Error(`${what} exited (code ${code}, signal ${signal}) before it was ready`));
    const fail = (e: Error) => {
      clearTimeout(timer);
      child.off("exit", onExit);
      reject(e);
    };
    child.once("exit", onExit);
    child.once("error", fail);
    child.stdout!.once("data", () => {
      clearTimeout(timer);
      child.off("exit", onExit);
      resolve();
    });
  });
}

export function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return undefined;
}

/** Load generators found on PATH (reported in the output; the default generator is busy loops). */
export function availableLoadTools(): { stressNg?: string; schbench?: string } {
  return { stressNg: onPath("stress-ng"), schbench: onPath("schbench") };
}

export type LoadTool = "busy" | "stress-ng";

export interface Load {
  count: number;
  description: string;
  stop(): Promise<void>;
}

/**
 * Starts `count` CPU hogs: busy-loop child processes of the current runtime (default), or
 * `stress-ng --cpu count` when asked for and installed. Resolves once they run.
 */
export async function startLoad(count: number, tool: LoadTool = "busy"): Promise<Load> {
  if (count === 0) return { count, description: "none", stop: async () => {} };
  if (tool === "stress-ng") {
    const exe = onPath("stress-ng");
    if (!exe) throw new Error("stress-ng is not installed");
    const child = spawn(exe, ["--cpu", String(count), "--cpu-method", "loop", "--quiet"], { stdio: "ignore" });
    await new Promise((r) => setTimeout(r, 500));
    if (child.exitCode !== null) throw new Error(`stress-ng exited with code ${child.exitCode}`);
    return {
      count,
      description: `stress-ng --cpu ${count} --cpu-method loop`,
      stop: () =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once("exit", () => resolve());
          child.kill("SIGTERM"); // stress-ng reaps its workers on SIGTERM
        }),
    };
  }
  // Busy until killed; exits by itself if the parent dies (re-parented: ppid changes) or after 30 min.
  const code = `const ppid = process.ppid, end = Date.now() + 1800000;
process.stdout.write("r\\n", () => { for (;;) { for (let i = 0; i < 5e6; i++) {} if (process.ppid !== ppid || Date.now() > end) process.exit(0); } });`;
  const children: ChildProcess[] = [];
  try {
    for (let i = 0; i < count; i++) children.push(spawnInline(code));
    await Promise.all(children.map((c, i) => readyLine(c, `busy loop ${i}`)));
  } catch (e) {
    await Promise.all(children.map(killAndWait));
    throw e;
  }
  // Let the scheduler settle on the new runnable set.
  await new Promise((r) => setTimeout(r, 200));
  const [cmd] = evalArgs("");
  return {
    count,
    description: `${count} busy-loop child process${count === 1 ? "" : "es"} (${cmd.split("/").pop()} ${libc.runtime === "deno" ? "eval" : "-e"} 'for(;;){}')`,
    stop: async () => {
      await Promise.all(children.map(killAndWait));
    },
  };
}

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
    for (let i = 0; i < out.length; i++) out[i] = s[i + warmup]! * 1e6;
    return out;
  } finally {
    await Promise.all([ping.terminate(), pong.terminate()]);
  }
}

// ---------------------------------------------------------------- worker postMessage (payload)

const CHECKSUM_WORKER = `${FNV_SOURCE}
onMsg((p) => post(fnv(p, 0x811c9dc5 | 0) >>> 0));`;

/** A worker thread that checksums whatever Uint8Array it is sent (copied by structured clone, not transferred). */
export class ChecksumWorker {
  readonly #t: Thread;
  private constructor(t: Thread) {
    this.#t = t;
  }
  static async start(): Promise<ChecksumWorker> {
    const cw = new ChecksumWorker(startThread(CHECKSUM_WORKER));
    // The first message also waits for the worker to have loaded.
    await cw.checksum(new Uint8Array(8));
    return cw;
  }
  /** Post a copy of `p`, wait for the checksum. */
  checksum(p: Uint8Array): Promise<number> {
    const reply = this.#t.next<number>();
    this.#t.post(p); // no transfer list: structured clone copies the bytes
    return reply;
  }
  async close(): Promise<void> {
    await this.#t.terminate();
  }
}

// ---------------------------------------------------------------- Unix socket child

/**
 * The child: for every message (8-byte little-endian length + payload) it computes FNV-1a over the
 * payload as it streams in and answers with 8 bytes (the checksum). A ping is a message with an
 * 8-byte payload.
 */
const SOCKET_CHILD = `import("node:net").then((mod) => {
  const net = mod.default ?? mod;
  ${FNV_SOURCE}
  const path = process.argv[process.argv.length - 1];
  const srv = net.createServer((c) => {
    c.setNoDelay?.(true);
    const hdr = new Uint8Array(8);
    let fill = 0, remaining = -1, h = 0;
    c.on("data", (d) => {
      let i = 0;
      while (i < d.length || remaining === 0) {
        if (remaining < 0) {
          const k = Math.min(8 - fill, d.length - i);
          hdr.set(d.subarray(i, i + k), fill); fill += k; i += k;
          if (fill < 8) break;
          const v = new DataView(hdr.buffer);
          remaining = v.getUint32(0, true) + v.getUint32(4, true) * 4294967296;
          fill = 0; h = 0x811c9dc5 | 0;
        }
        const k = Math.min(remaining, d.length - i);
        if (k > 0) { h = fnv(d.subarray(i, i + k), h); i += k; remaining -= k; }
        if (remaining === 0) {
          const r = new Uint8Array(8);
          new DataView(r.buffer).setUint32(0, h >>> 0, true);
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
  #reply = new Uint8Array(8);
  #fill = 0;
  /** Called with each complete 8-byte reply's checksum. */
  #onReply: ((checksum: number) => void) | undefined;

  private constructor(child: ChildProcess, sock: net.Socket, path: string) {
    this.#child = child;
    this.#sock = sock;
    this.#path = path;
    sock.on("data", (d: Uint8Array) => {
      let i = 0;
      while (i < d.length) {
        const k = Math.min(8 - this.#fill, d.length - i);
        this.#reply.set(d.subarray(i, i + k), this.#fill);
        this.#fill += k;
        i += k;
        if (this.#fill === 8) {
          this.#fill = 0;
          const h = new DataView(this.#reply.buffer).getUint32(0, true);
          this.#onReply?.(h);
        }
      }
    });
  }

  static async start(): Promise<SocketChild> {
    const path = join(os.tmpdir(), `ipre-bench-${process.pid}-${Math.random().toString(36).slice(2, 10)}.sock`);
    const child = spawnInline(SOCKET_CHILD, [path]);
    try {
      await readyLine(child, "unix socket child");
      const sock = net.connect(path);
      await new Promise<void>((resolve, reject) => {
        sock.once("connect", resolve);
        sock.once("error", reject);
      });
      sock.setNoDelay?.(true);
      return new SocketChild(child, sock, path);
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
   * Send `p` (framed), resolve with the child's checksum of it. Large payloads are written in
   * 1 MiB pieces with backpressure (what a streaming sender does; a single huge write is much
   * slower on Bun).
   */
  checksum(p: Uint8Array): Promise<number> {
    const reply = new Promise<number>((resolve) => {
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
          for (let j = 0; j < out.length; j++) out[j] = samples[j + warmup]! * 1e6;
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
