//! rust_remote.rs: a Rust remote (rustc, static, window 1, linked at 0x40400000) for
//! rust_caller.rs. Exports are `#[no_mangle] #[link_section = ".ipre_export"] pub extern "C"`.
//!
//! Both sides are built by the same rustc, so besides C-shaped arguments (a `u64` slice and a
//! `&str` as pointer + length, a `#[repr(C)]` struct returned by value) a caller may pass Rust
//! types by reference (`&Vec<String>`): the layout is the same on both sides (§V.G). The remote
//! copies what it keeps into its own heap (§V.H): `rs_index` counts the caller's words into a
//! map that later calls read. `rs_panic` panics: built with `-C panic=abort`, the panic hook
//! prints the message on stderr and the remote aborts (a panic must not unwind into the caller).
#[path = "../ipre.rs"]
mod ipre;

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Word -> how often it was indexed; lives in the remote's heap between calls.
static WORDS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub count: u64,
    pub sum: u64,
    pub min: u64,
    pub max: u64,
}

unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if len == 0 { &[] } else { std::slice::from_raw_parts(ptr, len) }
}

unsafe fn text<'a>(ptr: *const u8, len: usize) -> &'a str {
    std::str::from_utf8(slice(ptr, len)).expect("rust_remote: text is not UTF-8")
}

/// The sum of a caller slice, read in place.
#[no_mangle]
#[link_section = ".ipre_export"]
pub unsafe extern "C" fn rs_sum(ptr: *const u64, len: usize) -> u64 {
    slice(ptr, len).iter().fold(0u64, |a, &x| a.wrapping_add(x))
}

/// Count, sum, min and max of a caller slice, returned by value.
#[no_mangle]
#[link_section = ".ipre_export"]
pub unsafe extern "C" fn rs_stats(ptr: *const u64, len: usize) -> Stats {
    let s = slice(ptr, len);
    Stats {
        count: s.len() as u64,
        sum: s.iter().fold(0u64, |a, &x| a.wrapping_add(x)),
        min: s.iter().copied().min().unwrap_or(0),
        max: s.iter().copied().max().unwrap_or(0),
    }
}

/// Writes a greeting for `name` (a `&str`) into the caller's buffer; returns its length, or
/// the length it needs when `cap` is too small. The String is built in the remote's heap.
#[no_mangle]
#[link_section = ".ipre_export"]
pub unsafe extern "C" fn rs_greet(name: *const u8, len: usize, out: *mut u8, cap: usize) -> usize {
    let name = text(name, len);
    let greeting = format!("hello, {}! ({} chars, {} words known)", name, name.chars().count(), WORDS.lock().unwrap().len());
    if greeting.len() <= cap {
        std::ptr::copy_nonoverlapping(greeting.as_ptr(), out, greeting.len());
    }
    greeting.len()
}

/// Counts the caller's words (a `&Vec<String>` in caller memory) into the remote's map;
/// returns how many distinct words it holds.
#[no_mangle]
#[link_section = ".ipre_export"]
#[allow(improper_ctypes_definitions)]
pub extern "C" fn rs_index(words: &Vec<String>) -> usize {
    let mut map = WORDS.lock().unwrap();
    for w in words {
        *map.entry(w.clone()).or_insert(0) += 1;
    }
    map.len()
}

/// How often `word` was indexed (0 if never).
#[no_mangle]
#[link_section = ".ipre_export"]
pub unsafe extern "C" fn rs_count(word: *const u8, len: usize) -> u64 {
    WORDS.lock().unwrap().get(text(word, len)).copied().unwrap_or(0)
}

/// Panics: with panic=abort the message goes to stderr and the remote aborts.
#[no_mangle]
#[link_section = ".ipre_export"]
pub extern "C" fn rs_panic(code: u64) -> u64 {
    if code != 0 {
        panic!("remote panicked on purpose (code {code})");
    }
    code
}

fn main() {
    WORDS.lock().unwrap().insert(String::from("remote"), 1);
    ipre::wait_for_requests();
}
