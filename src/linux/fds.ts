/**
 * The file-descriptor table of a Linux program and the open files behind it: standard input,
 * the output sinks, host files and directories of the namespace (vfs.ts), in-memory pipes.
 *
 * One process, one thread: nothing else can ever fill an empty pipe or drain a full one, so a
 * read that would wait for a writer (or a write that would wait for a reader) fails at once:
 * EAGAIN with O_NONBLOCK, else a LinuxProgramError naming the deadlock (Linux would hang).
 */
import { closeSync, fstatSync, openSync, readSync, writeSync, constants as FS } from "node:fs";
import { E, hostErrno, O, S, statOf, syntheticIno, syntheticStat, type StatInfo } from "./abi.ts";
import type { OutputSink, StdinOption } from "./options.ts";

export type { StdinOption } from "./options.ts";

/** What a read or write that may wait needs from the process. */
export interface IoCtx {
  /** Sleep about `ms` (in slices; the call's TimeoutError past its deadline). */
  wait(ms: number): void;
  /** The program would wait forever: the error to throw. */
  deadlock(what: string): Error;
}


export const POLLIN = 1, POLLOUT = 4, POLLERR = 8, POLLHUP = 0x10;
const PIPE_CAPACITY = 65536; // Linux's default (F_GETPIPE_SZ)

/** An open file description: dup'ed fds share one (its offset, its status flags). */
export abstract class Desc {
  /** Fds that refer to it; released at 0. */
  refs = 0;
  constructor(public flags: number) {}
  get readable(): boolean {
    return (this.flags & O.ACCMODE) !== O.WRONLY;
  }
  get writable(): boolean {
    return (this.flags & O.ACCMODE) !== O.RDONLY;
  }
  /** Read into `buf` (at `at`, for pread); bytes read or a negative errno. */
  read(_buf: Uint8Array, _ctx: IoCtx, _at?: number): number {
    return -E.EINVAL;
  }
  write(_data: Uint8Array, _ctx: IoCtx, _at?: number): number {
    return -E.EINVAL;
  }
  /** lseek: the new offset or a negative errno (pipes and streams: ESPIPE). */
  seek(_offset: number, _whence: number): number {
    return -E.ESPIPE;
  }
  abstract stat(): StatInfo | number;
  /** The poll events that are ready now. */
  abstract ready(): number;
  release(): void {}
  /** A copy for a snapshot (restore, fork): offsets and buffers copied, host fds reopened lazily. */
  abstract clone(memo: Map<object, object>): Desc;
}

/** fd 0 without a stdin option: always at EOF (a character device, like /dev/null). */
export class NullInput extends Desc {
  override read(): number {
    return 0;
  }
  stat(): StatInfo {
    return syntheticStat(S.IFCHR | 0o620, 3, 0, 0x8800);
  }
  ready(): number {
    return POLLIN;
  }
  clone(): Desc {
    return new NullInput(this.flags);
  }
}

/** fd 1 and 2: the output sinks (a character device: `ls` and friends do not treat them as files). */
export class SinkOutput extends Desc {
  constructor(readonly sink: OutputSink, readonly ino: number) {
    super(O.WRONLY);
  }
  override write(data: Uint8Array): number {
    this.sink(data.slice());
    return data.length;
  }
  stat(): StatInfo {
    return syntheticStat(S.IFCHR | 0o620, this.ino, 0, 0x8800);
  }
  ready(): number {
    return POLLOUT;
  }
  clone(): Desc {
    return new SinkOutput(this.sink, this.ino);
  }
}

/** fd 0 from a StdinOption: a pipe whose writer is the host. */
export class StdinPipe extends Desc {
  /** Offset in `bytes` (bytes and string sources). */
  pos = 0;
  /** `source`: the option it was made of. */
  constructor(readonly source: StdinOption, readonly bytes: Uint8Array | undefined, readonly stream: ((buf: Uint8Array, ctx: IoCtx) => number) | undefined) {
    super(O.RDONLY);
  }
  static of(option: StdinOption): StdinPipe {
    if (typeof option === "string" && option !== "inherit") return new StdinPipe(option, new TextEncoder().encode(option), undefined);
    if (option instanceof Uint8Array) return new StdinPipe(option, option, undefined);
    if (typeof option === "function") return new StdinPipe(option, undefined, (buf) => option(buf));
    const fd = option === "inherit" ? 0 : typeof option === "number" ? option : option.fd;
    if (!Number.isInteger(fd) || fd < 0) throw new RangeError(`stdin: not a file descriptor: ${String(fd)}`);
    return new StdinPipe(option, undefined, (buf, ctx) => readHost(fd, buf, ctx));
  }
  override read(buf: Uint8Array, ctx: IoCtx, at?: number): number {
    if (at !== undefined) return -E.ESPIPE;
    if (buf.length === 0) return 0;
    if (this.bytes !== undefined) {
      const n = Math.min(buf.length, this.bytes.length - this.pos);
      buf.set(this.bytes.subarray(this.pos, this.pos + n));
      this.pos += n;
      return n;
    }
    const n = this.stream!(buf, ctx);
    if (!Number.isInteger(n) || n < 0 || n > buf.length) throw new RangeError(`stdin: the read callback returned ${n} for a ${buf.length}-byte buffer`);
    return n;
  }
  stat(): StatInfo {
    return syntheticStat(S.IFIFO | 0o600, 4);
  }
  ready(): number {
    return POLLIN;
  }
  clone(): Desc {
    const c = new StdinPipe(this.source, this.bytes, this.stream); // a stream goes on where it is: it cannot rewind
    c.pos = this.pos;
    return c;
  }
}

