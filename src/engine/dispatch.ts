/**
 * How a Space reaches the JS handlers of its hostcalls (src/engine/gates.ts runs the gates,
 * src/engine/facade.ts builds the dispatcher of a Machine or an attached Remote).
 */

/** Returned by a hostcall dispatcher for a gate without a JS handler. */
export const NO_HANDLER: unique symbol = Symbol("no hostcall handler");

/** Runs the JS handler of hostcall `gate` with the six argument registers (set by the facade). */
export type HostcallDispatch = (gate: number, a0: number, a1: number, a2: number, a3: number, a4: number, a5: number) => number | bigint | void | typeof NO_HANDLER;
