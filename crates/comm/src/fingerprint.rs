//! A fingerprint of the running executable.
//!
//! chorus ships no code: every rank runs the same binary and calls functions by name, so
//! two processes built differently must never join one job. The fingerprint is the
//! SHA-256 of the executable's GNU build-id when the linker recorded one (cheap: only the
//! ELF headers are read), otherwise the SHA-256 of the whole file.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The 32-byte fingerprint of a binary.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

impl Fingerprint {
    /// The first 12 hex digits, for messages.
    pub fn short(&self) -> String {
        crate::secret::hex(&self.0[..6])
    }

    /// The fingerprint of the running executable, computed once.
    pub fn current() -> Fingerprint {
        static CURRENT: OnceLock<Fingerprint> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            let Ok(path) = std::env::current_exe() else { return Fingerprint([0; 32]) };
            // The ELF headers and notes sit at the start of the file: read just that first.
            let head = read_prefix(&path, 64 << 10).unwrap_or_default();
            if let Some(id) = gnu_build_id(&head) {
                return Fingerprint(digest(Some(id), &head));
            }
            let whole = std::fs::read(&path).unwrap_or_default();
            Fingerprint(digest(gnu_build_id(&whole), &whole))
        })
    }
}

fn digest(build_id: Option<&[u8]>, file: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    match build_id {
        Some(id) => {
            h.update(b"build-id:");
            h.update(id);
        }
        None => h.update(file),
    }
    h.finalize().into()
}

fn read_prefix(path: &std::path::Path, len: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(len);
    std::fs::File::open(path)?.take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Finds the `NT_GNU_BUILD_ID` note of a 64-bit little-endian ELF image.
fn gnu_build_id(elf: &[u8]) -> Option<&[u8]> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let phoff = u64_at(0x20)? as usize;
    let phentsize = u16_at(0x36)? as usize;
    let phnum = u16_at(0x38)? as usize;
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? != 4 {
            continue; // not PT_NOTE
        }
        let start = u64_at(ph + 8)? as usize;
        let len = u64_at(ph + 32)? as usize;
        let notes = elf.get(start..start.checked_add(len)?)?;
        let mut o = 0;
        while o + 12 <= notes.len() {
            let namesz = u32::from_le_bytes(notes[o..o + 4].try_into().ok()?) as usize;
            let descsz = u32::from_le_bytes(notes[o + 4..o + 8].try_into().ok()?) as usize;
            let kind = u32::from_le_bytes(notes[o + 8..o + 12].try_into().ok()?);
            let name_start = o + 12;
            let desc_start = name_start.checked_add(namesz.div_ceil(4) * 4)?;
            let desc = notes.get(desc_start..desc_start.checked_add(descsz)?)?;
            if kind == 3 && notes.get(name_start..name_start + namesz)? == b"GNU\0" {
                return Some(desc);
            }
            o = desc_start.checked_add(descsz.div_ceil(4) * 4)?;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_has_a_build_id_within_its_first_64_kib() {
        let path = std::env::current_exe().unwrap();
        let head = read_prefix(&path, 64 << 10).unwrap();
        let id = gnu_build_id(&head).expect("the linker records a GNU build-id");
        assert!(id.len() >= 16);
        assert_eq!(Fingerprint::current().0, digest(Some(id), &head));
    }

    #[test]
    fn non_elf_or_truncated_input_has_no_build_id() {
        assert_eq!(gnu_build_id(b"#!/bin/sh\n"), None);
        let path = std::env::current_exe().unwrap();
        let head = read_prefix(&path, 100).unwrap();
        assert_eq!(gnu_build_id(&head), None);
    }
}
