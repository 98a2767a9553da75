//! The fused word count: `read_text → split_whitespace → frequencies` as one pass over a
//! range's bytes, with no string made per word.
//!
//! Words are what [`str::split_whitespace`] gives. The text is scanned eight bytes at a
//! time for bytes below `0x21`, the only ones that can be ASCII white space; a word
//! with bytes above `0x7f` is split again by `split_whitespace` itself, since Unicode
//! white space is not ASCII. Words of at most 16 bytes (nearly all) are counted in an
//! open-addressing table keyed by the word's bytes as two integers, compared without a
//! `memcmp` and hashed with two multiplications; longer ones go to a hash map. The
//! counts come out in order of first appearance, as `frequencies` gives them.

use rustc_hash::FxHashMap;

use crate::keyed::{put_frame, put_varint};

/// Whether `b` is white space by `char::is_whitespace` (for ASCII bytes).
fn space(b: u8) -> bool {
    b.is_ascii_whitespace() || b == 0x0b
}

const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The first white-space byte at or after `i`, or the end.
fn next_space(b: &[u8], mut i: usize) -> usize {
    while i + 8 <= b.len() {
        let x = u64::from_le_bytes(b[i..i + 8].try_into().expect("eight bytes"));
        // The high bit of each byte below 0x21: (b & 0x7f) + 0x5f stays below 0x80
        // exactly when b & 0x7f < 0x21, and bytes with their own high bit are out.
        let mut m = !((x & LOW7).wrapping_add(0x5f5f_5f5f_5f5f_5f5f) | x) & HIGH;
        while m != 0 {
            let k = (m.trailing_zeros() / 8) as usize;
            if space(b[i + k]) {
                return i + k;
            }
            m &= m - 1;
        }
        i += 8;
    }
    while i < b.len() && !space(b[i]) {
        i += 1;
    }
    i
}

/// A word of at most 16 bytes as a key: its bytes, zero-padded, and its length.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
struct Short {
    lo: u64,
    hi: u64,
    len: u64,
}

impl Short {
    fn of(b: &[u8], start: usize, len: usize) -> Short {
        let (lo, hi) = if start + 16 <= b.len() {
            let lo = u64::from_le_bytes(b[start..start + 8].try_into().expect("eight bytes"));
            let hi = u64::from_le_bytes(b[start + 8..start + 16].try_into().expect("eight bytes"));
            (lo, hi)
        } else {
            let mut buf = [0u8; 16];
            buf[..len].copy_from_slice(&b[start..start + len]);
            (u64::from_le_bytes(buf[..8].try_into().expect("eight bytes")), u64::from_le_bytes(buf[8..].try_into().expect("eight bytes")))
        };
        let mask = |n: usize| if n >= 8 { u64::MAX } else { (1u64 << (8 * n)) - 1 };
        Short { lo: lo & mask(len), hi: if len > 8 { hi & mask(len - 8) } else { 0 }, len: len as u64 }
    }

    fn hash(&self) -> u64 {
        (self.lo.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.hi.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ self.len).wrapping_mul(0xFF51_AFD7_ED55_8CCD)
    }

    fn ascii(&self) -> bool {
        (self.lo | self.hi) & HIGH == 0
    }
}

/// A short word and its count in 24 bytes: the count shares a word with the length.
#[derive(Clone, Copy, Default)]
struct Slot {
    lo: u64,
    hi: u64,
    /// The length in the low 8 bits, the count above; 0 for an empty slot.
    len_count: u64,
}

impl Slot {
    /// The word's bytes, zero-padded to 16, and its length.
    fn bytes(&self) -> ([u8; 16], usize) {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.lo.to_le_bytes());
        b[8..].copy_from_slice(&self.hi.to_le_bytes());
        (b, (self.len_count & 0xff) as usize)
    }
}

/// The words of a text and their counts.
///
/// Short words sit in an open-addressing table of 24-byte slots, filled to 80%, so
/// that the 50,000 words of a large vocabulary take 1.5 MB and stay in the L2 cache; a
/// probe compares three integers. `order` lists their slots in order of first
/// appearance. Longer words go to a hash map, with how many short words had appeared
/// before them.
pub(crate) struct WordCounts<'a> {
    slots: Vec<Slot>,
    shift: u32,
    order: Vec<u32>,
    long: FxHashMap<&'a str, (u64, usize)>,
    long_order: Vec<&'a str>,
}

