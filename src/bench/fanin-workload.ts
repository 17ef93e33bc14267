/**
 * The operation of `ipre bench fanin`, the same for every system: a key-value store of integer
 * keys and values (the semantics of guests/examples/kvshared.c), and each client worker's
 * deterministic mix of puts and gets, checked reply by reply against a local model.
 *
 * Each worker owns its own keys (worker w: w * 2^20 + 1 ...), so every reply is predictable even
 * though all workers share one store. Pure: no runtime or worker APIs here, so the worker entry
 * (fanin-worker.ts), the servers and the tests all import it.
 */

/** kv_get's reply for a key with no value (kvshared.c's KV_MISSING, ~0, as a signed number). */
export const KV_MISSING = -1;

/** The operations; the request encoding of the baselines' wire formats. */
export const OP_PUT = 1;
export const OP_GET = 2;
/** Not a workload operation: the number of keys stored (the final-contents check). */
export const OP_COUNT = 3;

/**
 * One client's connection to the shared store. A reply may be a plain number (a synchronous
 * round trip: Atomics.wait, a vmcall) or a promise (a socket): the driver awaits only promises.
 */
export interface FaninClient {
  /** Store value for key: 1 if the key was new, 0 if it was updated (kvshared.c's kv_put). */
  put(key: number, value: number): number | Promise<number>;
  /** The value of key, or KV_MISSING (kvshared.c's kv_get). */
  get(key: number): number | Promise<number>;
  /** KVM exits of this client so far (the ipre systems: exits per operation are exact). */
  exits?(): number;
  close?(): void | Promise<void>;
}

/**
 * The server side of the baselines: a JS Map with kv_put / kv_get's replies. (Keys are never 0
 * and values never KV_MISSING here, so the guest store's refused sentinels do not arise.)
 */
export class JsKv {
  readonly #map = new Map<number, number>();
  put(key: number, value: number): number {
    const fresh = !this.#map.has(key);
    this.#map.set(key, value);
    return fresh ? 1 : 0;
  }
  get(key: number): number {
    return this.#map.get(key) ?? KV_MISSING;
  }
  get count(): number {
    return this.#map.size;
  }
  /** Serve one request (OP_PUT, OP_GET, OP_COUNT); an unknown op is answered with -2. */
  serve(op: number, key: number, value: number): number {
    return op === OP_PUT ? this.put(key, value) : op === OP_GET ? this.get(key) : op === OP_COUNT ? this.count : -2;
  }
}

/**
 * What a client worker runs to connect to a system's server: module `module` (a name the worker
 * knows: "fanin-baselines" or "fanin-ipre", see fanin-worker.ts) and its export `connect`:
 * `connect(init, index)` returns a FaninClient (or a promise of one).
 * `init` travels by postMessage (structured clone: SharedArrayBuffers are shared, not copied).
 */
export interface ClientEntry {
  module: string;
  connect: string;
  init: unknown;
}

/**
 * One of the systems `ipre bench fanin` compares: one store with one server (a server thread,
 * a server process, a remote VM) that N client workers call concurrently.
 */
export interface FaninSystem {
  readonly name: string;
  /** Why the system cannot run here (printed; the system is left out), or undefined. */
  unavailable(): string | undefined;
  /** A fresh, empty store and its server, for `workers` clients (indexes 0 .. workers-1). */
  start(workers: number): Promise<FaninServer>;
}

export interface FaninServer {
  /** How each client worker connects. */
  client: ClientEntry;
  /** After every client is done: the number of keys the store holds (the final contents). */
  finish(): Promise<number>;
  /** Stops the server and frees everything, after success or failure; harmless twice. */
  close(): Promise<void>;
}

/** The URL of module `name` next to the module at `metaUrl` (.ts from src/, .js from dist/). */
export function siblingModule(metaUrl: string, name: string): string {
  return new URL(`./${name}${metaUrl.endsWith(".ts") ? ".ts" : ".js"}`, metaUrl).href;
}

/** The first key of worker `index`'s own range (never 0: 0 is kvshared's empty slot). */
export function keyBase(index: number): number {
  return index * 2 ** 20 + 1;
}

/** Values of the start barrier's flag, a shared Int32 (0: wait). ABORT: the run failed, end. */
export const GO = 1;
export const ABORT = 2;

/** Up to 2^20 keys per worker, so that the ranges never overlap; keys stay below 2^31. */
export const MAX_KEYS_PER_WORKER = 2 ** 20;
export const MAX_WORKERS = 2 ** 10;

export interface WorkloadPlan {
  /** The worker's index (its key range and its seed). */
  index: number;
  /** Timed operations. */
  ops: number;
  /** Untimed operations before the start barrier (the same sequence, checked too). */
  warmup: number;
  /** Keys in the worker's range that the mix touches. */
  keys: number;
}

/** xorshift32, seeded per worker: the same op sequence on every run and runtime. */
function rng(index: number): () => number {
  let x = (Math.imul(index + 1, 0x9e3779b1) ^ 0x5bd1e995) >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
}

export interface WorkloadResult {
  /** Latency of each timed operation in ns. */
  samples: Float64Array;
  /** Puts among the timed operations. */
  puts: number;
  /** Keys of the worker's range that have a value at the end (by its model). */
  keysStored: number;
  /** Replies that differed from the model (timed, warm-up and the final read-back). */
  errors: number;
  /** The first wrong reply, for the error message. */
  firstError?: string;
  /** KVM exits of the timed operations, when the client counts them (FaninClient.exits). */
  exits?: number;
}

/**
 * Runs `plan` on `client`: `warmup` untimed ops, then `ready()` (the start barrier: it returns
 * when every worker may go), then `ops` timed ops (performance.now() around each), then a
 * read-back of every key in the range (the final contents). Every reply is checked.
 */
export async function runWorkload(client: FaninClient, plan: WorkloadPlan, ready: () => void | Promise<void>): Promise<WorkloadResult> {
  const next = rng(plan.index);
  const base = keyBase(plan.index);
  const model = new Map<number, number>();
  const samples = new Float64Array(plan.ops);
  let errors = 0;
  let firstError: string | undefined;
  let puts = 0;
  let exits0 = 0;
  const check = (what: string, got: number, want: number) => {
    if (got === want) return;
    errors++;
    firstError ??= `worker ${plan.index}: ${what} replied ${got}, expected ${want}`;
  };
  for (let i = -plan.warmup; i < plan.ops; i++) {
    if (i === 0) {
      await ready();
      exits0 = client.exits?.() ?? 0;
    }
    const r = next();
    const key = base + ((r >>> 1) % plan.keys);
    const put = (r & 1) === 1;
    const value = (r >>> 8) & 0xffffff;
    const t = performance.now();
    const pending = put ? client.put(key, value) : client.get(key);
    const got = typeof pending === "number" ? pending : await pending;
    const dt = performance.now() - t;
    if (i >= 0) samples[i] = dt * 1e6;
    if (put) {
      check(`put(${key}, ${value})`, got, model.has(key) ? 0 : 1);
      model.set(key, value);
      if (i >= 0) puts++;
    } else check(`get(${key})`, got, model.get(key) ?? KV_MISSING);
  }
  const exits = client.exits === undefined ? undefined : client.exits() - exits0;
  for (let k = 0; k < plan.keys; k++) {
    const pending = client.get(base + k);
    const got = typeof pending === "number" ? pending : await pending;
    check(`final get(${base + k})`, got, model.get(base + k) ?? KV_MISSING);
  }
  return { samples, puts, keysStored: model.size, errors, firstError, ...(exits !== undefined ? { exits } : {}) };
}
