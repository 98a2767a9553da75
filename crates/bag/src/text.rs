//! Text files as bags of lines: [`ReadText`] on the driver cuts files into byte
//! ranges; each worker reads its own ranges.
//!
//! A range `[start, end)` holds the lines that *start* in it (a line starts at 0 and
//! after every `\n`), read to their end even past `end`. So the ranges of a file cover
//! each line exactly once, wherever the cuts fall, and a worker reads only a few bytes
//! beyond its range. Lines lose their `\n` (and a `\r` before it), as
//! [`BufRead::lines`](std::io::BufRead::lines) does. Compressed files (`.gz`, `.zst`)
//! cannot be cut: each is one partition, decompressed by one worker.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a file is compressed, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn of(path: &Path) -> Compression {
        match path.extension().and_then(|e| e.to_str()) {
            Some("gz") => Compression::Gzip,
            Some("zst") => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// One partition of a text bag: the lines of `path` that start in `start..end`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TextRange {
    pub path: String,
    pub start: u64,
    pub end: u64,
    pub compression: Compression,
    pub lossy: bool,
}

/// How to read text files into a bag of lines (see [`crate::read_text`]).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let cluster = chorus_tasks::LocalCluster::builder().workers(2).start()?;
/// # let client = cluster.client();
/// let lines = chorus_bag::ReadText::new("logs/*.txt").blocksize(16 << 20).lossy(true).open(&client)?;
/// println!("{} lines", lines.count()?);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ReadText {
    patterns: Vec<String>,
    blocksize: u64,
    lossy: bool,
}

/// Partitions of 64 MiB unless told otherwise.
pub const DEFAULT_BLOCKSIZE: u64 = 64 << 20;

impl ReadText {
    /// Files named by `pattern`: a path, or a glob (`*`, `?`, `[…]`).
    pub fn new(pattern: impl Into<String>) -> ReadText {
        ReadText { patterns: vec![pattern.into()], blocksize: DEFAULT_BLOCKSIZE, lossy: false }
    }

    /// Files named by each of `patterns`, in order.
    pub fn paths<I: IntoIterator<Item = S>, S: Into<String>>(patterns: I) -> ReadText {
        ReadText { patterns: patterns.into_iter().map(Into::into).collect(), blocksize: DEFAULT_BLOCKSIZE, lossy: false }
    }

    /// Cuts uncompressed files into partitions of about `bytes` each (default 64 MiB).
    pub fn blocksize(mut self, bytes: u64) -> ReadText {
        self.blocksize = bytes;
        self
    }

    /// Replaces bytes that are not UTF-8 with U+FFFD instead of failing.
    pub fn lossy(mut self, lossy: bool) -> ReadText {
        self.lossy = lossy;
        self
    }

    /// The ranges of every file, checked on the driver: a missing file or a glob that
    /// matches nothing is an error before any task runs.
    pub(crate) fn ranges(&self) -> Result<Vec<TextRange>> {
        if self.blocksize == 0 {
            return Err(Error::InvalidArgument("read_text: the blocksize must be at least one byte".into()));
        }
        if self.patterns.is_empty() {
            return Err(Error::InvalidArgument("read_text: no paths were given".into()));
        }
        let mut out = Vec::new();
        for pattern in &self.patterns {
            for path in expand(pattern)? {
                let meta = std::fs::metadata(&path).map_err(|source| Error::File { path: path.clone(), source })?;
                if !meta.is_file() {
                    return Err(Error::File { path, source: std::io::Error::other("it is not a regular file") });
                }
                let name = path.to_str().ok_or_else(|| Error::InvalidArgument(format!("read_text: the path {} is not UTF-8", path.display())))?.to_string();
                let compression = Compression::of(&path);
                let len = meta.len();
                let cuts = if compression == Compression::None { len.div_ceil(self.blocksize).max(1) } else { 1 };
                for i in 0..cuts {
                    let (start, end) = if compression == Compression::None { (i * self.blocksize, ((i + 1) * self.blocksize).min(len)) } else { (0, len) };
                    out.push(TextRange { path: name.clone(), start, end, compression, lossy: self.lossy });
                }
            }
        }
        Ok(out)
    }
}

