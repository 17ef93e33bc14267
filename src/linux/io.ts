/**
 * The data system calls of a Linux program over its fd table (fds.ts): read/write and their
 * vector and positioned forms, lseek, close, dup, pipes, fcntl, ioctl, sendfile, poll/select.
 * Reads go straight into guest memory, one call's worth at a time (a stream is never loaded whole).
 */
import type { Cpu } from "../engine/owners.ts";
import { guestRange } from "../engine/pointers.ts";
import { E, O } from "./abi.ts";
import { type Desc, type IoCtx, Pipe, PipeEnd, POLLERR, POLLHUP, POLLIN, POLLOUT } from "./fds.ts";
import type { LinuxFiles } from "./files.ts";

/** x86-64 numbers of the calls this file serves. */
export const IO_NR = {
  read: 0, write: 1, close: 3, poll: 7, lseek: 8, ioctl: 16, pread64: 17, pwrite64: 18, readv: 19, writev: 20, pipe: 22,
  select: 23, dup: 32, dup2: 33, sendfile: 40, connect: 42, accept: 43, sendto: 44, recvfrom: 45, sendmsg: 46, recvmsg: 47,
  shutdown: 48, bind: 49, listen: 50, getsockname: 51, getpeername: 52, setsockopt: 54, getsockopt: 55, fcntl: 72,
  fsync: 74, fdatasync: 75, fadvise64: 221, pselect6: 270, ppoll: 271, dup3: 292, pipe2: 293, preadv: 295, pwritev: 296,
} as const;

const MAX_RW = 0x7ffff000; // Linux's cap of one read or write
const F = { DUPFD: 0, GETFD: 1, SETFD: 2, GETFL: 3, SETFL: 4, GETLK: 5, SETLK: 6, SETLKW: 7, OFD_GETLK: 36, OFD_SETLK: 37, OFD_SETLKW: 38, DUPFD_CLOEXEC: 1030, SETPIPE_SZ: 1031, GETPIPE_SZ: 1032 } as const;
const POLLNVAL = 0x20;
const SOCKET_CALLS = new Set<number>([IO_NR.connect, IO_NR.accept, IO_NR.sendto, IO_NR.recvfrom, IO_NR.sendmsg, IO_NR.recvmsg, IO_NR.shutdown, IO_NR.bind, IO_NR.listen, IO_NR.getsockname, IO_NR.getpeername, IO_NR.setsockopt, IO_NR.getsockopt]);

/** Serve `nr` if it is one of IO_NR; undefined otherwise. */
export function ioCall(f: LinuxFiles, r: Cpu, ctx: IoCtx, nr: number, a0: number, a1: number, a2: number, a3: number, a4: number): number | undefined {
  const t = f.table;
  const ptr = a0; // poll, ppoll, pipe and pipe2 take a pointer first (above 2 GiB in high windows)
  a0 |= 0; // every other call here takes an int (an fd, nfds) first
  if (SOCKET_CALLS.has(nr)) return t.get(a0) === undefined ? -E.EBADF : -E.ENOTSOCK;
  switch (nr) {
    case IO_NR.read:
      return rw(r, ctx, t.get(a0), [[a1, a2]], false, undefined);
    case IO_NR.pread64:
      return a3 < 0 ? -E.EINVAL : rw(r, ctx, t.get(a0), [[a1, a2]], false, a3);
    case IO_NR.write:
      return rw(r, ctx, t.get(a0), [[a1, a2]], true, undefined);
    case IO_NR.pwrite64:
      return a3 < 0 ? -E.EINVAL : rw(r, ctx, t.get(a0), [[a1, a2]], true, a3);
    case IO_NR.readv:
    case IO_NR.writev:
    case IO_NR.preadv:
    case IO_NR.pwritev: {
      const iov = iovecs(r, a1, a2);
      if (typeof iov === "number") return iov;
      const at = nr === IO_NR.preadv || nr === IO_NR.pwritev ? a3 : undefined;
      if (at !== undefined && at < 0) return -E.EINVAL;
      return rw(r, ctx, t.get(a0), iov, nr === IO_NR.writev || nr === IO_NR.pwritev, at);
    }
    case IO_NR.close:
      return t.close(a0);
    case IO_NR.lseek:
      return t.get(a0)?.seek(a1, a2) ?? -E.EBADF;
    case IO_NR.ioctl:
      return t.get(a0) === undefined ? -E.EBADF : -E.ENOTTY; // TCGETS and the rest: no terminal
    case IO_NR.fsync:
    case IO_NR.fdatasync:
      return t.get(a0) === undefined ? -E.EBADF : 0;
    case IO_NR.fadvise64:
      return t.get(a0) === undefined ? -E.EBADF : t.get(a0) instanceof PipeEnd ? -E.ESPIPE : 0;
    case IO_NR.dup: {
      const d = t.get(a0);
      return d === undefined ? -E.EBADF : t.add(d);
    }
    case IO_NR.dup2:
    case IO_NR.dup3: {
      const d = t.get(a0);
      a1 |= 0;
      if (d === undefined || a1 < 0 || a1 >= 1024) return -E.EBADF;
      if (nr === IO_NR.dup3 && (a0 === a1 || (a2 & ~O.CLOEXEC) !== 0)) return -E.EINVAL;
      if (a0 !== a1) t.set(a1, d, nr === IO_NR.dup3 && (a2 & O.CLOEXEC) !== 0);
      return a1;
    }
    case IO_NR.pipe:
    case IO_NR.pipe2: {
      const flags = nr === IO_NR.pipe2 ? a1 : 0;
      if ((flags & ~(O.CLOEXEC | O.NONBLOCK)) !== 0) return -E.EINVAL;
      const out = guestRange(r, ptr, 8, true);
      const p = new Pipe();
      const rd = t.add(new PipeEnd(p, O.RDONLY | (flags & O.NONBLOCK)), (flags & O.CLOEXEC) !== 0);
      const wr = t.add(new PipeEnd(p, O.WRONLY | (flags & O.NONBLOCK)), (flags & O.CLOEXEC) !== 0);
      if (rd < 0 || wr < 0) {
        if (rd >= 0) t.close(rd);
        return -E.EMFILE;
      }
      const dv = new DataView(out.buffer, out.byteOffset, 8);
      dv.setInt32(0, rd, true);
      dv.setInt32(4, wr, true);
      return 0;
    }
    case IO_NR.fcntl:
      return fcntl(f, r, a0, a1, a2);
    case IO_NR.sendfile:
      return sendfile(r, ctx, t.get(a0), t.get(a1 | 0), a2, a3);
    case IO_NR.poll:
      return poll(f, r, ctx, ptr, a1, a2 | 0);
    case IO_NR.ppoll:
      return poll(f, r, ctx, ptr, a1, a2 === 0 ? -1 : timespecMs(r, a2, 1e6));
    case IO_NR.select:
      return select(f, r, ctx, a0, a1, a2, a3, a4 === 0 ? -1 : timespecMs(r, a4, 1e3));
    case IO_NR.pselect6:
      return select(f, r, ctx, a0, a1, a2, a3, a4 === 0 ? -1 : timespecMs(r, a4, 1e6));
    default:
      return undefined;
  }
}

