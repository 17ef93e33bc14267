/**
 * The path system calls of a Linux program: open/openat, the stat family, getdents64,
 * readlink, access, getcwd/chdir, mkdir/unlink, umask, over the namespace of vfs.ts and the fd
 * table of fds.ts. The data calls (read, write, poll, pipes, dup, fcntl) are in io.ts.
 */
import { ftruncateSync, mkdirSync, readlinkSync, rmdirSync, unlinkSync } from "node:fs";
import type { Cpu } from "../engine/owners.ts";
import { guestCString, guestRange } from "../engine/pointers.ts";
import { AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, direntType, E, hostErrno, O, S, writeStat, writeStatx, type StatInfo } from "./abi.ts";
import { Directory, FdTable, HostFile, NullInput, SinkOutput, StdinPipe, type StdinOption } from "./fds.ts";
import type { OutputSink } from "./options.ts";
import { normalize, Vfs, type FilesOption, type Node } from "./vfs.ts";

/** x86-64 numbers of the calls this file serves. */
export const FILE_NR = {
  stat: 4, fstat: 5, lstat: 6, access: 21, getcwd: 79, chdir: 80, fchdir: 81, mkdir: 83, rmdir: 84, unlink: 87, readlink: 89,
  umask: 95, ftruncate: 77, getdents64: 217, open: 2, openat: 257, mkdirat: 258, newfstatat: 262, unlinkat: 263,
  readlinkat: 267, faccessat: 269, statx: 332, faccessat2: 439,
} as const;

const AT_REMOVEDIR = 0x200;
const encoder = new TextEncoder();

/** The files a snapshot keeps: the fd table (a copy), cwd and umask. */
export interface FilesState {
  readonly table: FdTable;
  readonly cwd: string;
  readonly umask: number;
}

export class LinuxFiles {
  table = new FdTable();
  cwd = "/";
  umask = 0o022;
  readonly vfs: Vfs;

  constructor(files: FilesOption | undefined, readonly stdin: StdinOption | undefined, readonly stdout: OutputSink, readonly stderr: OutputSink, readonly exePath: string) {
    this.vfs = new Vfs(files);
    this.table.add(stdin === undefined ? new NullInput(O.RDONLY) : StdinPipe.of(stdin));
    this.table.add(new SinkOutput(stdout, 5));
    this.table.add(new SinkOutput(stderr, 6));
  }

  state(): FilesState {
    return { table: this.table.clone(), cwd: this.cwd, umask: this.umask };
  }
  /**
   * Go back to `s`. The std streams are this process's own: a fork's sinks, and its stdin when it
   * was given one other than the snapshot's (a reset goes on reading where the snapshot was).
   */
  restore(s: FilesState): void {
    this.table.closeAll();
    const own = this.stdin;
    this.table = s.table.clone((d) => {
      if (d instanceof SinkOutput) return new SinkOutput(d.ino === 5 ? this.stdout : this.stderr, d.ino);
      const other = d instanceof NullInput || (d instanceof StdinPipe && d.source !== own);
      return own !== undefined && other ? StdinPipe.of(own) : undefined;
    });
    this.cwd = s.cwd;
    this.umask = s.umask;
  }

