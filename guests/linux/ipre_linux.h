/*
 * ipre for ordinary static Linux programs (glibc, musl, libstdc++; Rust has the same calls in
 * guests/linux/ipre.rs). Include it in a program that runs as a machine's program
 * (Machine.create({ program }), docs/ARCHITECTURE.md §4, "Lifecycle of a Linux program"):
 *
 *  - ipre_wait_for_requests(): the program is initialised; stop here. Machine.create() returns
 *    and the host calls the program's functions (m.call("fn", ...)) with the whole libc
 *    available, on a stack below this call's frame. It never returns.
 *  - ipre_remote("name"): the address of function `name` of a remote connected to this machine
 *    (connect(caller, remote)) that the remote allows this caller to enter, or NULL. Call it
 *    through a function pointer of the right type: the call is an IPRE remote call.
 *  - IPRE_EXPORT marks the functions of a remote that callers may enter (the default allow-list).
 *
 * Both calls are `syscall`s with numbers outside Linux's range, served by the host's syscall
 * layer (src/linux/syscalls.ts).
 */
#ifndef IPRE_LINUX_H
#define IPRE_LINUX_H

#define IPRE_SYS_WAIT_FOR_REQUESTS 0x69700000L
#define IPRE_SYS_REMOTE 0x69700001L

/* A function callers may enter; in C++ declare it extern "C" to find it by its plain name. */
#define IPRE_EXPORT __attribute__((section(".ipre_export"), used, noinline))

static inline long ipre__syscall1(long nr, long a0) {
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "a"(nr), "D"(a0) : "rcx", "r11", "memory");
  return r;
}

/* Stop after initialisation; the host calls the program's functions from here on. */
static inline __attribute__((noreturn)) void ipre_wait_for_requests(void) {
  for (;;) ipre__syscall1(IPRE_SYS_WAIT_FOR_REQUESTS, 0);
}

/* The entry address of a connected remote's allowed function `name`, or NULL. */
static inline void *ipre_remote(const char *name) {
  return (void *)ipre__syscall1(IPRE_SYS_REMOTE, (long)name);
}

#endif
