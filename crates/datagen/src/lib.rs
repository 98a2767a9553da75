//! Deterministic generators for the inputs of chorus's examples, tests and benchmarks.
//!
//! [`write_purchases`] writes the "purchases" table of the seed tutorials: the same
//! columns and distributions as `shared/peers/gen_purchases.py` (not byte-identical: this
//! generator has its own random stream). Rows are produced in blocks of
//! [`BLOCK_ROWS`], block `k` seeded from `(seed, k)`, so the output is identical for a
//! given `(rows, seed)` and a smaller file is a prefix of a larger one.

#![warn(missing_docs)]

#[cfg(feature = "tpch")]
pub mod tpch;

use std::io::{self, Write};
use std::path::Path;

/// Rows per independently seeded block.
pub const BLOCK_ROWS: u64 = 100_000;

/// The header line of the purchases table.
pub const PURCHASES_HEADER: &str = "Name,Age,Purchase_Date,Purchase_Amount,Product,Product_Review";

const FIRST: &[&str] = &[
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth", "William",
    "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen", "Daniel", "Nancy",
    "Matthew", "Lisa", "Anthony", "Betty", "Mark", "Sandra", "Donald", "Ashley", "Steven", "Emily", "Paul", "Donna",
    "Andrew", "Michelle", "Joshua", "Carol", "Kenneth", "Amanda",
];
const LAST: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee",
    "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young",
    "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
];
/// Product categories and their weights (per mille).
pub const PRODUCTS: &[(&str, u32)] = &[
    ("Health", 80),
    ("Electronics", 160),
    ("Toys", 90),
    ("Food", 140),
    ("Music", 60),
    ("Computers", 110),
    ("Sporting-Goods", 80),
    ("Books", 100),
    ("Clothing", 120),
    ("Garden", 60),
];
const REVIEWS: &[&str] = &[
    "Good : works as described",
    "Good : arrived quickly, well packed",
    "Excellent : would buy again",
    "Excellent : exceeded my expectations, five stars",
    "Average : does the job",
    "Average : quality could be better, but ok",
    "Bad : broke after a week",
    "Bad : not as advertised, returned it",
    "Good : easy to set up",
    "Average : smaller than expected",
];

/// SplitMix64: tiny, fast, and good enough for test data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, block: u64) -> Rng {
        let mut r = Rng(seed ^ block.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (1.0 - self.unit(), self.unit());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Civil date from days since 1970-01-01 (proleptic Gregorian).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Writes one row of block `block` (row `i` of it) to `out`.
fn write_row(rng: &mut Rng, out: &mut Vec<u8>) {
    const START: i64 = 1_577_836_800; // 2020-01-01 00:00:00 UTC
    const SPAN: u64 = 1_735_689_600 - 1_577_836_800; // to 2025-01-01
    let first = FIRST[rng.below(FIRST.len() as u64) as usize];
    let last = LAST[rng.below(LAST.len() as u64) as usize];
    let age = 18 + rng.below(63);
    let age_missing = rng.unit() < 0.05;
    let t = START + rng.below(SPAN) as i64;
    let (y, mo, d) = civil(t.div_euclid(86_400));
    let secs = t.rem_euclid(86_400);
    let amount = (3.5 + rng.normal()).exp().clamp(1.0, 5000.0);
    let cents = (amount * 100.0).round() as u64;
    let mut pick = rng.below(1000) as u32;
    let product = PRODUCTS
        .iter()
        .find(|(_, w)| {
            if pick < *w {
                true
            } else {
                pick -= w;
                false
            }
        })
        .map_or("Garden", |(p, _)| p);
    let review = REVIEWS[rng.below(REVIEWS.len() as u64) as usize];
    let review_missing = rng.unit() < 0.10;
    let _ = write!(out, "{first} {last},");
    if !age_missing {
        let _ = write!(out, "{age}");
    }
    let _ = write!(
        out,
        ",{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02},{}.{:02},{product},",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        cents / 100,
        cents % 100
    );
    if !review_missing {
        if review.contains(',') {
            let _ = write!(out, "\"{review}\"");
        } else {
            out.extend_from_slice(review.as_bytes());
        }
    }
    out.push(b'\n');
}

/// Writes `rows` purchases (plus the header) to `out`.
pub fn write_purchases_to(mut out: impl Write, rows: u64, seed: u64) -> io::Result<()> {
    writeln!(out, "{PURCHASES_HEADER}")?;
    let mut buf = Vec::with_capacity(8 << 20);
    let mut block = 0;
    let mut done = 0;
    while done < rows {
        let n = BLOCK_ROWS.min(rows - done);
        let mut rng = Rng::new(seed, block);
        for _ in 0..n {
            write_row(&mut rng, &mut buf);
        }
        out.write_all(&buf)?;
        buf.clear();
        done += n;
        block += 1;
    }
    out.flush()
}

/// Writes `rows` purchases to the file at `path` (atomically: through a temporary file).
pub fn write_purchases(path: &Path, rows: u64, seed: u64) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    write_purchases_to(io::BufWriter::new(std::fs::File::create(&tmp)?), rows, seed)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaller_file_is_a_prefix_of_a_larger_one() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_purchases_to(&mut a, 1_000, 7).unwrap();
        write_purchases_to(&mut b, 250_000, 7).unwrap();
        assert!(b.starts_with(&a));
        let text = String::from_utf8(a).unwrap();
        assert_eq!(text.lines().count(), 1_001);
        assert!(text.contains('"'), "some reviews are quoted");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(18_262), (2020, 1, 1));
        assert_eq!(civil(19_782), (2024, 2, 29));
    }
}