  /** Serve `nr` if it is one of FILE_NR; undefined otherwise. */
  call(r: Cpu, nr: number, a0: number, a1: number, a2: number, a3: number, a4: number): number | undefined {
    switch (nr) {
      case FILE_NR.open:
        return this.#open(r, AT_FDCWD, a0, a1, a2);
      case FILE_NR.openat:
        return this.#open(r, a0, a1, a2, a3);
      case FILE_NR.fstat:
        return this.#putStat(r, this.#fdStat(a0), a1, false);
      case FILE_NR.stat:
      case FILE_NR.lstat:
        return this.#putStat(r, this.#statAt(r, AT_FDCWD, a0, nr === FILE_NR.lstat ? AT_SYMLINK_NOFOLLOW : 0), a1, false);
      case FILE_NR.newfstatat:
        return this.#putStat(r, this.#statAt(r, a0, a1, a3), a2, false);
      case FILE_NR.statx:
        return this.#putStat(r, this.#statAt(r, a0, a1, a2), a4, true);
      case FILE_NR.getdents64:
        return this.#getdents(r, a0, a1, a2);
      case FILE_NR.readlink:
        return this.#readlink(r, AT_FDCWD, a0, a1, a2);
      case FILE_NR.readlinkat:
        return this.#readlink(r, a0, a1, a2, a3);
      case FILE_NR.access:
        return this.#access(r, AT_FDCWD, a0, a1, 0);
      case FILE_NR.faccessat:
        return this.#access(r, a0, a1, a2, 0);
      case FILE_NR.faccessat2:
        return this.#access(r, a0, a1, a2, a3);
      case FILE_NR.getcwd: {
        const bytes = encoder.encode(this.cwd + "\0");
        if (a1 < bytes.length) return -E.ERANGE;
        guestRange(r, a0, bytes.length, true).set(bytes);
        return bytes.length;
      }
      case FILE_NR.chdir: {
        const path = this.#path(r, AT_FDCWD, a0);
        if (typeof path === "number") return path;
        const st = this.#statPath(path, true);
        if (typeof st === "number") return st;
        if ((st.mode & S.IFMT) !== S.IFDIR) return -E.ENOTDIR;
        this.cwd = path;
        return 0;
      }
      case FILE_NR.fchdir: {
        const d = this.table.get(a0);
        if (d === undefined) return -E.EBADF;
        if (!(d instanceof Directory)) return -E.ENOTDIR;
        this.cwd = d.path;
        return 0;
      }
      case FILE_NR.umask: {
        const old = this.umask;
        this.umask = a0 & 0o777;
        return old;
      }
      case FILE_NR.mkdir:
      case FILE_NR.mkdirat:
        return nr === FILE_NR.mkdir ? this.#change(r, AT_FDCWD, a0, (h) => mkdirSync(h, a1 & ~this.umask & 0o7777)) : this.#change(r, a0, a1, (h) => mkdirSync(h, a2 & ~this.umask & 0o7777));
      case FILE_NR.unlink:
        return this.#change(r, AT_FDCWD, a0, (h) => unlinkSync(h));
      case FILE_NR.rmdir:
        return this.#change(r, AT_FDCWD, a0, (h) => rmdirSync(h));
      case FILE_NR.unlinkat:
        return this.#change(r, a0, a1, (h) => ((a2 & AT_REMOVEDIR) !== 0 ? rmdirSync(h) : unlinkSync(h)));
      case FILE_NR.ftruncate: {
        const d = this.table.get(a0);
        if (!(d instanceof HostFile)) return d === undefined ? -E.EBADF : -E.EINVAL;
        if (!d.writable) return -E.EINVAL;
        try {
          ftruncateSync(d.fd(), a1);
          return 0;
        } catch (e) {
          return -hostErrno(e);
        }
      }
      default:
        return undefined;
    }
  }

