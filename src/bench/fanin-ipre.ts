/**
 * The ipre systems of `ipre bench fanin`: N client workers calling one remote kvshared machine
 * (guests/examples/kvshared.elf, window 1) concurrently. The main thread creates the remote and
 * shares it (`machine.share()`); each client worker attaches it (`Remote.attach`), creates its
 * own caller machine (window 0) and connects it. Each operation runs the remote's kv_put or
 * kv_get on the worker's own vCPU, at the same time as the other workers', in one of two ways:
 *
 *   ipre          a vmcall of the caller machine whose target is the remote's function: the
 *                 caller's vCPU enters it through the IPRE entry fault, as caller code calling
 *                 the remote would; on the fast path the runtime takes entry and return, so the
 *                 exit trap is the only exit (3 on the host's path: entry, return trap, exit trap)
 *   ipre_direct   a direct call from JS on the connection (`conn.call`): 1 exit
 */
import { Machine } from "../machine/machine.ts";
import { connect, type Connection } from "../ipre/connect.ts";
import { Remote, type SharedRemote } from "../ipre/share.ts";
import { exampleElf } from "../examples.ts";
import { MiB } from "../guest/layout.ts";
import { kvmInfo } from "../engine/boot.ts";
import type { FaninClient, FaninSystem } from "./fanin-workload.ts";

interface IpreInit {
  handle: SharedRemote;
  kvPut: number;
  kvGet: number;
  /** Direct calls from JS (Connection.call) instead of vmcalls at the remote's address. */
  direct: boolean;
}

/** `direct`: the ipre_direct system (Connection.call), else ipre (a vmcall into the remote). */
function ipreSystemOf(name: string, direct: boolean): FaninSystem {
  return {
    name,
    unavailable: () => {
      try {
        kvmInfo();
        return undefined;
      } catch (e) {
        return `no usable /dev/kvm (${(e as Error).message})`;
      }
    },
    async start() {
      const remote = Machine.create({ window: 1, program: exampleElf("kvshared"), name: "kvshared" });
      try {
        const init: IpreInit = { handle: remote.share(), kvPut: remote.symbol("kv_put"), kvGet: remote.symbol("kv_get"), direct };
        return {
          client: { module: "fanin-ipre", connect: "connectIpre", init },
          finish: async () => remote.call("kv_count"),
          close: async () => remote.close(), // after every client detached (closing is refused before)
        };
      } catch (e) {
        remote.close();
        throw e;
      }
    },
  };
}

export const ipreSystem = ipreSystemOf("ipre", false);
export const ipreDirectSystem = ipreSystemOf("ipre_direct", true);

/** Runs in each client worker: attach, connect a caller machine of its own. */
export function connectIpre(init: IpreInit, index: number): FaninClient {
  const remote = Remote.attach(init.handle, { name: `kvshared@client${index}` });
  let caller: Machine | undefined;
  let conn: Connection;
  try {
    caller = Machine.create({ window: 0, memory: 4 * MiB, name: `client${index}` });
    conn = connect(caller, remote, { allow: [init.kvPut, init.kvGet] });
  } catch (e) {
    caller?.close();
    remote.detach();
    throw e;
  }
  const c = caller;
  const { kvPut, kvGet } = init;
  const calls = init.direct
    ? { put: (key: number, value: number) => conn.call(kvPut, key, value), get: (key: number) => conn.call(kvGet, key) }
    : { put: (key: number, value: number) => c.call(kvPut, key, value), get: (key: number) => c.call(kvGet, key) };
  return {
    ...calls,
    exits: () => c.exits,
    close: () => {
      c.close();
      remote.detach();
    },
  };
}
