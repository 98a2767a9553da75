//! Records to Arrow columns, tokenizing only the columns a query reads.
//!
//! A record is split field by field with `memchr` up to the last column the query
//! projects; the rest of the line is skipped by one search for its end (its delimiters
//! counted, to check the number of fields), unless a quote makes it need the careful
//! walk. Only the projected fields are parsed, each straight into its Arrow builder.
//!
//! The dialect is arrow-csv's (so DataFusion's): a field that starts with the quote
//! character is quoted, a doubled quote inside it is one quote, text after its closing
//! quote is kept; a quote inside an unquoted field is text; records end with `\n` or
//! `\r\n`; empty lines are skipped; an empty field is null; values parse as arrow-csv
//! parses them (`arrow_cast`'s parsers).

use std::sync::Arc;

use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, LargeStringBuilder, NullArray, PrimitiveBuilder, StringBuilder,
    StringViewBuilder,
};
use datafusion::arrow::compute::kernels::cast_utils::{parse_decimal, string_to_datetime, Parser};
use datafusion::arrow::datatypes::*;
use memchr::{memchr, memchr2};

/// How the file writes its records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dialect {
    pub(crate) delimiter: u8,
    pub(crate) quote: u8,
    /// Records with fewer fields than the schema are padded with nulls.
    pub(crate) truncated_rows: bool,
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Malformed {
    /// The record has `found` fields where the schema has `expected`.
    Fields { expected: usize, found: usize },
    /// A value of a projected column does not parse as its type.
    Value { column: usize, value: String, type_name: String },
    /// A value of a projected text column is not UTF-8.
    Utf8 { column: usize },
}

/// A malformed record: what is wrong, and on which line of the bytes decoded (1-based).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DecodeError {
    pub(crate) line: u64,
    pub(crate) malformed: Malformed,
}

/// Where a projected field of the current record lies in the buffer.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: usize,
    end: usize,
    /// The raw field, quotes included, which needs unquoting.
    quoted: bool,
    /// The record ended before this field (a truncated row).
    missing: bool,
}

/// The outcome of one call of [`Decoder::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// Bytes consumed: whole records (and empty lines) only.
    pub(crate) consumed: usize,
    /// The decoder stopped because it holds a batch; call [`Decoder::flush`].
    pub(crate) full: bool,
}

const NONE: u32 = u32::MAX;

/// Decodes records into the builders of the projected columns, `batch_size` at a time.
pub(crate) struct Decoder {
    dialect: Dialect,
    /// Fields of every record.
    fields: usize,
    /// Per field of the file: the output column it fills, or `NONE`.
    slot_of: Vec<u32>,
    /// One past the last field any output column reads.
    wanted_end: usize,
    columns: Vec<Box<dyn Column>>,
    spans: Vec<Span>,
    rows: usize,
    batch_size: usize,
    /// Lines of the input consumed so far (records, the newlines inside quoted values,
    /// and empty lines).
    lines: u64,
    scratch: Vec<u8>,
}

impl Decoder {
    /// A decoder of records with `fields` fields, filling the output columns `projection`
    /// (file column indices) with the types `types`.
    ///
    /// Returns `None` if a column is projected twice, or of a type the decoder does not
    /// build (dictionaries, binary, intervals, durations).
    pub(crate) fn new(
        dialect: Dialect,
        fields: usize,
        projection: &[usize],
        types: &[DataType],
        batch_size: usize,
    ) -> Option<Decoder> {
        let batch_size = batch_size.max(1);
        let mut slot_of = vec![NONE; fields];
        let mut columns = Vec::with_capacity(projection.len());
        for (slot, (&field, data_type)) in projection.iter().zip(types).enumerate() {
            if field >= fields || slot_of[field] != NONE {
                // A column projected twice is rare enough to leave to arrow-csv.
                return None;
            }
            slot_of[field] = slot as u32;
            columns.push(new_column(data_type, batch_size)?);
        }
        let wanted_end = projection.iter().map(|f| f + 1).max().unwrap_or(0);
        Some(Decoder {
            dialect,
            fields,
            slot_of,
            wanted_end,
            spans: vec![Span::default(); columns.len()],
            columns,
            rows: 0,
            batch_size,
            lines: 0,
            scratch: Vec::new(),
        })
    }

