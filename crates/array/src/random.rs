//! Random numbers per block: block `b` of an array made with seed `s` draws from its own
//! stream, keyed by `(s, b)`, so the values do not depend on which worker makes the
//! block, on how many workers there are, or on the order blocks are made in.
//!
//! The generator is xoshiro256++ seeded through SplitMix64; normal values come from the
//! Box–Muller transform.

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

/// The stream of one block.
pub(crate) struct BlockRng {
    s: [u64; 4],
    spare: Option<f64>,
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl BlockRng {
    /// The stream of block number `block` (row-major) of an array seeded with `seed`.
    pub(crate) fn new(seed: u64, block: u64) -> BlockRng {
        let mut x = seed ^ block.wrapping_mul(0xD1B5_4A32_D192_ED03).rotate_left(17);
        BlockRng { s: [splitmix(&mut x), splitmix(&mut x), splitmix(&mut x), splitmix(&mut x)], spare: None }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`, with 53 random bits.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal.
    pub(crate) fn next_normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        // 1 - u is in (0, 1], so its logarithm is finite.
        let (u, v) = (1.0 - self.next_f64(), self.next_f64());
        let r = (-2.0 * u.ln()).sqrt();
        let (sin, cos) = (std::f64::consts::TAU * v).sin_cos();
        self.spare = Some(r * sin);
        r * cos
    }
}

#[cfg(test)]
mod tests {
    use super::BlockRng;

    #[test]
    fn streams_are_reproducible_and_differ_between_blocks() {
        let draw = |seed, block| {
            let mut r = BlockRng::new(seed, block);
            (0..4).map(|_| r.next_f64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(1, 0), draw(1, 0));
        assert_ne!(draw(1, 0), draw(1, 1));
        assert_ne!(draw(1, 0), draw(2, 0));
        let mut r = BlockRng::new(7, 3);
        let n = 200_000;
        let (mut sum, mut sq) = (0.0, 0.0);
        for _ in 0..n {
            let z = r.next_normal();
            sum += z;
            sq += z * z;
        }
        let mean = sum / n as f64;
        assert!(mean.abs() < 0.01 && (sq / n as f64 - mean * mean - 1.0).abs() < 0.02);
    }
}
