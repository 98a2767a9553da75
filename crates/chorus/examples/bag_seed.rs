//! The seed's dask.bag example on a local cluster of two workers:
//!
//! ```python
//! nums = np.random.randint(low=0, high=100, size=(5_000_000))
//! bag = db.from_sequence(nums).map(weird_function)   # weird_function = chr
//! result = bag.compute()
//! ```
//!
//!     cargo run --release --features bag --example bag_seed
//!
//! `from_sequence` cuts the integers into 100 partitions (as Dask does) and scatters
//! them; `map` runs one task per partition on the workers; `compute` brings the
//! characters back in order.

use std::time::Instant;

use chorus::bag as db;
use chorus::{func, LocalCluster};

#[chorus::main]
fn main() -> anyhow::Result<()> {
    let cluster = LocalCluster::builder().workers(2).start()?;
    let client = cluster.client();

    // The seed's random integers below 100 (xorshift, so that every run is the same).
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let nums: Vec<u32> = (0..5_000_000)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 100) as u32
        })
        .collect();
    println!("nums = [{}, …] ({} integers)", nums[..8].iter().map(u32::to_string).collect::<Vec<_>>().join(", "), nums.len());

    let t = Instant::now();
    let bag = db::from_sequence(&client, nums, 100)?.map(func!(|n: u32| char::from_u32(n).unwrap_or('?')));
    println!("{bag:?}");
    let result = bag.compute()?;
    println!("result = {:?}… ({} characters in {:.2?})", &result[..8], result.len(), t.elapsed());

    // The same bag goes on: the characters that are letters, counted by letter.
    let letters = bag.filter(func!(|c: &char| c.is_ascii_alphabetic())).frequencies()?;
    let top = letters.topk(3, func!(|lc: &(char, u64)| lc.1)).compute()?;
    println!("the three most frequent letters: {top:?}");
    Ok(())
}
