/**
 * The ipre system of `ipre bench fanin`: N client workers calling one remote kvshared machine
 * (guests/examples/kvshared.elf, window 1) concurrently. The main thread creates the remote and
 * shares it (`machine.share()`); each client worker attaches it (`Remote.attach`), creates its
 * own caller machine (window 0) and connects it. An operation is a vmcall whose target is the
 * remote's kv_put or kv_get: it enters the remote directly (IPRE entry, return trap, exit trap:
 * 3 exits), on the worker's own vCPU, at the same time as the other workers'.
 */
import { Machine } from "../machine/machine.ts";
import { connect } from "../ipre/connect.ts";
import { Remote, type SharedRemote } from "../ipre/share.ts";
import { exampleElf } from "../examples.ts";
import { MiB } from "../guest/layout.ts";
import { kvmInfo } from "../engine/boot.ts";
import type { FaninClient, FaninSystem } from "./fanin-workload.ts";

interface IpreInit {
  handle: SharedRemote;
  kvPut: number;
  kvGet: number;
}

export const ipreSystem: FaninSystem = {
  name: "ipre",
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
      const init: IpreInit = { handle: remote.share(), kvPut: remote.symbol("kv_put"), kvGet: remote.symbol("kv_get") };
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

/** Runs in each client worker: attach, connect a caller machine of its own. */
export function connectIpre(init: IpreInit, index: number): FaninClient {
  const remote = Remote.attach(init.handle, { name: `kvshared@client${index}` });
  let caller: Machine | undefined;
  try {
    caller = Machine.create({ window: 0, memory: 4 * MiB, name: `client${index}` });
    connect(caller, remote, { allow: [init.kvPut, init.kvGet] });
  } catch (e) {
    caller?.close();
    remote.detach();
    throw e;
  }
  const c = caller;
  return {
    put: (key, value) => c.call(init.kvPut, key, value),
    get: (key) => c.call(init.kvGet, key),
    close: () => {
      c.close();
      remote.detach();
    },
  };
}