/** readSync on a host fd; a non-blocking one that has nothing yet is waited for, in slices. */
function readHost(fd: number, buf: Uint8Array, ctx: IoCtx): number {
  for (;;) {
    try {
      return readSync(fd, buf, 0, buf.length, null);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (code === "EAGAIN" || code === "EWOULDBLOCK" || (e as { name?: unknown }).name === "WouldBlock") ctx.wait(5);
      else if (code === "EOF") return 0;
      else if (code !== "EINTR") throw e;
    }
  }
}

/** A host file of a mount, opened lazily (again after a restore) by its resolved host path. */
export class HostFile extends Desc {
  pos = 0;
  #fd = -1;
  constructor(readonly host: string, readonly path: string, flags: number) {
    super(flags);
  }
  /** The host fd; the first open may create or truncate (flags of open), a reopen does neither. */
  fd(create = false, mode = 0o666): number {
    if (this.#fd < 0) {
      const acc = this.flags & O.ACCMODE;
      let f = (acc === O.WRONLY ? FS.O_WRONLY : acc === O.RDWR ? FS.O_RDWR : FS.O_RDONLY) | FS.O_NOFOLLOW;
      if (create) f |= (this.flags & O.CREAT ? FS.O_CREAT : 0) | (this.flags & O.EXCL ? FS.O_EXCL : 0) | (this.flags & O.TRUNC ? FS.O_TRUNC : 0);
      this.#fd = openSync(this.host, f, mode);
    }
    return this.#fd;
  }
  override read(buf: Uint8Array, _ctx: IoCtx, at?: number): number {
    if (!this.readable) return -E.EBADF;
    try {
      const n = readSync(this.fd(), buf, 0, buf.length, at ?? this.pos);
      if (at === undefined) this.pos += n;
      return n;
    } catch (e) {
      return -hostErrno(e);
    }
  }
  override write(data: Uint8Array, _ctx: IoCtx, at?: number): number {
    if (!this.writable) return -E.EBADF;
    try {
      const fd = this.fd();
      if (at === undefined && this.flags & O.APPEND) this.pos = fstatSync(fd).size;
      let n = 0;
      while (n < data.length) n += writeSync(fd, data, n, data.length - n, (at ?? this.pos) + n);
      if (at === undefined) this.pos += n;
      return n;
    } catch (e) {
      return -hostErrno(e);
    }
  }
  override seek(offset: number, whence: number): number {
    const st = this.stat();
    if (typeof st === "number") return st;
    const base = whence === 0 ? 0 : whence === 1 ? this.pos : whence === 2 ? st.size : NaN;
    if (Number.isNaN(base)) return -E.EINVAL; // SEEK_DATA/SEEK_HOLE and the rest
    if (base + offset < 0) return -E.EINVAL;
    return (this.pos = base + offset);
  }
  stat(): StatInfo | number {
    try {
      return statOf(fstatSync(this.fd()));
    } catch (e) {
      return -hostErrno(e);
    }
  }
  ready(): number {
    return POLLIN | POLLOUT;
  }
  override release(): void {
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }
  clone(): Desc {
    const c = new HostFile(this.host, this.path, this.flags & ~(O.CREAT | O.EXCL | O.TRUNC));
    c.pos = this.pos;
    return c;
  }
}

/** An open directory (a synthetic one or a host one): getdents64 walks `entries`. */
export class Directory extends Desc {
  /** [name, mode, inode] ("." and ".." first), read at the first getdents64. */
  entries: [string, number, number][] | undefined;
  /** The next entry getdents64 returns. */
  pos = 0;
  constructor(readonly path: string, readonly info: StatInfo, readonly list: () => [string, number, number][] | number) {
    super(O.RDONLY | O.DIRECTORY);
  }
  override read(): number {
    return -E.EISDIR;
  }
  override write(): number {
    return -E.EBADF;
  }
  override seek(offset: number, whence: number): number {
    if (whence !== 0 || offset < 0) return -E.EINVAL;
    if (offset === 0) this.entries = undefined; // rewinddir: read the directory again
    return (this.pos = offset);
  }
  stat(): StatInfo {
    return this.info;
  }
  ready(): number {
    return POLLIN;
  }
  clone(): Desc {
    const c = new Directory(this.path, this.info, this.list);
    c.entries = this.entries;
    c.pos = this.pos;
    return c;
  }
}