    /// Rows decoded and not yet flushed.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Lines consumed so far.
    pub(crate) fn lines(&self) -> u64 {
        self.lines
    }

    /// Counts a skipped header as a line.
    pub(crate) fn count_line(&mut self) {
        self.lines += 1;
    }

    /// Decodes the records that start in `buf` before `stop` (an offset, possibly past
    /// its end), until the batch is full or a record is incomplete. `eof` says that `buf`
    /// ends where the file does.
    pub(crate) fn decode(&mut self, buf: &[u8], stop: usize, eof: bool) -> Result<Decoded, DecodeError> {
        let mut pos = 0;
        while self.rows < self.batch_size && pos < stop.min(buf.len()) {
            match buf[pos] {
                b'\n' => {
                    self.lines += 1;
                    pos += 1;
                    continue;
                }
                b'\r' if buf.get(pos + 1) == Some(&b'\n') => {
                    self.lines += 1;
                    pos += 2;
                    continue;
                }
                b'\r' if pos + 1 == buf.len() && !eof => break,
                _ => {}
            }
            let (next, found, newlines) = match self.record(buf, pos, eof) {
                Some(r) => r,
                None => break,
            };
            let line = self.lines + 1;
            self.lines += 1 + newlines;
            if found != self.fields && !(self.dialect.truncated_rows && found < self.fields) {
                return Err(DecodeError { line, malformed: Malformed::Fields { expected: self.fields, found } });
            }
            if let Err(malformed) = self.push_row(buf) {
                // The builders may hold part of this row; the query fails, so this batch
                // is never flushed.
                return Err(DecodeError { line, malformed });
            }
            self.rows += 1;
            pos = next;
        }
        Ok(Decoded { consumed: pos, full: self.rows >= self.batch_size })
    }

    /// The batch of the rows decoded since the last flush.
    pub(crate) fn flush(&mut self) -> Vec<ArrayRef> {
        self.rows = 0;
        self.columns.iter_mut().map(|c| c.finish()).collect()
    }

    /// Splits the record at `pos`: the projected fields' spans, where the next record
    /// starts, how many fields it has and how many newlines its quoted values hold.
    /// `None` if it does not end within `buf` and more input may follow.
    fn record(&mut self, buf: &[u8], pos: usize, eof: bool) -> Option<(usize, usize, u64)> {
        let Dialect { delimiter, quote, .. } = self.dialect;
        let mut p = pos;
        let mut field = 0;
        let mut newlines = 0;
        for span in &mut self.spans {
            span.missing = true;
        }
        loop {
            if field >= self.wanted_end {
                // Nothing more to keep: find the end of the line, and count its fields
                // unless a quote needs the careful walk.
                match memchr2(quote, b'\n', &buf[p..]) {
                    Some(k) if buf[p + k] == b'\n' => {
                        let found = field + 1 + count(delimiter, &buf[p..p + k]);
                        return Some((p + k + 1, found, newlines));
                    }
                    None if eof => return Some((buf.len(), field + 1 + count(delimiter, &buf[p..]), newlines)),
                    None => return None,
                    Some(_) => {}
                }
            }
            let (value_end, quoted, after) = if buf.get(p) == Some(&quote) {
                let (close, held) = closing_quote(buf, p + 1, quote, eof)?;
                newlines += held;
                // Text after the closing quote belongs to the field.
                let after = if close + 1 < buf.len() && buf[close + 1] != delimiter && buf[close + 1] != b'\n' {
                    match memchr2(delimiter, b'\n', &buf[close + 1..]) {
                        Some(k) => close + 1 + k,
                        None if eof => buf.len(),
                        None => return None,
                    }
                } else {
                    (close + 1).min(buf.len())
                };
                (after, true, after)
            } else {
                match find2(delimiter, b'\n', &buf[p..]) {
                    Some(k) => (p + k, false, p + k),
                    None if eof => (buf.len(), false, buf.len()),
                    None => return None,
                }
            };
            let ends_record = after >= buf.len() || buf[after] == b'\n';
            if let Some(&slot) = self.slot_of.get(field) {
                if slot != NONE {
                    let mut end = value_end;
                    if ends_record && end > p && buf[end - 1] == b'\r' {
                        end -= 1;
                    }
                    self.spans[slot as usize] = Span { start: p, end, quoted, missing: false };
                }
            }
            field += 1;
            if ends_record {
                return Some(((after + 1).min(buf.len()), field, newlines));
            }
            p = after + 1;
        }
    }

