/**
 * Linux x86-64 ABI constants and structures the file layer of a Linux program uses (errno
 * values, open flags, file types, struct stat / statx / linux_dirent64). A leaf module.
 */

/** Linux errno values the layer returns (negated in RAX). */
export const E = {
  EPERM: 1, ENOENT: 2, ESRCH: 3, EINTR: 4, EIO: 5, EBADF: 9, ECHILD: 10, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EFAULT: 14,
  EEXIST: 17, EXDEV: 18, ENODEV: 19, ENOTDIR: 20, EISDIR: 21, EINVAL: 22, EMFILE: 24, ENOTTY: 25, EFBIG: 27, ENOSPC: 28, ESPIPE: 29, EROFS: 30,
  EPIPE: 32, ERANGE: 34, ENAMETOOLONG: 36, ENOSYS: 38, ENOTEMPTY: 39, ELOOP: 40, ENOTSOCK: 88, EOPNOTSUPP: 95,
  EAFNOSUPPORT: 97,
} as const;

/** The errno value of a host node:fs error (its `code`), EIO when it has none we know. */
export function hostErrno(e: unknown): number {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" && code in E ? E[code as keyof typeof E] : E.EIO;
}

/** open(2) flags (x86-64 values). */
export const O = {
  RDONLY: 0, WRONLY: 1, RDWR: 2, ACCMODE: 3, CREAT: 0o100, EXCL: 0o200, NOCTTY: 0o400, TRUNC: 0o1000, APPEND: 0o2000,
  NONBLOCK: 0o4000, LARGEFILE: 0o100000, DIRECTORY: 0o200000, NOFOLLOW: 0o400000, CLOEXEC: 0o2000000, PATH: 0o10000000,
} as const;

export const AT_FDCWD = -100;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_EMPTY_PATH = 0x1000;

/** File types of st_mode. */
export const S = { IFMT: 0o170000, IFSOCK: 0o140000, IFLNK: 0o120000, IFREG: 0o100000, IFBLK: 0o060000, IFDIR: 0o040000, IFCHR: 0o020000, IFIFO: 0o010000 } as const;

/** What stat, fstat, newfstatat and statx report of a file (times in ms since the epoch). */
export interface StatInfo {
  dev: number;
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  blksize: number;
  blocks: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
}

/** The fields of a node:fs Stats a StatInfo needs (node:fs works the same on Node, Bun and Deno). */
export interface HostStats {
  dev: number; ino: number; mode: number; nlink: number; uid: number; gid: number; rdev: number; size: number;
  blksize: number; blocks: number; atimeMs: number; mtimeMs: number; ctimeMs: number;
}

export function statOf(s: HostStats): StatInfo {
  const { dev, ino, mode, nlink, uid, gid, rdev, size, blksize, blocks, atimeMs, mtimeMs, ctimeMs } = s;
  return { dev, ino, mode, nlink, uid, gid, rdev, size, blksize: blksize || 4096, blocks, atimeMs, mtimeMs, ctimeMs };
}

/** A synthetic file (a directory of the namespace, a pipe, a std stream) with `mode` and `ino`. */
export function syntheticStat(mode: number, ino: number, size = 0, rdev = 0): StatInfo {
  const t = START_MS;
  return { dev: 0x16, ino, mode, nlink: (mode & S.IFMT) === S.IFDIR ? 2 : 1, uid: 0, gid: 0, rdev, size, blksize: 4096, blocks: 0, atimeMs: t, mtimeMs: t, ctimeMs: t };
}
const START_MS = Date.now();

const sec = (ms: number) => BigInt(Math.floor(ms / 1000));
const nsec = (ms: number) => Math.round((ms - Math.floor(ms / 1000) * 1000) * 1e6) % 1_000_000_000;

/** struct stat (x86-64, 144 bytes) into `b`. */
export function writeStat(b: Uint8Array, s: StatInfo): void {
  b.fill(0);
  const dv = new DataView(b.buffer, b.byteOffset, 144);
  dv.setBigUint64(0, BigInt(s.dev), true);
  dv.setBigUint64(8, BigInt(s.ino), true);
  dv.setBigUint64(16, BigInt(s.nlink), true);
  dv.setUint32(24, s.mode, true);
  dv.setUint32(28, s.uid, true);
  dv.setUint32(32, s.gid, true);
  dv.setBigUint64(40, BigInt(s.rdev), true);
  dv.setBigInt64(48, BigInt(s.size), true);
  dv.setBigInt64(56, BigInt(s.blksize), true);
  dv.setBigInt64(64, BigInt(s.blocks), true);
  [s.atimeMs, s.mtimeMs, s.ctimeMs].forEach((ms, i) => {
    dv.setBigInt64(72 + i * 16, sec(ms), true);
    dv.setBigInt64(80 + i * 16, BigInt(nsec(ms)), true);
  });
}

/** struct statx (256 bytes) into `b`: every basic field (STATX_BASIC_STATS). */
export function writeStatx(b: Uint8Array, s: StatInfo): void {
  b.fill(0);
  const dv = new DataView(b.buffer, b.byteOffset, 256);
  dv.setUint32(0, 0x7ff, true); // stx_mask: STATX_BASIC_STATS
  dv.setUint32(4, s.blksize, true);
  dv.setUint32(16, s.nlink, true);
  dv.setUint32(20, s.uid, true);
  dv.setUint32(24, s.gid, true);
  dv.setUint16(28, s.mode, true);
  dv.setBigUint64(32, BigInt(s.ino), true);
  dv.setBigUint64(40, BigInt(s.size), true);
  dv.setBigUint64(48, BigInt(s.blocks), true);
  // stx_atime @64, stx_btime @80 (left 0: not in the mask), stx_ctime @96, stx_mtime @112
  for (const [at, ms] of [[64, s.atimeMs], [96, s.ctimeMs], [112, s.mtimeMs]] as const) {
    dv.setBigInt64(at, sec(ms), true);
    dv.setUint32(at + 8, nsec(ms), true);
  }
  dv.setUint32(128, Math.floor(s.rdev / 256) & 0xfff, true);
  dv.setUint32(132, s.rdev & 0xff, true);
  dv.setUint32(136, Math.floor(s.dev / 256) & 0xfff, true);
  dv.setUint32(140, s.dev & 0xff, true);
}

/** d_type of linux_dirent64 for an st_mode. */
export function direntType(mode: number): number {
  switch (mode & S.IFMT) {
    case S.IFIFO: return 1;
    case S.IFCHR: return 2;
    case S.IFDIR: return 4;
    case S.IFBLK: return 6;
    case S.IFREG: return 8;
    case S.IFLNK: return 10;
    case S.IFSOCK: return 12;
    default: return 0;
  }
}

/** A stable inode number for a synthetic file (FNV-1a of its path). */
export function syntheticIno(path: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < path.length; i++) h = Math.imul(h ^ path.charCodeAt(i), 0x01000193) >>> 0;
  return h || 1;
}