/// The files of one pattern, sorted; the path itself when it has no glob characters.
fn expand(pattern: &str) -> Result<Vec<PathBuf>> {
    if !pattern.contains(['*', '?', '[']) {
        return Ok(vec![PathBuf::from(pattern)]);
    }
    let paths = glob::glob(pattern).map_err(|e| Error::InvalidArgument(format!("read_text: the pattern {pattern:?} is not a glob: {e}")))?;
    let mut out = Vec::new();
    for p in paths {
        out.push(p.map_err(|e| Error::File { path: e.path().to_path_buf(), source: std::io::Error::other(e.error().to_string()) })?);
    }
    out.retain(|p| p.is_file());
    if out.is_empty() {
        return Err(Error::NoMatch { pattern: pattern.to_string() });
    }
    out.sort();
    Ok(out)
}

fn io<'a>(path: &'a str, what: &'a str) -> impl Fn(std::io::Error) -> String + 'a {
    move |e| format!("{what} {path}: {e}")
}

/// The bytes of a range's lines, and the file offset of the first (for errors).
pub(crate) fn read_range(r: &TextRange) -> std::result::Result<(Vec<u8>, u64), String> {
    let mut buf = Vec::new();
    let first = read_range_into(r, &mut buf)?;
    Ok((buf, first))
}

/// [`read_range`] into `buf`, whose memory a worker keeps from one range to the next.
pub(crate) fn read_range_into(r: &TextRange, buf: &mut Vec<u8>) -> std::result::Result<u64, String> {
    buf.clear();
    let file = File::open(&r.path).map_err(io(&r.path, "opening"))?;
    if r.compression != Compression::None {
        match r.compression {
            Compression::Gzip => flate2::read::MultiGzDecoder::new(file).read_to_end(buf),
            _ => zstd::stream::read::Decoder::new(file).and_then(|mut d| d.read_to_end(buf)),
        }
        .map_err(io(&r.path, "decompressing"))?;
        return Ok(0);
    }
    if r.end <= r.start {
        return Ok(r.start);
    }
    // The first line that starts in the range: at `start` when the byte before is a
    // line end, else after the first `\n` from `start`.
    let mut first = r.start;
    buf.resize((r.end - r.start) as usize, 0);
    file.read_exact_at(buf, r.start).map_err(io(&r.path, "reading"))?;
    if r.start > 0 {
        let mut before = [0u8];
        file.read_exact_at(&mut before, r.start - 1).map_err(io(&r.path, "reading"))?;
        if before[0] != b'\n' {
            match buf.iter().position(|&b| b == b'\n') {
                Some(i) if (i as u64) + 1 < r.end - r.start => {
                    first = r.start + i as u64 + 1;
                    buf.drain(..=i);
                }
                // No line starts in this range.
                _ => {
                    buf.clear();
                    return Ok(r.start);
                }
            }
        }
    }
    // The last line runs to the first `\n` at or after `end - 1`.
    if buf.last() != Some(&b'\n') {
        let mut at = r.end;
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let n = file.read_at(&mut chunk, at).map_err(io(&r.path, "reading"))?;
            if n == 0 {
                break;
            }
            if let Some(i) = chunk[..n].iter().position(|&b| b == b'\n') {
                buf.extend_from_slice(&chunk[..=i]);
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            at += n as u64;
        }
    }
    Ok(first)
}

/// The text of a range, checked to be UTF-8 (or made so, when lossy).
pub(crate) fn text_of<'a>(r: &TextRange, bytes: &'a [u8], offset: u64) -> std::result::Result<std::borrow::Cow<'a, str>, String> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.into()),
        Err(_) if r.lossy => Ok(String::from_utf8_lossy(bytes)),
        Err(e) => {
            let at = offset + e.valid_up_to() as u64;
            let whence = if r.compression == Compression::None { format!("byte offset {at}") } else { format!("byte offset {at} of its decompressed text") };
            Err(format!("{} is not UTF-8 text: an invalid byte sequence at {whence}; read it with ReadText::lossy(true) to replace such bytes with U+FFFD", r.path))
        }
    }
}