/** struct iovec[cnt] at `addr` as [base, len] pairs. */
function iovecs(r: Cpu, addr: number, cnt: number): [number, number][] | number {
  if (cnt < 0 || cnt > 1024) return -E.EINVAL;
  const b = guestRange(r, addr, cnt * 16, false);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: [number, number][] = [];
  for (let i = 0; i < cnt; i++) out.push([Number(dv.getBigUint64(i * 16, true)), Number(dv.getBigInt64(i * 16 + 8, true))]);
  return out;
}

/** Read into (or write from) the guest buffers `parts` in order; stops at a short transfer. */
function rw(r: Cpu, ctx: IoCtx, d: Desc | undefined, parts: [number, number][], write: boolean, at: number | undefined): number {
  if (d === undefined || !(write ? d.writable : d.readable)) return -E.EBADF;
  let total = 0;
  for (const [addr, len] of parts) {
    if (len < 0) return -E.EINVAL;
    const want = Math.min(len, MAX_RW - total);
    if (want === 0) continue;
    const buf = guestRange(r, addr, want, !write);
    const n = write ? d.write(buf, ctx, at === undefined ? undefined : at + total) : d.read(buf, ctx, at === undefined ? undefined : at + total);
    if (n < 0) return total > 0 ? total : n;
    total += n;
    if (n < want) break;
  }
  return total;
}

function fcntl(f: LinuxFiles, r: Cpu, fd: number, cmd: number, arg: number): number {
  const slot = f.table.slots.get(fd);
  if (slot === undefined) return -E.EBADF;
  switch (cmd) {
    case F.DUPFD:
    case F.DUPFD_CLOEXEC:
      return arg < 0 || arg >= 1024 ? -E.EINVAL : f.table.add(slot.desc, cmd === F.DUPFD_CLOEXEC, arg);
    case F.GETFD:
      return slot.cloexec ? 1 : 0;
    case F.SETFD:
      slot.cloexec = (arg & 1) !== 0;
      return 0;
    case F.GETFL:
      return slot.desc.flags & ~O.DIRECTORY;
    case F.SETFL:
      slot.desc.flags = (slot.desc.flags & ~(O.APPEND | O.NONBLOCK)) | (arg & (O.APPEND | O.NONBLOCK));
      return 0;
    case F.GETLK:
    case F.OFD_GETLK:
      guestRange(r, arg, 2, true).set([2, 0]); // l_type = F_UNLCK: one process, nobody else holds a lock
      return 0;
    case F.SETLK:
    case F.SETLKW:
    case F.OFD_SETLK:
    case F.OFD_SETLKW:
      return 0;
    case F.GETPIPE_SZ:
    case F.SETPIPE_SZ:
      return slot.desc instanceof PipeEnd ? 65536 : -E.EBADF;
    default:
      return -E.EINVAL;
  }
}

