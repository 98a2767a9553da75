//! The seed's first SPMD program: the mean purchase amount over a CSV file, with every
//! rank reading only its own byte range of the file.
//!
//!     cargo run --release --example purchases_mean                 # one rank per core
//!     chorus run -n 4 target/release/examples/purchases_mean
//!     purchases_mean [--path FILE] [--rows N] [--seed S]
//!
//! The file (by default `data/purchases_1m.csv`, 1 million rows) is generated on first use.
//! The byte range `[len·r/p, len·(r+1)/p)` of rank `r` is widened to whole lines: a line
//! belongs to the rank whose range holds its first byte, so no line is read twice or
//! skipped. Amounts are summed as integer cents, so the mean is exactly the same for any
//! number of ranks.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

const BLOCK: usize = 4 << 20;

struct Args {
    path: PathBuf,
    rows: u64,
    seed: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args { path: "data/purchases_1m.csv".into(), rows: 1_000_000, seed: 42 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--path" => a.path = value()?.into(),
            "--rows" => a.rows = value()?.parse().context("--rows takes a whole number")?,
            "--seed" => a.seed = value()?.parse().context("--seed takes a whole number")?,
            other => bail!("unknown argument {other:?}; usage: purchases_mean [--path FILE] [--rows N] [--seed S]"),
        }
    }
    Ok(a)
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let world = chorus::WorldBuilder::new().procs_per_core().init()?;
    if world.rank() == 0 && !args.path.exists() {
        eprintln!("generating {} rows into {}", args.rows, args.path.display());
        chorus_datagen::write_purchases(&args.path, args.rows, args.seed)
            .with_context(|| format!("writing {}", args.path.display()))?;
    }
    world.barrier()?;

    let partial = partial_sum(&args.path, world.rank(), world.size())?;
    if let Some(parts) = world.gatherv(0, &partial)? {
        let (cents, rows) = parts.iter().fold((0i128, 0u64), |(c, n), p| (c + p.0, n + p.1));
        if rows == 0 {
            bail!("{} has no rows", args.path.display());
        }
        let mean = cents as f64 / rows as f64 / 100.0;
        println!("mean Purchase_Amount = {mean:.6} over {rows} rows ({} ranks)", world.size());
    }
    Ok(())
}

/// Sum (in cents) and count of Purchase_Amount over the lines that start in this rank's
/// byte range.
fn partial_sum(path: &Path, rank: usize, size: usize) -> anyhow::Result<(i128, u64)> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata()?.len();
    let header = read_line_at(&file, 0)?;
    let column = header
        .split(|&b| b == b',')
        .position(|f| f == b"Purchase_Amount")
        .with_context(|| format!("{}: the header has no Purchase_Amount column", path.display()))?;
    let body = header.len() as u64 + 1;
    let share = |r: u64| body + (len - body.min(len)) * r / size as u64;
    let (mut start, end) = (share(rank as u64), share(rank as u64 + 1));
    if rank > 0 {
        // Skip the line that began in the previous rank's range.
        start = start - 1 + read_line_at(&file, start - 1)?.len() as u64 + 1;
    }
    let (mut cents, mut rows) = (0i128, 0u64);
    let mut buf = vec![0u8; BLOCK];
    let mut carry: Vec<u8> = Vec::new();
    let (mut pos, mut next_read) = (start, start); // file offsets of carry[0] and of the next read
    loop {
        let mut consumed = 0;
        while let Some(nl) = memchr::memchr(b'\n', &carry[consumed..]) {
            if pos >= end {
                return Ok((cents, rows));
            }
            add_line(&carry[consumed..consumed + nl], column, &mut cents, &mut rows).with_context(|| where_(path, &file, pos))?;
            pos += nl as u64 + 1;
            consumed += nl + 1;
        }
        carry.drain(..consumed);
        if pos >= end {
            return Ok((cents, rows));
        }
        let n = file.read_at(&mut buf, next_read)?;
        if n == 0 {
            // The file's last line may lack its newline.
            add_line(&carry, column, &mut cents, &mut rows).with_context(|| where_(path, &file, pos))?;
            return Ok((cents, rows));
        }
        carry.extend_from_slice(&buf[..n]);
        next_read += n as u64;
    }
}

fn add_line(line: &[u8], column: usize, cents: &mut i128, rows: &mut u64) -> anyhow::Result<()> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Ok(());
    }
    let field = nth_field(line, column).context("the row has too few fields")?;
    *cents += parse_cents(field)?;
    *rows += 1;
    Ok(())
}

/// The `n`th comma-separated field, honouring double quotes.
fn nth_field(line: &[u8], n: usize) -> Option<&[u8]> {
    let (mut field, mut start, mut quoted) = (0, 0, false);
    for (i, &b) in line.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                if field == n {
                    return Some(&line[start..i]);
                }
                field += 1;
                start = i + 1;
            }
            _ => {}
        }
    }
    (field == n).then(|| &line[start..])
}

/// Parses a decimal amount with at most two decimals into cents.
fn parse_cents(field: &[u8]) -> anyhow::Result<i128> {
    let text = std::str::from_utf8(field).unwrap_or("?");
    let bad = || anyhow::anyhow!("Purchase_Amount {text:?} is not an amount with at most two decimals");
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || frac.len() > 2 || !whole.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mut cents: i128 = whole.parse::<i128>().map_err(|_| bad())? * 100;
    if !frac.is_empty() {
        cents += frac.parse::<i128>().map_err(|_| bad())? * if frac.len() == 1 { 10 } else { 1 };
    }
    Ok(if neg { -cents } else { cents })
}

/// "file:line" for a byte offset (counting lines only when an error needs it).
fn where_(path: &Path, file: &File, offset: u64) -> String {
    let mut line = 1u64;
    let mut buf = vec![0u8; BLOCK];
    let mut at = 0u64;
    while at < offset {
        let want = BLOCK.min((offset - at) as usize);
        match file.read_at(&mut buf[..want], at) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                line += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
                at += n as u64;
            }
        }
    }
    format!("{}:{line}", path.display())
}

fn read_line_at(file: &File, offset: u64) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut at = offset;
    loop {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            return Ok(out);
        }
        if let Some(nl) = memchr::memchr(b'\n', &buf[..n]) {
            out.extend_from_slice(&buf[..nl]);
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
        at += n as u64;
    }
}