    /// Appends the projected fields of the record just split.
    fn push_row(&mut self, buf: &[u8]) -> Result<(), Malformed> {
        for (slot, span) in self.spans.iter().enumerate() {
            let column = &mut self.columns[slot];
            let value = if span.missing {
                &[][..]
            } else if span.quoted {
                unquote(&buf[span.start..span.end], self.dialect.quote, &mut self.scratch);
                &self.scratch[..]
            } else {
                &buf[span.start..span.end]
            };
            if value.is_empty() {
                column.push_null();
            } else if let Err(bad) = column.push(value) {
                // The row fails the query: the builders' unequal lengths never reach a batch.
                return Err(match bad {
                    Bad::Utf8 => Malformed::Utf8 { column: slot },
                    Bad::Value(type_name) => Malformed::Value {
                        column: slot,
                        value: String::from_utf8_lossy(value).into_owned(),
                        type_name,
                    },
                });
            }
        }
        Ok(())
    }
}

/// The first `a` or `b` in `hay`. Fields are short: eight bytes at a time (a byte equal
/// to neither is found by the carry trick on the XORed word), then `memchr2` for what
/// runs past 32 bytes.
fn find2(a: u8, b: u8, hay: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let (sa, sb) = (ONES * u64::from(a), ONES * u64::from(b));
    let mut i = 0;
    while i + 8 <= hay.len() && i < 32 {
        let word = u64::from_le_bytes(hay[i..i + 8].try_into().expect("eight bytes"));
        let (x, y) = (word ^ sa, word ^ sb);
        // A zero byte of x or y sets the high bit of that byte; only bits above the
        // first zero byte can be set wrongly, so the lowest set bit is exact.
        let zeros = (x.wrapping_sub(ONES) & !x & HIGHS) | (y.wrapping_sub(ONES) & !y & HIGHS);
        if zeros != 0 {
            return Some(i + (zeros.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    if i < 32 {
        return hay[i..].iter().position(|c| *c == a || *c == b).map(|k| i + k);
    }
    memchr2(a, b, &hay[i..]).map(|k| i + k)
}

/// The length of the line that starts `buf`, its newline included (to skip a header, or
/// the end of a line that began in the previous byte range); `None` if `buf` holds no
/// newline and more input may follow.
pub(crate) fn line_end(buf: &[u8], eof: bool) -> Option<usize> {
    match memchr(b'\n', buf) {
        Some(at) => Some(at + 1),
        None if eof => Some(buf.len()),
        None => None,
    }
}

fn count(byte: u8, bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == byte).count()
}

/// The position of the quote that closes a quoted field whose text starts at `from`,
/// skipping doubled quotes, and the newlines inside it. `None` if `buf` ends first and
/// more input may follow; at the end of the file an unclosed quote runs to the end.
fn closing_quote(buf: &[u8], from: usize, quote: u8, eof: bool) -> Option<(usize, u64)> {
    let mut i = from;
    loop {
        match memchr(quote, &buf[i.min(buf.len())..]) {
            Some(k) => {
                let at = i + k;
                match buf.get(at + 1) {
                    Some(b) if *b == quote => i = at + 2,
                    None if !eof => return None,
                    _ => return Some((at, count(b'\n', &buf[from..at]) as u64)),
                }
            }
            None if eof => return Some((buf.len(), count(b'\n', &buf[from.min(buf.len())..]) as u64)),
            None => return None,
        }
    }
}

/// The value of a quoted field: the text between its quotes with doubled quotes made
/// single, then any text after the closing quote.
fn unquote(raw: &[u8], quote: u8, out: &mut Vec<u8>) {
    out.clear();
    let mut i = 1;
    while i < raw.len() {
        if raw[i] == quote {
            if raw.get(i + 1) == Some(&quote) {
                out.push(quote);
                i += 2;
                continue;
            }
            out.extend_from_slice(&raw[i + 1..]);
            return;
        }
        out.push(raw[i]);
        i += 1;
    }
}

/// Why a value could not be appended.
enum Bad {
    Utf8,
    /// It does not parse as this type.
    Value(String),
}

/// A builder of one output column.
trait Column: Send {
    fn push(&mut self, value: &[u8]) -> Result<(), Bad>;
    fn push_null(&mut self);
    fn finish(&mut self) -> ArrayRef;
}

/// The value as text. Most values are ASCII, which a word-at-a-time check confirms far
/// faster than a full UTF-8 validation of a short slice.
fn text(value: &[u8]) -> Result<&str, Bad> {
    if value.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(value) });
    }
    std::str::from_utf8(value).map_err(|_| Bad::Utf8)
}