  /** The guest path at `ptr`, absolute and normalised against the cwd or the directory `dirfd`. */
  #path(r: Cpu, dirfd: number, ptr: number): string | number {
    dirfd |= 0; // a C int
    const raw = guestCString(r, ptr, 4097);
    if (raw.length > 4095) return -E.ENAMETOOLONG;
    if (raw === "") return -E.ENOENT;
    if (raw.startsWith("/") || dirfd === AT_FDCWD) return normalize(this.cwd, raw);
    const d = this.table.get(dirfd);
    if (d === undefined) return -E.EBADF;
    if (!(d instanceof Directory)) return -E.ENOTDIR;
    return normalize(d.path, raw);
  }

  #statPath(path: string, follow: boolean): StatInfo | number {
    const node = this.vfs.resolve(path, follow);
    return typeof node === "number" ? node : this.vfs.stat(node, follow);
  }

  #fdStat(fd: number): StatInfo | number {
    return this.table.get(fd)?.stat() ?? -E.EBADF;
  }

  #statAt(r: Cpu, dirfd: number, ptr: number, flags: number): StatInfo | number {
    dirfd |= 0;
    if ((flags & AT_EMPTY_PATH) !== 0 && guestCString(r, ptr, 1) === "") return dirfd === AT_FDCWD ? this.#statPath(this.cwd, true) : this.#fdStat(dirfd);
    const path = this.#path(r, dirfd, ptr);
    return typeof path === "number" ? path : this.#statPath(path, (flags & AT_SYMLINK_NOFOLLOW) === 0);
  }

  #putStat(r: Cpu, st: StatInfo | number, buf: number, statx: boolean): number {
    if (typeof st === "number") return st;
    if (statx) writeStatx(guestRange(r, buf, 256, true), st);
    else writeStat(guestRange(r, buf, 144, true), st);
    return 0;
  }

  #open(r: Cpu, dirfd: number, ptr: number, flags: number, mode: number): number {
    const path = this.#path(r, dirfd, ptr);
    if (typeof path === "number") return path;
    const node = this.vfs.resolve(path, (flags & O.NOFOLLOW) === 0);
    if (typeof node === "number") return node;
    const acc = flags & O.ACCMODE;
    const writes = acc !== O.RDONLY || (flags & O.TRUNC) !== 0;
    let fdFlags = flags & (O.ACCMODE | O.APPEND | O.NONBLOCK | O.LARGEFILE);
    if (node.kind === "host" && node.missing) {
      if ((flags & O.CREAT) === 0) return -E.ENOENT;
      if (!node.mount.write) return -E.EROFS;
      return this.#install(new HostFile(node.host, path, fdFlags | (flags & (O.CREAT | O.EXCL | O.TRUNC))), flags, mode & ~this.umask & 0o7777);
    }
    if ((flags & (O.CREAT | O.EXCL)) === (O.CREAT | O.EXCL)) return -E.EEXIST;
    const st = this.vfs.stat(node, (flags & O.NOFOLLOW) === 0);
    if (typeof st === "number") return st;
    const type = st.mode & S.IFMT;
    if (type === S.IFLNK) return -E.ELOOP; // O_NOFOLLOW on a symlink
    if (type === S.IFDIR) {
      if (acc !== O.RDONLY) return -E.EISDIR;
      return this.table.add(new Directory(path, st, () => this.vfs.list(node)), (flags & O.CLOEXEC) !== 0);
    }
    if ((flags & O.DIRECTORY) !== 0) return -E.ENOTDIR;
    if (node.kind !== "host") return -E.ENOENT;
    if (writes && !node.mount.write) return -E.EROFS;
    fdFlags |= flags & O.TRUNC;
    return this.#install(new HostFile(node.host, path, fdFlags), flags, 0o666);
  }

  /** Open the host file now (an error is open's), then give it an fd. */
  #install(f: HostFile, flags: number, mode: number): number {
    try {
      f.fd(true, mode);
    } catch (e) {
      return -hostErrno(e);
    }
    const fd = this.table.add(f, (flags & O.CLOEXEC) !== 0);
    if (fd < 0) f.release();
    return fd;
  }

  #getdents(r: Cpu, fd: number, buf: number, count: number): number {
    const d = this.table.get(fd);
    if (d === undefined) return -E.EBADF;
    if (!(d instanceof Directory)) return -E.ENOTDIR;
    if (d.entries === undefined) {
      const list = d.list();
      if (typeof list === "number") return list;
      d.entries = list;
    }
    const out = guestRange(r, buf, Math.max(0, count), true);
    const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
    let n = 0;
    for (; d.pos < d.entries.length; d.pos++) {
      const [name, mode, ino] = d.entries[d.pos]!;
      const bytes = encoder.encode(name);
      const reclen = (19 + bytes.length + 1 + 7) & ~7;
      if (n + reclen > out.length) {
        if (n === 0) return -E.EINVAL;
        break;
      }
      dv.setBigUint64(n, BigInt(ino), true);
      dv.setBigInt64(n + 8, BigInt(d.pos + 1), true);
      dv.setUint16(n + 16, reclen, true);
      out[n + 18] = direntType(mode);
      out.set(bytes, n + 19);
      out.fill(0, n + 19 + bytes.length, n + reclen);
      n += reclen;
    }
    return n;
  }

  #readlink(r: Cpu, dirfd: number, ptr: number, buf: number, size: number): number {
    const path = this.#path(r, dirfd, ptr);
    if (typeof path === "number") return path;
    if (size <= 0) return -E.EINVAL;
    let target: string;
    if (path === "/proc/self/exe") target = this.exePath;
    else {
      const node = this.vfs.resolve(path, false);
      if (typeof node === "number") return node;
      if (node.kind !== "host") return -E.EINVAL;
      if (node.missing) return -E.ENOENT;
      try {
        target = readlinkSync(node.host);
      } catch (e) {
        return -hostErrno(e);
      }
    }
    const bytes = encoder.encode(target).subarray(0, size);
    guestRange(r, buf, bytes.length, true).set(bytes);
    return bytes.length;
  }

  #access(r: Cpu, dirfd: number, ptr: number, mode: number, flags: number): number {
    if ((mode & ~7) !== 0) return -E.EINVAL;
    const path = this.#path(r, dirfd, ptr);
    if (typeof path === "number") return path;
    const node = this.vfs.resolve(path, (flags & AT_SYMLINK_NOFOLLOW) === 0);
    if (typeof node === "number") return node;
    const st = this.vfs.stat(node, (flags & AT_SYMLINK_NOFOLLOW) === 0);
    if (typeof st === "number") return st;
    if ((mode & 2) !== 0 && (node.kind !== "host" || !node.mount.write)) return -E.EROFS;
    // The program is root: reading and writing are allowed, executing needs an x bit (or a directory).
    if ((mode & 1) !== 0 && (st.mode & 0o111) === 0 && (st.mode & S.IFMT) !== S.IFDIR) return -E.EACCES;
    return 0;
  }

  /** mkdir, unlink, rmdir: only inside a read-write mount. */
  #change(r: Cpu, dirfd: number, ptr: number, op: (host: string) => void): number {
    const path = this.#path(r, dirfd, ptr);
    if (typeof path === "number") return path;
    const node: Node | number = this.vfs.resolve(path, false);
    if (typeof node === "number") return node;
    if (node.kind !== "host" || !node.mount.write || node.host === node.mount.root) return -E.EROFS;
    try {
      op(node.host);
      return 0;
    } catch (e) {
      return -hostErrno(e);
    }
  }
}
