/**
 * What the two public faces of a Space do the same way: a Machine (src/machine/machine.ts) and
 * an attached Remote (src/ipre/share.ts). The default `ipre_print` sink, the dispatch from a
 * hostcall gate to the facade's handler table, unmapping a space from every connected caller
 * when it closes or detaches, and the registry that finds the owners behind a facade (for
 * connect() and the tests).
 */
import type { Cpu, Space } from "./owners.ts";
import { type HostcallDispatch, NO_HANDLER } from "./dispatch.ts";

/** A hostcall handler: six integer args and the facade whose code made the call; integer result. */
export type Handler<F> = (a0: number, a1: number, a2: number, a3: number, a4: number, a5: number, facade: F) => number | bigint | void;

/** Where `ipre_print` output goes by default: console.log without the trailing newline. */
export function defaultPrint(text: string): void {
  console.log(text.endsWith("\n") ? text.slice(0, -1) : text);
}

/** The handler table of `options.hostcalls` (gate numbers as keys). */
export function handlerTable<F>(hostcalls: Record<number, Handler<F>> | undefined): Map<number, Handler<F>> {
  return new Map(Object.entries(hostcalls ?? {}).map(([k, v]) => [Number(k), v]));
}

/** Dispatch a gate to the handler in `table` (read at each call: handlers may be set later). */
export function dispatchTo<F>(table: ReadonlyMap<number, Handler<F>>, facade: F): HostcallDispatch {
  return (gate, a0, a1, a2, a3, a4, a5) => {
    const fn = table.get(gate);
    return fn === undefined ? NO_HANDLER : fn(a0, a1, a2, a3, a4, a5, facade);
  };
}

/**
 * Unmap a closing space from every connected caller's VM (each disconnect is a service run on
 * that caller). All are tried; the first error, if any, is returned for the caller to throw
 * once the space is gone (a caller whose run failed reboots its vCPU on its next use).
 */
export function disconnectCallers(space: Space): unknown {
  let error: unknown;
  for (const caller of [...space.callers]) {
    try {
      caller.links.get(space.window)?.disconnect();
    } catch (e) {
      error ??= e;
    }
  }
  return error;
}

const spaces = new WeakMap<object, Space>();
const cpus = new WeakMap<object, Cpu>();

/** Register the owners behind a facade (Machine: both; an attached Remote: a space). */
export function registerOwners(facade: object, space: Space, cpu?: Cpu): void {
  spaces.set(facade, space);
  if (cpu !== undefined) cpus.set(facade, cpu);
}
/** The space behind a Machine or Remote; a TypeError for anything else. */
export function spaceOf(facade: object): Space {
  const s = spaces.get(facade);
  if (s === undefined) throw new TypeError("not an ipre Machine");
  return s;
}
/** The Cpu behind a Machine; a TypeError for anything else. */
export function cpuOf(facade: object): Cpu {
  const c = cpus.get(facade);
  if (c === undefined) throw new TypeError("not an ipre Machine");
  return c;
}