macro_rules! text_column {
    ($builder:ty) => {
        impl Column for $builder {
            fn push(&mut self, value: &[u8]) -> Result<(), Bad> {
                self.append_value(text(value)?);
                Ok(())
            }
            fn push_null(&mut self) {
                self.append_null();
            }
            fn finish(&mut self) -> ArrayRef {
                Arc::new(<$builder>::finish(self))
            }
        }
    };
}
text_column!(StringBuilder);
text_column!(LargeStringBuilder);
text_column!(StringViewBuilder);

/// Values parsed by `arrow_cast`'s [`Parser`], as arrow-csv parses them.
struct Parsed<T: ArrowPrimitiveType>(PrimitiveBuilder<T>);

impl<T: ArrowPrimitiveType + Parser> Column for Parsed<T> {
    fn push(&mut self, value: &[u8]) -> Result<(), Bad> {
        let parsed = T::parse(text(value)?).ok_or_else(|| Bad::Value(T::DATA_TYPE.to_string()))?;
        self.0.append_value(parsed);
        Ok(())
    }
    fn push_null(&mut self) {
        self.0.append_null();
    }
    fn finish(&mut self) -> ArrayRef {
        Arc::new(self.0.finish())
    }
}

struct Booleans(BooleanBuilder);

impl Column for Booleans {
    fn push(&mut self, value: &[u8]) -> Result<(), Bad> {
        let b = if value.eq_ignore_ascii_case(b"true") {
            true
        } else if value.eq_ignore_ascii_case(b"false") {
            false
        } else {
            return Err(Bad::Value("Boolean".into()));
        };
        self.0.append_value(b);
        Ok(())
    }
    fn push_null(&mut self) {
        self.0.append_null();
    }
    fn finish(&mut self) -> ArrayRef {
        Arc::new(self.0.finish())
    }
}

/// Timestamps, read in the column's time zone (UTC without one) as arrow-csv reads them.
struct Timestamps<T: ArrowTimestampType> {
    builder: PrimitiveBuilder<T>,
    zone: Option<Arc<str>>,
    tz: Tz,
}

impl<T: ArrowTimestampType> Column for Timestamps<T> {
    fn push(&mut self, value: &[u8]) -> Result<(), Bad> {
        let bad = || Bad::Value(T::DATA_TYPE.to_string());
        let date = string_to_datetime(&self.tz, text(value)?).map_err(|_| bad())?;
        let v = match T::UNIT {
            TimeUnit::Second => date.timestamp(),
            TimeUnit::Millisecond => date.timestamp_millis(),
            TimeUnit::Microsecond => date.timestamp_micros(),
            TimeUnit::Nanosecond => date.timestamp_nanos_opt().ok_or_else(bad)?,
        };
        self.builder.append_value(v);
        Ok(())
    }
    fn push_null(&mut self) {
        self.builder.append_null();
    }
    fn finish(&mut self) -> ArrayRef {
        Arc::new(self.builder.finish().with_timezone_opt(self.zone.clone()))
    }
}

struct Decimals<T: DecimalType> {
    builder: PrimitiveBuilder<T>,
    precision: u8,
    scale: i8,
}

impl<T: DecimalType> Column for Decimals<T> {
    fn push(&mut self, value: &[u8]) -> Result<(), Bad> {
        let v = parse_decimal::<T>(text(value)?, self.precision, self.scale)
            .map_err(|_| Bad::Value(format!("Decimal({}, {})", self.precision, self.scale)))?;
        self.builder.append_value(v);
        Ok(())
    }
    fn push_null(&mut self) {
        self.builder.append_null();
    }
    fn finish(&mut self) -> ArrayRef {
        let array = self.builder.finish();
        Arc::new(array.with_precision_and_scale(self.precision, self.scale).expect("checked when the column was made"))
    }
}

