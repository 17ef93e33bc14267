//! A static Linux Rust program (rustc, +crt-static: a static-PIE with glibc linked in), run by
//! Machine.exec and `ipre exec` (test/linux-langs.test.ts, test/cli.test.ts): Vec, String,
//! HashMap, println!, eprintln!, std::env::args. Exit code: 30 + the number of arguments.
use std::collections::HashMap;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    println!("hello from Rust: argc={}", args.len());
    for (i, a) in args.iter().enumerate() {
        println!("argv[{}]={}", i, a);
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for w in "b a c a b a".split(' ') {
        *counts.entry(w.to_string()).or_insert(0) += 1;
    }
    let mut pairs: Vec<(String, usize)> = counts.into_iter().collect();
    pairs.sort();
    let line: Vec<String> = pairs.iter().map(|(w, n)| format!("{}={}", w, n)).collect();
    println!("{}", line.join(" "));
    let big: Vec<u64> = (0..100_000).collect();
    println!("sum {}", big.iter().sum::<u64>());
    eprintln!("Rust stderr");
    std::process::exit(30 + args.len() as i32);
}