/** An in-memory pipe: its buffered bytes and how many descriptions hold each end. */
export class Pipe {
  chunks: Uint8Array[] = [];
  size = 0;
  readers = 0;
  writers = 0;
  readonly ino = syntheticIno(`pipe:${Math.random()}`);
}

export class PipeEnd extends Desc {
  constructor(readonly pipe: Pipe, flags: number) {
    super(flags);
    if (this.readable) pipe.readers++;
    else pipe.writers++;
  }
  override read(buf: Uint8Array, ctx: IoCtx, at?: number): number {
    if (at !== undefined) return -E.ESPIPE;
    if (!this.readable) return -E.EBADF;
    const p = this.pipe;
    if (buf.length === 0) return 0;
    if (p.size === 0) {
      if (p.writers === 0) return 0; // EOF
      if (this.flags & O.NONBLOCK) return -E.EAGAIN;
      throw ctx.deadlock("read from an empty pipe whose write end it holds open itself");
    }
    let n = 0;
    for (let c = p.chunks[0]; n < buf.length && c !== undefined; c = p.chunks[0]) {
      const k = Math.min(c.length, buf.length - n);
      buf.set(c.subarray(0, k), n);
      n += k;
      if (k === c.length) p.chunks.shift();
      else p.chunks[0] = c.subarray(k);
    }
    p.size -= n;
    return n;
  }
  override write(data: Uint8Array, ctx: IoCtx, at?: number): number {
    if (at !== undefined) return -E.ESPIPE;
    if (!this.writable) return -E.EBADF;
    const p = this.pipe;
    if (p.readers === 0) return -E.EPIPE; // no SIGPIPE: the program sees the error
    const room = PIPE_CAPACITY - p.size;
    if (data.length > room) {
      if (!(this.flags & O.NONBLOCK)) throw ctx.deadlock(`write of ${data.length} bytes to a pipe that holds ${p.size} bytes nobody else will read`);
      if (room === 0) return -E.EAGAIN;
      data = data.subarray(0, room);
    }
    p.chunks.push(data.slice());
    p.size += data.length;
    return data.length;
  }
  stat(): StatInfo {
    return syntheticStat(S.IFIFO | 0o600, this.pipe.ino, this.pipe.size);
  }
  ready(): number {
    const p = this.pipe;
    if (this.readable) return (p.size > 0 ? POLLIN : 0) | (p.writers === 0 ? POLLHUP : 0);
    return p.readers === 0 ? POLLERR : p.size < PIPE_CAPACITY ? POLLOUT : 0;
  }
  override release(): void {
    if (this.readable) this.pipe.readers--;
    else this.pipe.writers--;
  }
  clone(memo: Map<object, object>): Desc {
    let p = memo.get(this.pipe) as Pipe | undefined;
    if (p === undefined) {
      p = new Pipe();
      p.chunks = this.pipe.chunks.map((c) => c.slice());
      p.size = this.pipe.size;
      memo.set(this.pipe, p);
    }
    return new PipeEnd(p, this.flags);
  }
}

const MAX_FDS = 1024; // RLIMIT_NOFILE

/** fd number → (description, close-on-exec). */
export class FdTable {
  readonly slots: Map<number, { desc: Desc; cloexec: boolean }> = new Map();

  /** (fd arguments are C ints: `fd | 0` undoes a zero-extended register) */
  get(fd: number): Desc | undefined {
    return this.slots.get(fd | 0)?.desc;
  }
  /** Install `desc` at the lowest free fd ≥ `min`; the fd or -EMFILE. */
  add(desc: Desc, cloexec = false, min = 0): number {
    let fd = Math.max(0, min);
    while (this.slots.has(fd)) fd++;
    if (fd >= MAX_FDS) return -E.EMFILE;
    this.set(fd, desc, cloexec);
    return fd;
  }
  /** Put `desc` at `fd`, closing what was there (dup2). */
  set(fd: number, desc: Desc, cloexec: boolean): void {
    desc.refs++;
    this.close(fd);
    this.slots.set(fd, { desc, cloexec });
  }
  close(fd: number): number {
    fd |= 0;
    const slot = this.slots.get(fd);
    if (slot === undefined) return -E.EBADF;
    this.slots.delete(fd);
    if (--slot.desc.refs === 0) slot.desc.release();
    return 0;
  }
  closeAll(): void {
    for (const fd of [...this.slots.keys()]) this.close(fd);
  }
  /**
   * A copy of the table (shared descriptions stay shared in the copy); `replace` may give a
   * description its own substitute (a fork's own output sinks).
   */
  clone(replace?: (d: Desc) => Desc | undefined): FdTable {
    const memo = new Map<object, object>();
    const t = new FdTable();
    for (const [fd, { desc, cloexec }] of this.slots) {
      let c = memo.get(desc) as Desc | undefined;
      if (c === undefined) memo.set(desc, (c = replace?.(desc) ?? desc.clone(memo)));
      t.set(fd, c, cloexec);
    }
    return t;
  }
}
