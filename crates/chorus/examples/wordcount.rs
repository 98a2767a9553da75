//! A word count, the MapReduce every course starts with, on a local cluster of two
//! workers:
//!
//!     cargo run --release --features bag --example wordcount [-- FILE-OR-GLOB]
//!
//! Without an argument it writes `data/words_60mb.txt` first (60 MB of words drawn from
//! a 20,000-word vocabulary, the most frequent words shortest). It counts the words
//! twice:
//!
//! 1. `read_text → split_whitespace → frequencies`: each worker reads its own 16 MB
//!    ranges of the file and counts their words where they lie, then a tree of tasks
//!    merges the counts;
//! 2. MapReduce in its three steps: map each line to `(word, 1)` pairs, shuffle them by
//!    word (`group_by`, worker to worker), reduce each word's ones — slower, because
//!    every pair moves, which is why `fold_by` and `frequencies` combine first.

use std::io::Write;
use std::time::Instant;

use chorus::bag::ReadText;
use chorus::{func, LocalCluster};

fn make_text(path: &str, bytes: usize) -> std::io::Result<()> {
    let letters = b"etaoinshrdlcumwfgypbvkjxqz";
    let mut s = 7u64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let vocabulary: Vec<String> = (0..20_000)
        .map(|i: usize| {
            let len = 2 + (i as f64).log2().max(0.0) as usize / 2 + (next() % 3) as usize;
            (0..len).map(|_| letters[(next() % 26) as usize] as char).collect()
        })
        .collect();
    std::fs::create_dir_all("data")?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut written = 0;
    while written < bytes {
        let mut line = String::new();
        for w in 0..12 {
            // Rank r with probability about 1/r (Zipf): the inverse of a uniform draw.
            let u = (next() % 1_000_000) as f64 / 1e6;
            let rank = ((20_000f64).powf(u) as usize).min(19_999);
            if w > 0 {
                line.push(' ');
            }
            line.push_str(&vocabulary[rank]);
        }
        line.push('\n');
        written += line.len();
        out.write_all(line.as_bytes())?;
    }
    out.flush()
}

#[chorus::main]
fn main() -> anyhow::Result<()> {
    let path = match std::env::args().nth(1) {
        Some(p) => p,
        None => {
            let p = "data/words_60mb.txt".to_string();
            if !std::path::Path::new(&p).exists() {
                println!("writing {p}");
                make_text(&p, 60_000_000)?;
            }
            p
        }
    };
    let cluster = LocalCluster::builder().workers(2).start()?;
    let client = cluster.client();
    let lines = ReadText::new(&path).blocksize(16 << 20).open(&client)?;
    println!("{lines:?} from {path}");

    let t = Instant::now();
    let counts = lines.split_whitespace().frequencies()?;
    let top = counts.topk(10, func!(|wc: &(String, u64)| wc.1)).compute()?;
    println!("\nread_text → split_whitespace → frequencies: {:.2?}", t.elapsed());
    for (word, n) in &top {
        println!("  {word:>12} {n}");
    }

    let t = Instant::now();
    let pairs = lines.flat_map(func!(|line: String| line.split_whitespace().map(|w| (w.to_string(), 1u64)).collect::<Vec<_>>()));
    let shuffled = pairs.group_by(func!(|p: &(String, u64)| p.0.clone()));
    let reduced = shuffled.map(func!(|(word, ones): (String, Vec<(String, u64)>)| (word, ones.iter().map(|p| p.1).sum::<u64>())));
    let top2 = reduced.topk(10, func!(|wc: &(String, u64)| wc.1)).compute()?;
    println!("\nmap → shuffle (group_by) → reduce: {:.2?}", t.elapsed());
    assert_eq!(top, top2, "both ways give the same counts");
    println!("  the same ten words and counts");
    Ok(())
}
