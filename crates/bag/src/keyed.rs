//! Keys and records as bytes: what grouping, counting, distinct and the shuffle work on.
//!
//! Keys are compared by their postcard encoding, so that the code that groups, counts
//! and moves records between workers is the same for every key type and needs none of
//! it monomorphised. For the types `Hash + Eq` is derived on (integers, strings, tuples,
//! enums and structs of them) two keys are equal exactly when their encodings are.
//!
//! Records travel framed: each one a varint length and its bytes. The postcard form of a
//! `Vec<(K, V)>` is also built from encoded pieces here (a varint count, then each
//! element's fields one after the other), which is how `group_by`, `frequencies`,
//! `fold_by`, `zip` and `join` make their partitions without knowing `K` or `V`.

use rustc_hash::FxHashMap;

/// Byte strings one after the other, with where each ends.
#[derive(Debug, Default, Clone)]
pub struct Records {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Records {
    /// No records.
    pub fn new() -> Records {
        Records::default()
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Record `i`.
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// Appends the record that `write` appends to the buffer.
    pub fn push_with<E>(&mut self, write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<(), E> {
        let start = self.bytes.len();
        match write(&mut self.bytes) {
            Ok(()) => {
                self.ends.push(self.bytes.len());
                Ok(())
            }
            Err(e) => {
                self.bytes.truncate(start);
                Err(e)
            }
        }
    }

    /// The records, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }
}

/// Appends `n` as a postcard varint.
pub fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a varint at the front of `bytes`, giving it and the rest.
pub fn get_varint(bytes: &[u8]) -> Result<(u64, &[u8]), String> {
    let mut n = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((n, &bytes[i + 1..]));
        }
    }
    Err("a length that is cut off or too long".into())
}

/// Appends one framed record.
pub fn put_frame(out: &mut Vec<u8>, record: &[u8]) {
    put_varint(out, record.len() as u64);
    out.extend_from_slice(record);
}

/// Reads one framed record at the front of `bytes`.
pub fn get_frame(bytes: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let (n, rest) = get_varint(bytes)?;
    let n = usize::try_from(n).map_err(|_| "a record longer than memory".to_string())?;
    if n > rest.len() {
        return Err(format!("a record of {n} bytes with {} left", rest.len()));
    }
    Ok(rest.split_at(n))
}

/// Reads framed records until `bytes` ends.
pub fn frames(mut bytes: &[u8]) -> impl Iterator<Item = Result<&[u8], String>> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        match get_frame(bytes) {
            Ok((r, rest)) => {
                bytes = rest;
                Some(Ok(r))
            }
            Err(e) => {
                bytes = &[];
                Some(Err(e))
            }
        }
    })
}

/// Framed `(key, value)` records, one frame each, until `bytes` ends.
pub fn pairs(bytes: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), String>> {
    let mut it = frames(bytes);
    std::iter::from_fn(move || {
        let k = it.next()?;
        Some(k.and_then(|k| Ok((k, it.next().ok_or_else(|| "a key without its value".to_string())??))))
    })
}

/// Values by key bytes, in order of each key's first appearance.
pub struct Ordered<'a, V> {
    index: FxHashMap<&'a [u8], usize>,
    /// Each key and its value, in order of first appearance.
    pub entries: Vec<(&'a [u8], V)>,
}

impl<'a, V> Ordered<'a, V> {
    /// No keys.
    pub fn new() -> Ordered<'a, V> {
        Ordered { index: FxHashMap::default(), entries: Vec::new() }
    }

    /// The number of `key` (its rank of first appearance) and its value, made with
    /// `new` when the key is new.
    pub fn entry(&mut self, key: &'a [u8], new: impl FnOnce() -> V) -> (usize, &mut V) {
        let entries = &mut self.entries;
        let i = *self.index.entry(key).or_insert_with(|| {
            entries.push((key, new()));
            entries.len() - 1
        });
        (i, &mut self.entries[i].1)
    }
}

/// Numbers each distinct key in order of first appearance: the group of every record,
/// and the first record of each group.
pub fn group_ids(keys: &Records) -> (Vec<u32>, Vec<usize>) {
    let mut groups: Ordered<'_, usize> = Ordered::new();
    let ids = keys.iter().enumerate().map(|(i, k)| groups.entry(k, || i).0 as u32).collect();
    (ids, groups.entries.into_iter().map(|(_, first)| first).collect())
}

/// The bucket of a key among `n`: a hash of its bytes that is the same in every process.
pub fn bucket(key: &[u8], n: usize) -> usize {
    // FNV-1a, then a finaliser so that the low bits are mixed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h % n.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_frames_round_trip_and_reject_truncation() {
        let mut out = Vec::new();
        for n in [0u64, 1, 127, 128, 300, u64::MAX] {
            put_varint(&mut out, n);
        }
        let mut rest = &out[..];
        for n in [0u64, 1, 127, 128, 300, u64::MAX] {
            let (m, r) = get_varint(rest).unwrap();
            assert_eq!(m, n);
            rest = r;
        }
        assert!(get_varint(&[0x80, 0x80]).is_err());
        let mut f = Vec::new();
        put_frame(&mut f, b"abc");
        put_frame(&mut f, b"");
        assert_eq!(frames(&f).collect::<Result<Vec<_>, _>>().unwrap(), vec![&b"abc"[..], &b""[..]]);
        assert!(frames(&f[..2]).any(|r| r.is_err()));
    }

    #[test]
    fn postcard_agrees_with_the_hand_built_vec_of_pairs() {
        let pairs = vec![("a".to_string(), 3u64), ("bc".to_string(), 300)];
        let mut out = Vec::new();
        put_varint(&mut out, 2);
        for (k, v) in &pairs {
            out.extend(postcard::to_allocvec(k).unwrap());
            out.extend(postcard::to_allocvec(v).unwrap());
        }
        assert_eq!(out, postcard::to_allocvec(&pairs).unwrap());
    }
}
