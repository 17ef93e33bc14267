/**
 * A deadline for synchronous code. A parser loop that never ends cannot be interrupted from its
 * own thread by a timer (vitest's test timeout never fires either), but node:vm's `timeout`
 * terminates whatever JavaScript runs inside runInContext, including functions of this realm.
 */
import vm from "node:vm";

const context = vm.createContext({ body: undefined as (() => void) | undefined });
const script = new vm.Script("body()");

/**
 * Run `body` (a whole fc.assert) and fail with `current()` (the input being worked on) when it
 * has not finished within `ms`, instead of hanging the test run.
 */
export function withDeadline(ms: number, body: () => void, current: () => string): void {
  context.body = body;
  try {
    script.runInContext(context, { timeout: ms });
  } catch (e) {
    if ((e as { code?: unknown }).code === "ERR_SCRIPT_EXECUTION_TIMEOUT") throw new Error(`did not finish within ${ms} ms; the input it was working on: ${current()}`);
    throw e;
  } finally {
    context.body = undefined;
  }
}
