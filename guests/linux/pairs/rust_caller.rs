//! rust_caller.rs: a Rust caller (rustc, static, window 0) of rust_remote.rs (window 1).
//!
//! Finds the remote's functions with `ipre::remote`, calls them through `extern "C" fn` pointers
//! with slices, a `&str`, a `&Vec<String>` and a `#[repr(C)]` struct returned by value, and
//! checks the answers. With argv[1] == "panic" it last calls `rs_panic`, which aborts the remote
//! (the host reports a RemoteFault with the panic message).
//!
//! Prints deterministic lines on stdout; exits 0 only when every check passed, else 1 (a remote
//! function not found: 2).
#[path = "../ipre.rs"]
mod ipre;

use std::process::ExitCode;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub count: u64,
    pub sum: u64,
    pub min: u64,
    pub max: u64,
}

type SumFn = unsafe extern "C" fn(*const u64, usize) -> u64;
type StatsFn = unsafe extern "C" fn(*const u64, usize) -> Stats;
type GreetFn = unsafe extern "C" fn(*const u8, usize, *mut u8, usize) -> usize;
#[allow(improper_ctypes_definitions)]
type IndexFn = extern "C" fn(&Vec<String>) -> usize;
type CountFn = unsafe extern "C" fn(*const u8, usize) -> u64;
type PanicFn = extern "C" fn(u64) -> u64;

/// The remote function `name` as a function pointer of type F, or None (and a message).
fn find<F: Copy>(name: &str) -> Option<F> {
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<usize>());
    match ipre::remote(name) {
        Some(addr) => Some(unsafe { std::mem::transmute_copy::<usize, F>(&addr) }),
        None => {
            eprintln!("rust_caller: remote function {name} not found (is rust_remote connected?)");
            None
        }
    }
}

struct Checks(u32);

impl Checks {
    fn expect(&mut self, ok: bool, what: &str) {
        if !ok {
            eprintln!("rust_caller: FAILED: {what}");
            self.0 += 1;
        }
    }
}

fn run() -> Option<ExitCode> {
    let sum: SumFn = find("rs_sum")?;
    let stats: StatsFn = find("rs_stats")?;
    let greet: GreetFn = find("rs_greet")?;
    let index: IndexFn = find("rs_index")?;
    let count: CountFn = find("rs_count")?;
    let panic: PanicFn = find("rs_panic")?;
    let mut checks = Checks(0);

    let values: Vec<u64> = (1..=1000).map(|i| i * i).collect();
    let total = unsafe { sum(values.as_ptr(), values.len()) };
    println!("rs_sum(1^2..1000^2) = {total}");
    checks.expect(total == 333_833_500, "rs_sum");
    let s = unsafe { stats(values[10..20].as_ptr(), 10) };
    println!("rs_stats(11^2..20^2) = {s:?}");
    checks.expect(s == Stats { count: 10, sum: 2485, min: 121, max: 400 }, "rs_stats");
    let empty = unsafe { stats(std::ptr::null(), 0) };
    checks.expect(empty == Stats::default(), "rs_stats of an empty slice");

    let words: Vec<String> = "the quick brown fox jumps over the lazy dog and the remote counts every word it is given"
        .split(' ')
        .map(String::from)
        .chain(std::iter::once("a word longer than any small buffer, on the heap".repeat(2)))
        .collect();
    let distinct = index(&words);
    println!("rs_index({} words) = {distinct} distinct", words.len());
    checks.expect(distinct == 17, "rs_index: 16 distinct words (\"remote\" was there) and the long one");
    let long = words.last().unwrap().clone();
    drop(words);
    for w in ["the", "fox", "remote", "absent", long.as_str()] {
        let n = unsafe { count(w.as_ptr(), w.len()) };
        println!("rs_count({}) = {n}", if w.len() > 20 { "<the long word>" } else { w });
        let want = match w {
            "the" => 3,
            "remote" => 2,
            "absent" => 0,
            _ => 1,
        };
        checks.expect(n == want, w);
    }

    let name = "ipre → Rust";
    let mut buf = [0u8; 128];
    let n = unsafe { greet(name.as_ptr(), name.len(), buf.as_mut_ptr(), buf.len()) };
    let greeting = std::str::from_utf8(&buf[..n.min(buf.len())]).unwrap_or("<not UTF-8>");
    println!("rs_greet = {greeting}");
    checks.expect(greeting == "hello, ipre → Rust! (11 chars, 17 words known)", "rs_greet");
    checks.expect(panic(0) == 0, "rs_panic(0) returns");

    if std::env::args().nth(1).as_deref() == Some("panic") {
        println!("rs_panic(7) ...");
        let r = panic(7);
        eprintln!("rust_caller: rs_panic(7) returned {r}");
        return Some(ExitCode::from(1));
    }
    if checks.0 == 0 {
        println!("rust_caller: all checks passed");
        Some(ExitCode::SUCCESS)
    } else {
        println!("rust_caller: {} check(s) failed", checks.0);
        Some(ExitCode::from(1))
    }
}

fn main() -> ExitCode {
    run().unwrap_or(ExitCode::from(2))
}
