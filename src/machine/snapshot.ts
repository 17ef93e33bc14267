/** A frozen machine state: what reset() returns to and what fork() shares (docs/ARCHITECTURE.md §7). */
import { libc } from "../ffi/index.ts";
import { MachineStateError } from "../errors.ts";
import type { ElfImage } from "../guest/elf.ts";
import type { LinuxState } from "../linux/syscalls.ts";

/**
 * A frozen state of a machine (memory in a memfd) to reset to, or to fork copy-on-write VMs
 * from. Owned by the machine that took it (closed with it); `close()` earlier is allowed and only
 * stops new forks: existing forks keep their copy-on-write mappings.
 */
export class Snapshot {
  #fd: number;
  constructor(
    fd: number,
    readonly window: number,
    readonly memorySize: number,
    readonly stackSize: number,
    readonly program: ElfImage | undefined,
    readonly source: string,
    /** The Linux program's state besides memory (its heap break, TLS, …), when the machine ran one. */
    readonly linux?: LinuxState,
  ) {
    this.#fd = fd;
  }
  get fd(): number {
    if (this.#fd < 0) throw new MachineStateError(`snapshot of ${this.source} is closed`);
    return this.#fd;
  }
  get closed(): boolean {
    return this.#fd < 0;
  }
  close(): void {
    if (this.#fd >= 0) {
      libc.close(this.#fd);
      this.#fd = -1;
    }
  }
  [Symbol.dispose](): void {
    this.close();
  }
}