const CHUNK = 65536;

/** sendfile(out, in, offset*, count) through a host buffer, a chunk at a time. */
function sendfile(r: Cpu, ctx: IoCtx, out: Desc | undefined, inp: Desc | undefined, offPtr: number, count: number): number {
  if (out === undefined || inp === undefined || !out.writable || !inp.readable) return -E.EBADF;
  if (count < 0) return -E.EINVAL;
  let at: number | undefined;
  if (offPtr !== 0) {
    const b = guestRange(r, offPtr, 8, true);
    at = Number(new DataView(b.buffer, b.byteOffset, 8).getBigInt64(0, true));
    if (at < 0) return -E.EINVAL;
  }
  const buf = new Uint8Array(Math.min(CHUNK, count));
  let total = 0;
  const limit = Math.min(count, MAX_RW);
  while (total < limit) {
    const chunk = buf.subarray(0, Math.min(buf.length, limit - total));
    const n = inp.read(chunk, ctx, at === undefined ? undefined : at + total);
    if (n < 0) {
      if (total > 0) break;
      return n;
    }
    if (n === 0) break;
    const w = out.write(chunk.subarray(0, n), ctx);
    if (w < 0) {
      if (total > 0) break;
      return w;
    }
    total += w;
    if (n < chunk.length) break;
  }
  if (at !== undefined) {
    const b = guestRange(r, offPtr, 8, true);
    new DataView(b.buffer, b.byteOffset, 8).setBigInt64(0, BigInt(at + total), true);
  }
  return total;
}

/** A struct timespec (or timeval: `unit` 1e3) at `addr` in ms; -2 when invalid. */
function timespecMs(r: Cpu, addr: number, unit: number): number {
  const b = guestRange(r, addr, 16, false);
  const dv = new DataView(b.buffer, b.byteOffset, 16);
  const s = Number(dv.getBigInt64(0, true)), frac = Number(dv.getBigInt64(8, true));
  if (s < 0 || frac < 0 || frac >= unit * 1000) return -2;
  return s * 1000 + frac / unit;
}

/** Nothing is ready: wait out the timeout (nothing can change meanwhile), or the program waits forever. */
function nothingReady(ctx: IoCtx, timeoutMs: number, what: string): number {
  if (timeoutMs === -2) return -E.EINVAL;
  if (timeoutMs < 0) throw ctx.deadlock(`${what} without a timeout on descriptors none of which can become ready`);
  if (timeoutMs > 0) ctx.wait(timeoutMs);
  return 0;
}

function poll(f: LinuxFiles, r: Cpu, ctx: IoCtx, fds: number, nfds: number, timeoutMs: number): number {
  if (nfds < 0 || nfds > 1024) return -E.EINVAL;
  if (timeoutMs === -2) return -E.EINVAL;
  const b = guestRange(r, fds, nfds * 8, true);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let ready = 0;
  for (let i = 0; i < nfds; i++) {
    const fd = dv.getInt32(i * 8, true);
    const events = dv.getInt16(i * 8 + 4, true);
    const d = fd < 0 ? undefined : f.table.get(fd);
    const revents = fd < 0 ? 0 : d === undefined ? POLLNVAL : d.ready() & (events | POLLERR | POLLHUP);
    dv.setInt16(i * 8 + 6, revents, true);
    if (revents !== 0) ready++;
  }
  return ready > 0 ? ready : nothingReady(ctx, timeoutMs, "poll");
}

function select(f: LinuxFiles, r: Cpu, ctx: IoCtx, nfds: number, rd: number, wr: number, ex: number, timeoutMs: number): number {
  if (nfds < 0 || nfds > 1024) return -E.EINVAL;
  if (timeoutMs === -2) return -E.EINVAL;
  const bytes = Math.ceil(nfds / 64) * 8;
  const masks = [POLLIN | POLLHUP | POLLERR, POLLOUT | POLLERR, 0];
  const sets = [rd, wr, ex].flatMap((p, k) => (p === 0 ? [] : [{ set: guestRange(r, p, bytes, true), mask: masks[k] ?? 0, result: new Uint8Array(bytes) }]));
  let ready = 0;
  for (let fd = 0; fd < nfds; fd++) {
    const byte = fd >> 3, bit = 1 << (fd & 7);
    for (const { set, mask, result } of sets) {
      if (((set[byte] ?? 0) & bit) === 0) continue;
      const d = f.table.get(fd);
      if (d === undefined) return -E.EBADF;
      if ((d.ready() & mask) !== 0) {
        result[byte] = (result[byte] ?? 0) | bit;
        ready++;
      }
    }
  }
  for (const { set, result } of sets) set.set(result);
  return ready > 0 ? ready : nothingReady(ctx, timeoutMs, "select");
}
