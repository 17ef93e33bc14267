/**
 * Linux x86-64 errno values that ipre names or tests for. A leaf module (it imports nothing), so
 * both `errors.ts` and `ffi/` can use it without importing each other.
 */
export const ERRNO = {
  EPERM: 1, ENOENT: 2, EINTR: 4, EIO: 5, E2BIG: 7, EBADF: 9, EAGAIN: 11, ENOMEM: 12, EACCES: 13,
  EFAULT: 14, EBUSY: 16, EEXIST: 17, ENODEV: 19, EINVAL: 22, EMFILE: 24, ENOTTY: 25, ENOSPC: 28,
  ENOSYS: 38, EOPNOTSUPP: 95, ETIMEDOUT: 110,
} as const;

/** errno value → name, derived from {@link ERRNO}. */
export const ERRNO_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(ERRNO).map(([name, value]) => [value, name]),
);

/** "ENOMEM" for 12; "errno 1234" for a value ipre does not name. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}