/// A column of type Null: arrow-csv ignores its values.
struct Nulls(usize);

impl Column for Nulls {
    fn push(&mut self, _value: &[u8]) -> Result<(), Bad> {
        self.0 += 1;
        Ok(())
    }
    fn push_null(&mut self) {
        self.0 += 1;
    }
    fn finish(&mut self) -> ArrayRef {
        Arc::new(NullArray::new(std::mem::take(&mut self.0)))
    }
}

fn parsed<T: ArrowPrimitiveType + Parser>(capacity: usize) -> Box<dyn Column> {
    Box::new(Parsed::<T>(PrimitiveBuilder::with_capacity(capacity)))
}

fn timestamps<T: ArrowTimestampType>(zone: &Option<Arc<str>>, capacity: usize) -> Option<Box<dyn Column>> {
    let tz = match zone {
        Some(z) => z.parse().ok()?,
        None => "+00:00".parse().ok()?,
    };
    Some(Box::new(Timestamps::<T> { builder: PrimitiveBuilder::with_capacity(capacity), zone: zone.clone(), tz }))
}

fn decimals<T: DecimalType>(precision: u8, scale: i8, capacity: usize) -> Option<Box<dyn Column>> {
    validate_decimal_precision_and_scale::<T>(precision, scale).ok()?;
    Some(Box::new(Decimals::<T> { builder: PrimitiveBuilder::with_capacity(capacity), precision, scale }))
}