impl<'a> WordCounts<'a> {
    pub(crate) fn new() -> WordCounts<'a> {
        WordCounts { slots: vec![Slot::default(); 1 << 12], shift: 64 - 12, order: Vec::new(), long: FxHashMap::default(), long_order: Vec::new() }
    }

    fn add_short(&mut self, key: Short) {
        let mask = self.slots.len() - 1;
        let mut i = (key.hash() >> self.shift) as usize;
        loop {
            let s = &mut self.slots[i];
            if s.len_count == 0 {
                *s = Slot { lo: key.lo, hi: key.hi, len_count: key.len | 0x100 };
                self.order.push(i as u32);
                if self.order.len() * 5 > self.slots.len() * 4 {
                    self.grow();
                }
                return;
            }
            if s.lo == key.lo && s.hi == key.hi && s.len_count & 0xff == key.len {
                s.len_count += 0x100;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let bigger = vec![Slot::default(); self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, bigger);
        self.shift -= 1;
        let mask = self.slots.len() - 1;
        for j in self.order.iter_mut() {
            let s = old[*j as usize];
            let key = Short { lo: s.lo, hi: s.hi, len: s.len_count & 0xff };
            let mut i = (key.hash() >> self.shift) as usize;
            while self.slots[i].len_count != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
            *j = i as u32;
        }
    }

    fn add(&mut self, text: &'a str, start: usize, end: usize) {
        let b = text.as_bytes();
        if end - start <= 16 {
            let key = Short::of(b, start, end - start);
            if key.ascii() {
                return self.add_short(key);
            }
        } else if b[start..end].is_ascii() {
            return self.add_long(&text[start..end]);
        }
        // Bytes above 0x7f: Unicode white space may be among them.
        for w in text[start..end].split_whitespace() {
            let at = w.as_ptr() as usize - text.as_ptr() as usize;
            if w.len() <= 16 {
                self.add_short(Short::of(b, at, w.len()));
            } else {
                self.add_long(w);
            }
        }
    }

    fn add_long(&mut self, w: &'a str) {
        match self.long.get_mut(w) {
            Some(c) => c.0 += 1,
            None => {
                self.long.insert(w, (1, self.order.len()));
                self.long_order.push(w);
            }
        }
    }

    /// Counts the words of `text`.
    pub(crate) fn count(&mut self, text: &'a str) {
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            while i < b.len() && space(b[i]) {
                i += 1;
            }
            if i == b.len() {
                break;
            }
            let end = next_space(b, i);
            self.add(text, i, end);
            i = end;
        }
    }

    /// Every word and its count, in order of first appearance.
    fn for_each(&self, mut f: impl FnMut(&[u8], u64)) {
        let mut long = self.long_order.iter().peekable();
        for (k, &i) in self.order.iter().enumerate() {
            while let Some(w) = long.next_if(|w| self.long[*w].1 <= k) {
                f(w.as_bytes(), self.long[w].0);
            }
            let s = &self.slots[i as usize];
            let (b, len) = s.bytes();
            f(&b[..len], s.len_count >> 8);
        }
        for w in long {
            f(w.as_bytes(), self.long[w].0);
        }
    }

    /// Each word (as a postcard `String`, framed) and its count (a varint), in order
    /// of first appearance: the partial result of `frequencies`.
    pub(crate) fn frames(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity((self.order.len() + self.long_order.len()) * 16);
        let mut record = Vec::new();
        self.for_each(|w, n| {
            record.clear();
            put_varint(&mut record, w.len() as u64);
            record.extend_from_slice(w);
            put_frame(&mut out, &record);
            put_varint(&mut out, n);
        });
        out
    }

    #[cfg(test)]
    fn table(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        self.for_each(|w, n| out.push((String::from_utf8(w.to_vec()).unwrap(), n)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(text: &str) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for w in text.split_whitespace() {
            match at.get(w) {
                Some(&i) => out[i].1 += 1,
                None => {
                    at.insert(w, out.len());
                    out.push((w.to_string(), 1));
                }
            }
        }
        out
    }

    proptest! {
        #[test]
        fn counts_what_split_whitespace_splits(parts in prop::collection::vec(prop::sample::select(vec![
            "a", "bb", "abcdefgh", "abcdefghi", "abcdefghijklmnop", "abcdefghijklmnopq", "a\0", "\u{1}",
            " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\u{a0}", "\u{3000}", "\u{85}", "é", "日本語", "x\u{2028}y",
        ]), 0..60)) {
            let text = parts.concat();
            let mut c = WordCounts::new();
            c.count(&text);
            prop_assert_eq!(c.table(), reference(&text));
        }
    }

    #[test]
    fn many_distinct_words_grow_the_table() {
        let text: String = (0..20_000).map(|i| format!("w{} ", i % 7_000)).collect();
        let mut c = WordCounts::new();
        c.count(&text);
        assert_eq!(c.table(), reference(&text));
    }
}
