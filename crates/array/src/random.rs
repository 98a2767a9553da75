//! Random numbers per block: block `b` of an array made with seed `s` draws from its own
//! stream, keyed by `(s, b)`, so the values do not depend on which worker makes the
//! block, on how many workers there are, or on the order blocks are made in.
//!
//! The generator is SplitMix64 used as a counter-based generator (element `i` of a block
//! is a hash of the block's key and `i`), so a task makes exactly the elements it needs;
//! normal values come from the Box–Muller transform.

use chorus_tasks::Client;

use crate::chunks::Chunks;
use crate::dtype::DType;
use crate::kernel::Generator;
use crate::{Array, Result};

/// Uniform random numbers in `[0, 1)`, in blocks of `chunks`, made on the workers.
pub fn uniform(client: &Client, shape: &[usize], chunks: &[usize], seed: u64) -> Result<Array<f64>> {
    uniform_in(client, shape, chunks, seed, 0.0, 1.0)
}

/// Uniform random numbers in `[low, high)`.
pub fn uniform_in(client: &Client, shape: &[usize], chunks: &[usize], seed: u64, low: f64, high: f64) -> Result<Array<f64>> {
    let chunks = Chunks::regular(shape, chunks)?;
    Ok(Array::generated(client, shape, chunks, Generator::Uniform { seed, low, high }, DType::F64))
}

/// Normal random numbers with `mean` and standard deviation `std`.
pub fn normal(client: &Client, shape: &[usize], chunks: &[usize], seed: u64, mean: f64, std: f64) -> Result<Array<f64>> {
    let chunks = Chunks::regular(shape, chunks)?;
    Ok(Array::generated(client, shape, chunks, Generator::Normal { seed, mean, std }, DType::F64))
}

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The key of block number `block` (row-major) of an array seeded with `seed`.
pub(crate) fn block_key(seed: u64, block: u64) -> u64 {
    mix(seed ^ mix(block.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// Element `i` (row-major in its block) of the uniform stream `key`, in `[0, 1)` with 53
/// random bits: SplitMix64 used as a counter-based generator, so any element can be made
/// without the ones before it, and a tile of a transposed or sliced block is made
/// directly.
pub(crate) fn uniform_at(key: u64, i: u64) -> f64 {
    (mix(key.wrapping_add(i.wrapping_add(1).wrapping_mul(GAMMA))) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Element `i` of the standard normal stream `key` (Box–Muller over pairs of uniforms).
pub(crate) fn normal_at(key: u64, i: u64) -> f64 {
    let pair = i & !1;
    // 1 - u is in (0, 1], so its logarithm is finite.
    let (u, v) = (1.0 - uniform_at(key, pair), uniform_at(key, pair + 1));
    let r = (-2.0 * u.ln()).sqrt();
    let angle = std::f64::consts::TAU * v;
    if i & 1 == 0 {
        r * angle.cos()
    } else {
        r * angle.sin()
    }
}

#[cfg(test)]
mod tests {
    use super::{block_key, normal_at, uniform_at};

    #[test]
    fn streams_are_reproducible_and_differ_between_blocks_and_seeds() {
        let draw = |seed, block| (0..4).map(|i| uniform_at(block_key(seed, block), i)).collect::<Vec<_>>();
        assert_eq!(draw(1, 0), draw(1, 0));
        assert_ne!(draw(1, 0), draw(1, 1));
        assert_ne!(draw(1, 0), draw(2, 0));
        let key = block_key(7, 3);
        let n = 200_000u64;
        let (mut sum, mut sq, mut u_sum) = (0.0, 0.0, 0.0);
        for i in 0..n {
            let z = normal_at(key, i);
            sum += z;
            sq += z * z;
            u_sum += uniform_at(key, i);
        }
        let mean = sum / n as f64;
        assert!(mean.abs() < 0.01 && (sq / n as f64 - mean * mean - 1.0).abs() < 0.02);
        assert!((u_sum / n as f64 - 0.5).abs() < 0.005);
    }
}