fn new_column(data_type: &DataType, capacity: usize) -> Option<Box<dyn Column>> {
    Some(match data_type {
        DataType::Utf8 => Box::new(StringBuilder::with_capacity(capacity, capacity * 8)),
        DataType::LargeUtf8 => Box::new(LargeStringBuilder::with_capacity(capacity, capacity * 8)),
        DataType::Utf8View => Box::new(StringViewBuilder::with_capacity(capacity)),
        DataType::Boolean => Box::new(Booleans(BooleanBuilder::with_capacity(capacity))),
        DataType::Int8 => parsed::<Int8Type>(capacity),
        DataType::Int16 => parsed::<Int16Type>(capacity),
        DataType::Int32 => parsed::<Int32Type>(capacity),
        DataType::Int64 => parsed::<Int64Type>(capacity),
        DataType::UInt8 => parsed::<UInt8Type>(capacity),
        DataType::UInt16 => parsed::<UInt16Type>(capacity),
        DataType::UInt32 => parsed::<UInt32Type>(capacity),
        DataType::UInt64 => parsed::<UInt64Type>(capacity),
        DataType::Float16 => parsed::<Float16Type>(capacity),
        DataType::Float32 => parsed::<Float32Type>(capacity),
        DataType::Float64 => parsed::<Float64Type>(capacity),
        DataType::Date32 => parsed::<Date32Type>(capacity),
        DataType::Date64 => parsed::<Date64Type>(capacity),
        DataType::Time32(TimeUnit::Second) => parsed::<Time32SecondType>(capacity),
        DataType::Time32(TimeUnit::Millisecond) => parsed::<Time32MillisecondType>(capacity),
        DataType::Time64(TimeUnit::Microsecond) => parsed::<Time64MicrosecondType>(capacity),
        DataType::Time64(TimeUnit::Nanosecond) => parsed::<Time64NanosecondType>(capacity),
        DataType::Timestamp(TimeUnit::Second, zone) => timestamps::<TimestampSecondType>(zone, capacity)?,
        DataType::Timestamp(TimeUnit::Millisecond, zone) => timestamps::<TimestampMillisecondType>(zone, capacity)?,
        DataType::Timestamp(TimeUnit::Microsecond, zone) => timestamps::<TimestampMicrosecondType>(zone, capacity)?,
        DataType::Timestamp(TimeUnit::Nanosecond, zone) => timestamps::<TimestampNanosecondType>(zone, capacity)?,
        DataType::Decimal32(p, s) => decimals::<Decimal32Type>(*p, *s, capacity)?,
        DataType::Decimal64(p, s) => decimals::<Decimal64Type>(*p, *s, capacity)?,
        DataType::Decimal128(p, s) => decimals::<Decimal128Type>(*p, *s, capacity)?,
        DataType::Decimal256(p, s) => decimals::<Decimal256Type>(*p, *s, capacity)?,
        DataType::Null => Box::new(Nulls(0)),
        _ => return None,
    })
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").field("fields", &self.fields).field("rows", &self.rows).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, RecordBatch};
    use datafusion::arrow::csv::ReaderBuilder;
    use proptest::prelude::*;

    const DIALECT: Dialect = Dialect { delimiter: b',', quote: b'"', truncated_rows: false };

    /// Decodes `text` fed `chunk` bytes at a time, as the scan feeds file windows.
    fn decode_in_chunks(text: &[u8], chunk: usize, projection: &[usize], types: &[DataType], fields: usize) -> Result<Vec<Vec<ArrayRef>>, DecodeError> {
        let mut decoder = Decoder::new(DIALECT, fields, projection, types, 3).unwrap();
        let (mut batches, mut buf, mut fed, mut pos) = (Vec::new(), Vec::new(), 0, 0);
        loop {
            let eof = fed == text.len();
            let decoded = decoder.decode(&buf[pos..], usize::MAX, eof)?;
            pos += decoded.consumed;
            if decoded.full {
                batches.push(decoder.flush());
            } else if eof {
                break;
            } else {
                let next = (fed + chunk).min(text.len());
                buf.extend_from_slice(&text[fed..next]);
                fed = next;
            }
        }
        if decoder.rows() > 0 {
            batches.push(decoder.flush());
        }
        Ok(batches)
    }

    fn column_text(batches: &[Vec<ArrayRef>], c: usize) -> Vec<Option<String>> {
        let formatter = |a: &ArrayRef, i: usize| {
            a.is_valid(i).then(|| datafusion::arrow::util::display::array_value_to_string(a, i).unwrap())
        };
        batches.iter().flat_map(|b| (0..b[c].len()).map(|i| formatter(&b[c], i)).collect::<Vec<_>>()).collect()
    }

    fn arrow_csv(text: &[u8], projection: &[usize], schema: &Schema) -> Vec<RecordBatch> {
        ReaderBuilder::new(Arc::new(schema.clone()))
            .with_header(false)
            .with_projection(projection.to_vec())
            .build(text)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn field_text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[a-z0-9 ]{1,6}",
            "[a-z\",\n]{0,6}".prop_map(|s| format!("\"{}\"", s.replace('"', "\"\""))),
            Just("\"q\"tail".to_string()),
            Just("a\"b".to_string()),
            "-?[0-9]{1,5}",
        ]
    }

    proptest! {
        #[test]
        fn find2_finds_the_first_of_two_bytes(hay in proptest::collection::vec(prop_oneof![Just(b','), Just(b'\n'), Just(0x01u8), Just(0x80u8), any::<u8>()], 0..80)) {
            prop_assert_eq!(find2(b',', b'\n', &hay), hay.iter().position(|c| *c == b',' || *c == b'\n'));
        }

        /// Any records, fed in any chunks, with any projection: the same values as
        /// arrow-csv reads.
        #[test]
        fn decodes_what_arrow_csv_decodes(
            rows in proptest::collection::vec(proptest::collection::vec(field_text(), 4), 0..12),
            crlf in any::<bool>(),
            blank_after in proptest::option::of(0usize..12),
            projection in proptest::sample::subsequence(vec![0usize, 1, 2, 3], 0..=4),
            chunk in 1usize..40,
        ) {
            let end = if crlf { "\r\n" } else { "\n" };
            let mut text = String::new();
            for (i, row) in rows.iter().enumerate() {
                text.push_str(&row.join(","));
                text.push_str(end);
                if blank_after == Some(i) {
                    text.push_str(end);
                }
            }
            let schema = Schema::new((0..4).map(|i| Field::new(format!("c{i}"), DataType::Utf8, true)).collect::<Vec<_>>());
            let types = vec![DataType::Utf8; projection.len()];
            let ours = decode_in_chunks(text.as_bytes(), chunk, &projection, &types, 4).unwrap();
            let theirs = arrow_csv(text.as_bytes(), &projection, &schema);
            let theirs: Vec<Vec<ArrayRef>> = theirs.iter().map(|b| b.columns().to_vec()).collect();
            let rows_ours: usize = ours.iter().map(|b| b.first().map_or(0, |c| c.len())).sum();
            for c in 0..projection.len() {
                prop_assert_eq!(column_text(&ours, c), column_text(&theirs, c), "column {} of {:?}", c, text);
            }
            if !projection.is_empty() {
                prop_assert_eq!(rows_ours, rows.len());
            }
        }
    }

    #[test]
    fn parses_types_as_arrow_csv_does() {
        let text = "1,2.5,true,2024-05-05 06:03:52,2024-05-05,12.34\n,,,,,\n-7,1e3,FALSE,2021-01-06T16:13:21Z,1999-12-31,-0.5\n";
        let types = [
            DataType::Int64,
            DataType::Float64,
            DataType::Boolean,
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            DataType::Date32,
            DataType::Decimal128(10, 2),
        ];
        let schema = Schema::new(types.iter().enumerate().map(|(i, t)| Field::new(format!("c{i}"), t.clone(), true)).collect::<Vec<_>>());
        let projection: Vec<usize> = (0..6).collect();
        let ours = decode_in_chunks(text.as_bytes(), 7, &projection, &types, 6).unwrap();
        let theirs: Vec<Vec<ArrayRef>> = arrow_csv(text.as_bytes(), &projection, &schema).iter().map(|b| b.columns().to_vec()).collect();
        for c in 0..6 {
            assert_eq!(column_text(&ours, c), column_text(&theirs, c), "column {c}");
        }
    }

    #[test]
    fn a_malformed_value_says_line_column_and_value() {
        let text = "1,a\n2,b\n\nx3,c\n";
        let e = decode_in_chunks(text.as_bytes(), 5, &[0], &[DataType::Int64], 2).unwrap_err();
        assert_eq!(e.line, 4, "the empty line counts");
        assert_eq!(e.malformed, Malformed::Value { column: 0, value: "x3".into(), type_name: "Int64".into() });
    }

    #[test]
    fn a_record_with_the_wrong_number_of_fields_is_an_error_even_past_the_projection() {
        let text = "1,a,b\n2,\"x\ny\",c\n3,b\n";
        let e = decode_in_chunks(text.as_bytes(), 4, &[0], &[DataType::Int64], 3).unwrap_err();
        assert_eq!((e.line, e.malformed), (4, Malformed::Fields { expected: 3, found: 2 }), "a quoted newline is a line");
        let e = decode_in_chunks(b"1,a,b,c\n", 64, &[0], &[DataType::Int64], 3).unwrap_err();
        assert_eq!(e.malformed, Malformed::Fields { expected: 3, found: 4 });
    }

    #[test]
    fn truncated_rows_are_padded_with_nulls() {
        let mut decoder = Decoder::new(Dialect { truncated_rows: true, ..DIALECT }, 3, &[2], &[DataType::Utf8], 10).unwrap();
        decoder.decode(b"1,a,b\n2\n", usize::MAX, true).unwrap();
        let columns = decoder.flush();
        assert_eq!(column_text(&[columns], 0), vec![Some("b".to_string()), None]);
    }

    #[test]
    fn text_that_is_not_utf8_is_an_error_only_where_it_is_read() {
        let text = b"1,\xff\n";
        assert!(decode_in_chunks(text, 64, &[0], &[DataType::Int64], 2).is_ok());
        let e = decode_in_chunks(text, 64, &[1], &[DataType::Utf8], 2).unwrap_err();
        assert_eq!(e.malformed, Malformed::Utf8 { column: 0 });
    }

    #[test]
    fn decoding_stops_at_records_that_start_past_the_range() {
        let mut decoder = Decoder::new(DIALECT, 1, &[0], &[DataType::Int64], 100).unwrap();
        // Records start at bytes 0, 2 and 4: a stop at 3 takes the first two.
        let decoded = decoder.decode(b"1\n2\n3\n", 3, true).unwrap();
        assert_eq!(decoded.consumed, 4);
        assert_eq!(decoder.rows(), 2);
    }
}
