//! ipre for static Linux programs in Rust: the same calls as guests/linux/ipre_linux.h.
//! Include it with `#[path = "ipre.rs"] mod ipre;` (no crate needed).
//!
//! - `wait_for_requests()`: the program is initialised; the host calls its functions from here on.
//! - `remote(name)`: the entry address of a connected remote's allowed function, or None.
//! - a remote marks the functions callers may enter with
//!   `#[no_mangle] #[link_section = ".ipre_export"] pub extern "C" fn …`.
#![allow(dead_code)]

use core::arch::asm;

pub const SYS_WAIT_FOR_REQUESTS: i64 = 0x6970_0000;
pub const SYS_REMOTE: i64 = 0x6970_0001;

#[inline(always)]
unsafe fn syscall1(nr: i64, a0: i64) -> i64 {
    let r: i64;
    asm!("syscall", inlateout("rax") nr => r, in("rdi") a0, lateout("rcx") _, lateout("r11") _, options(nostack));
    r
}

/// Stop after initialisation; the host calls the program's exported functions from here on.
pub fn wait_for_requests() -> ! {
    loop {
        unsafe { syscall1(SYS_WAIT_FOR_REQUESTS, 0) };
    }
}

/// The entry address of a connected remote's allowed function `name` (NUL-terminated inside).
pub fn remote(name: &str) -> Option<usize> {
    let mut buf = Vec::with_capacity(name.len() + 1);
    buf.extend_from_slice(name.as_bytes());
    buf.push(0);
    let r = unsafe { syscall1(SYS_REMOTE, buf.as_ptr() as i64) };
    if r == 0 { None } else { Some(r as usize) }
}
