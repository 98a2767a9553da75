//! The one task every bag operation runs: `chorus_bag::run`, which reads its [`Plan`],
//! makes its partition, runs the fused stages and gives what the sink asks for.

use std::borrow::Cow;

use chorus_tasks::registry::{encode_result, Encoded, Fault, FunctionEntry};
use chorus_tasks::{FailureKind, RemoteFunction};
use rustc_hash::FxHashMap;

use crate::element::{take, ElementOps, Part, Typed};
use crate::func::Cx;
use crate::keyed::{self, frames, get_frame, get_varint, group_ids, pairs, put_frame, put_varint, Ordered, Records};
use crate::plan::{Combine, Plan, Sink, Source, Stage};
use crate::reduce::{Moments, NumAcc};
use crate::registry::{adapter, ops, ops_or_basic};
use crate::text;

/// The registered task of chorus-bag.
#[derive(Clone, Copy)]
pub(crate) struct Run;

impl RemoteFunction for Run {
    type Args = (Vec<u8>,);
    type Output = Vec<u8>;
    const NAME: &'static str = "chorus_bag::run";
}

inventory::submit! { FunctionEntry { name: Run::NAME, call: run } }

fn fault(message: impl Into<String>) -> Fault {
    Fault { kind: FailureKind::Error, message: message.into() }
}

/// A task's partition between its steps.
enum Value<'a> {
    /// Encoded elements of the type named `ty` (the task encoding of a `Vec`): an
    /// argument where the worker holds it, or bytes a step made.
    Bytes { ty: String, bytes: Cow<'a, [u8]> },
    Typed(Typed),
    /// Bytes that are not a partition (a bucket, a partial result).
    Raw(Vec<u8>),
}

fn ops_of(ty: &str) -> Result<&'static ElementOps, Fault> {
    ops(ty).ok_or_else(|| fault(format!("the element type `{ty}` is not registered in this worker's program; are driver and workers the same build?")))
}

impl Value<'_> {
    fn typed(self) -> Result<Typed, Fault> {
        match self {
            Value::Typed(t) => Ok(t),
            Value::Bytes { ty, bytes } => {
                let o = ops_of(&ty)?;
                Ok(((o.decode)(&bytes).map_err(fault)?, o))
            }
            Value::Raw(_) => Err(fault("a step that needs a partition got another result")),
        }
    }

    fn bytes(self) -> Result<Vec<u8>, Fault> {
        match self {
            Value::Typed((p, o)) => (o.encode)(p).map_err(fault),
            Value::Bytes { bytes, .. } => Ok(bytes.into_owned()),
            Value::Raw(bytes) => Ok(bytes),
        }
    }
}

/// The entry point: argument 0 is the plan, the others its inputs.
pub(crate) fn run(args: &[&[u8]]) -> Encoded {
    let (plan, inputs) = args.split_first().ok_or_else(|| fault("a bag task without its plan"))?;
    let plan: Plan = postcard::from_bytes(plan).map_err(|e| fault(format!("the plan of a bag task could not be decoded: {e}")))?;
    let cx = Cx { partition: plan.partition };
    if let (Source::Text(r), [Stage::Words], Sink::Frequencies) = (&plan.source, &plan.stages[..], &plan.sink) {
        return encode_result(word_frequencies(r)?);
    }
    let mut value = source(&plan.source, inputs, cx)?;
    for stage in &plan.stages {
        value = apply(stage, value, inputs, cx)?;
    }
    encode_result(sink(&plan.sink, value, cx)?)
}

/// Argument `i` of the task's inputs.
fn arg<'a>(inputs: &[&'a [u8]], i: u32) -> Result<&'a [u8], Fault> {
    inputs.get(i as usize).copied().ok_or_else(|| fault(format!("argument {i} of a bag task is missing")))
}

fn source<'a>(s: &Source, inputs: &[&'a [u8]], cx: Cx) -> Result<Value<'a>, Fault> {
    Ok(match s {
        Source::Arg { arg: i, ty } => Value::Bytes { ty: ty.clone(), bytes: Cow::Borrowed(arg(inputs, *i)?) },
        Source::Range { start, end } => Value::Typed((Box::new((*start..*end).collect::<Vec<u64>>()), ops_or_basic::<u64>())),
        Source::Text(r) => {
            let (bytes, offset) = text::read_range(r).map_err(fault)?;
            let lines: Vec<String> = text::text_of(r, &bytes, offset).map_err(fault)?.lines().map(str::to_string).collect();
            Value::Typed((Box::new(lines), ops_or_basic::<String>()))
        }
        Source::Parquet { path, ty } => {
            let o = ops_of(ty)?;
            Value::Typed((parquet::read(o, std::path::Path::new(path))?, o))
        }
        Source::Pieces { ty, pieces } => {
            let o = ops_of(ty)?;
            let mut parts = Vec::with_capacity(pieces.len());
            for &(i, j, k) in pieces {
                let p = (o.decode)(arg(inputs, i)?).map_err(fault)?;
                parts.push(if k == 1 { p } else { (o.piece)(p, j as usize, k as usize).map_err(fault)? });
            }
            Value::Typed(((o.concat)(parts).map_err(fault)?, o))
        }
        Source::Zip { left, right, out } => Value::Bytes { ty: out.clone(), bytes: zip(ops_of(left)?, arg(inputs, 0)?, ops_of(right)?, arg(inputs, 1)?, cx)?.into() },
        Source::Groups { out } => Value::Bytes { ty: out.clone(), bytes: groups(inputs, cx)?.into() },
        Source::Bucket { index } => Value::Raw(bucket_of(arg(inputs, 0)?, *index as usize)?.to_vec()),
        Source::Combine { combine: c } => combine(c, inputs, cx)?,
    })
}

fn records(t: &Typed) -> Result<Records, Fault> {
    let mut r = Records::new();
    (t.1.records)(&t.0, &mut r).map_err(fault)?;
    Ok(r)
}

fn zip(lo: &'static ElementOps, left: &[u8], ro: &'static ElementOps, right: &[u8], cx: Cx) -> Result<Vec<u8>, Fault> {
    let l = records(&((lo.decode)(left).map_err(fault)?, lo))?;
    let r = records(&((ro.decode)(right).map_err(fault)?, ro))?;
    if l.len() != r.len() {
        return Err(fault(format!("zip: partition {} has {} elements in the first bag and {} in the second; zip bags whose partitions hold as many elements", cx.partition, l.len(), r.len())));
    }
    let mut out = Vec::new();
    put_varint(&mut out, l.len() as u64);
    for (a, b) in l.iter().zip(r.iter()) {
        out.extend_from_slice(a);
        out.extend_from_slice(b);
    }
    Ok(out)
}

fn apply<'a>(stage: &Stage, value: Value<'a>, inputs: &[&'a [u8]], cx: Cx) -> Result<Value<'a>, Fault> {
    let (part, o) = value.typed()?;
    Ok(Value::Typed(match stage {
        Stage::Map(f) => adapter(f).map_err(fault)?.map(part, cx)?,
        Stage::Filter(f) => (adapter(f).map_err(fault)?.filter(part, cx)?, o),
        Stage::FlatMap(f) => adapter(f).map_err(fault)?.flat_map(part, cx)?,
        Stage::MapPartitions(f) => adapter(f).map_err(fault)?.map_partition(part, cx)?,
        Stage::Sample { fraction, seed } => {
            let n = (o.len)(&part);
            let mut s = seed ^ (u64::from(cx.partition) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let keep: Vec<bool> = (0..n).map(|_| ((splitmix(&mut s) >> 11) as f64 / (1u64 << 53) as f64) < *fraction).collect();
            ((o.select)(part, &keep).map_err(fault)?, o)
        }
        Stage::Pluck(i) => {
            let t = o.tuple.ok_or_else(|| fault(format!("pluck: `{}` is not a registered tuple type", o.name)))?;
            (t.pluck)(part, *i as usize).map_err(fault)?
        }
        Stage::Words => {
            let lines = take::<String>(part).map_err(fault)?;
            let words: Vec<String> = lines.iter().flat_map(|l| l.split_whitespace()).map(str::to_string).collect();
            (Box::new(words), o)
        }
        Stage::Join { key, arg: a, out } => {
            let t = (part, o);
            let mut keys = Records::new();
            adapter(key).map_err(fault)?.keys(&t.0, &mut keys, cx)?;
            let elements = records(&t)?;
            let map: FxHashMap<&[u8], &[u8]> = pairs(arg(inputs, *a)?).collect::<Result<_, _>>().map_err(fault)?;
            let mut body = Vec::new();
            let mut n = 0u64;
            for (k, e) in keys.iter().zip(elements.iter()) {
                if let Some(v) = map.get(k) {
                    body.extend_from_slice(e);
                    body.extend_from_slice(v);
                    n += 1;
                }
            }
            // A tuple's partition: postcard, which is also its task encoding.
            let mut bytes = Vec::with_capacity(body.len() + 10);
            put_varint(&mut bytes, n);
            bytes.extend_from_slice(&body);
            return Ok(Value::Bytes { ty: out.clone(), bytes: bytes.into() });
        }
    }))
}

fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn enc<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, Fault> {
    postcard::to_allocvec(v).map_err(|e| fault(format!("a partial result could not be encoded: {e}")))
}

fn dec<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, Fault> {
    postcard::from_bytes(b).map_err(|e| fault(format!("a partial result could not be decoded: {e}")))
}

fn need<T>(cap: Option<T>, what: &str, o: &ElementOps) -> Result<T, Fault> {
    cap.ok_or_else(|| fault(format!("{what} is not defined for elements of type `{}`", o.name)))
}

fn sink(s: &Sink, value: Value<'_>, cx: Cx) -> Result<Vec<u8>, Fault> {
    if let Sink::Encode = s {
        return value.bytes();
    }
    if let (Sink::Count, Value::Bytes { ty, bytes }) = (s, &value) {
        if ops(ty).is_none() {
            // Postcard: the count leads.
            return enc(&get_varint(bytes).map_err(fault)?.0);
        }
    }
    let (part, o) = value.typed()?;
    match s {
        Sink::Encode => unreachable!("handled above"),
        Sink::Count => enc(&((o.len)(&part) as u64)),
        Sink::Sum => enc(&(need(o.num, "sum", o)?.sum)(&part).map_err(fault)?),
        Sink::Moments => enc(&(need(o.num, "mean and std", o)?.moments)(&part).map_err(fault)?),
        Sink::Truth => enc(&(need(o.truth, "any and all", o)?)(&part)),
        Sink::Top { k, largest, key } => {
            let top = match key {
                Some(f) => adapter(f).map_err(fault)?.top(part, *k as usize, *largest, cx)?,
                None => need(o.ord, "an order", o)?(part, *k as usize, *largest).map_err(fault)?,
            };
            (o.encode)(top).map_err(fault)
        }
        Sink::Fold { binop, init } => adapter(binop).map_err(fault)?.fold(init, part, cx),
        Sink::Whole(f) => adapter(f).map_err(fault)?.whole(part, cx),
        Sink::FoldBy { key, binop, init } => {
            let mut keys = Records::new();
            adapter(key).map_err(fault)?.keys(&part, &mut keys, cx)?;
            let (ids, firsts) = group_ids(&keys);
            let accs = adapter(binop).map_err(fault)?.fold_groups(Some(init), part, &ids, firsts.len(), cx)?;
            Ok(keyed_frames(&keys, &firsts, &accs))
        }
        Sink::ReduceByKey { binop } => {
            let t = need(o.tuple.and_then(|t| t.unzip), "reduce_by_key (pairs)", o)?;
            let (k, v) = t(part).map_err(fault)?;
            let keys = records(&k)?;
            let (ids, firsts) = group_ids(&keys);
            let accs = adapter(binop).map_err(fault)?.fold_groups(None, v.0, &ids, firsts.len(), cx)?;
            Ok(keyed_frames(&keys, &firsts, &accs))
        }
        Sink::Frequencies => {
            let r = records(&(part, o))?;
            let (ids, firsts) = group_ids(&r);
            let mut counts = vec![0u64; firsts.len()];
            for g in ids {
                counts[g as usize] += 1;
            }
            let mut out = Vec::new();
            for (g, &i) in firsts.iter().enumerate() {
                put_frame(&mut out, r.get(i));
                put_varint(&mut out, counts[g]);
            }
            Ok(out)
        }
        Sink::Distinct => {
            let r = records(&(part, o))?;
            let (_, firsts) = group_ids(&r);
            let mut out = Vec::new();
            for &i in &firsts {
                put_frame(&mut out, r.get(i));
            }
            Ok(out)
        }
        Sink::Buckets { key, n } => {
            let mut keys = Records::new();
            adapter(key).map_err(fault)?.keys(&part, &mut keys, cx)?;
            let elements = records(&(part, o))?;
            let n = (*n).max(1) as usize;
            let mut buckets = vec![Vec::new(); n];
            for (k, e) in keys.iter().zip(elements.iter()) {
                let b = &mut buckets[keyed::bucket(k, n)];
                put_frame(b, k);
                put_frame(b, e);
            }
            let mut out = Vec::new();
            put_varint(&mut out, n as u64);
            for b in &buckets {
                put_varint(&mut out, b.len() as u64);
            }
            for b in buckets {
                out.extend_from_slice(&b);
            }
            Ok(out)
        }
        Sink::Parquet { dir } => {
            std::fs::create_dir_all(dir).map_err(|e| fault(format!("to_dataframe: creating {dir}: {e}")))?;
            let path = std::path::Path::new(dir).join(format!("part-{:05}.parquet", cx.partition));
            parquet::write(o, part, &path)?;
            enc(&path.to_string_lossy().into_owned())
        }
        Sink::Text { dir } => {
            if !o.string {
                return Err(fault(format!("to_textfiles writes bags of String, not of `{}`", o.name)));
            }
            let lines = take::<String>(part).map_err(fault)?;
            std::fs::create_dir_all(dir).map_err(|e| fault(format!("to_textfiles: creating {dir}: {e}")))?;
            let path = std::path::Path::new(dir).join(format!("part-{:05}.txt", cx.partition));
            let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
            for l in &lines {
                text.push_str(l);
                text.push('\n');
            }
            std::fs::write(&path, text).map_err(|e| fault(format!("to_textfiles: writing {}: {e}", path.display())))?;
            enc(&path.to_string_lossy().into_owned())
        }
    }
}

/// Parquet files, which the element ops read and write with the `frame` feature.
mod parquet {
    use super::{fault, ElementOps, Fault, Part};
    use std::path::Path;

    #[cfg(feature = "frame")]
    pub(super) fn read(o: &ElementOps, path: &Path) -> Result<Part, Fault> {
        (o.from_parquet)(path).map_err(fault)
    }

    #[cfg(feature = "frame")]
    pub(super) fn write(o: &ElementOps, part: Part, path: &Path) -> Result<(), Fault> {
        (o.to_parquet)(part, path).map_err(fault)
    }

    #[cfg(not(feature = "frame"))]
    pub(super) fn read(o: &ElementOps, path: &Path) -> Result<Part, Fault> {
        Err(fault(format!("reading {} as `{}` needs chorus-bag's `frame` feature in the workers' build", path.display(), o.name)))
    }

    #[cfg(not(feature = "frame"))]
    pub(super) fn write(o: &ElementOps, _part: Part, path: &Path) -> Result<(), Fault> {
        Err(fault(format!("writing {} as `{}` needs chorus-bag's `frame` feature in the workers' build", path.display(), o.name)))
    }
}

/// `(key, accumulator)` pairs, framed.
fn keyed_frames(keys: &Records, firsts: &[usize], accs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (&i, acc) in firsts.iter().zip(accs) {
        put_frame(&mut out, keys.get(i));
        put_frame(&mut out, acc);
    }
    out
}

/// Bucket `index` of a `group_by` map output.
fn bucket_of(bytes: &[u8], index: usize) -> Result<&[u8], Fault> {
    let (n, mut rest) = get_varint(bytes).map_err(fault)?;
    if index as u64 >= n {
        return Err(fault(format!("bucket {index} of {n}")));
    }
    let beyond = || fault("a bucket beyond its map output");
    let mut offset = 0usize;
    let mut len = 0usize;
    for b in 0..n {
        let (l, r) = get_varint(rest).map_err(fault)?;
        rest = r;
        let l = usize::try_from(l).map_err(|_| beyond())?;
        if b < index as u64 {
            offset = offset.checked_add(l).ok_or_else(beyond)?;
        } else if b == index as u64 {
            len = l;
        }
    }
    rest.get(offset..offset.checked_add(len).ok_or_else(beyond)?).ok_or_else(beyond)
}

/// A `group_by` partition: its records grouped by key, in order of first appearance,
/// as the postcard `Vec<(K, Vec<T>)>`.
fn groups(pieces: &[&[u8]], cx: Cx) -> Result<Vec<u8>, Fault> {
    let mut groups: Ordered<'_, Vec<&[u8]>> = Ordered::new();
    let mut size = 0usize;
    for piece in pieces {
        for record in pairs(piece) {
            let (k, e) = record.map_err(fault)?;
            size += e.len();
            groups.entry(k, Vec::new).1.push(e);
        }
    }
    let limit = chorus_tasks::settings::Limits::get().map_err(|e| fault(e.to_string()))?.max_object;
    if size as u64 > limit {
        let (count, bytes) = groups.entries.iter().map(|(_, m)| (m.len(), m.iter().map(|e| e.len()).sum::<usize>())).max_by_key(|m| m.1).unwrap_or_default();
        return Err(fault(format!(
            "group_by: partition {} would hold {size} bytes of values ({} keys; the largest has {count} values, {bytes} bytes), over the {limit} bytes one result may take (CHORUS_MAX_OBJECT). \
             Combine the values of each key as they come with fold_by or reduce_by_key instead of holding them, or group into more partitions",
            cx.partition,
            groups.entries.len(),
        )));
    }
    let mut out = Vec::with_capacity(size + groups.entries.len() * 8 + 10);
    put_varint(&mut out, groups.entries.len() as u64);
    for (k, members) in groups.entries {
        out.extend_from_slice(k);
        put_varint(&mut out, members.len() as u64);
        for e in members {
            out.extend_from_slice(e);
        }
    }
    Ok(out)
}

fn combine(c: &Combine, parts: &[&[u8]], cx: Cx) -> Result<Value<'static>, Fault> {
    Ok(Value::Raw(match c {
        Combine::Count => {
            let mut n = 0u64;
            for p in parts {
                n += dec::<u64>(p)?;
            }
            enc(&n)?
        }
        Combine::Sum => {
            let mut it = parts.iter().map(|p| dec::<NumAcc>(p));
            let Some(first) = it.next() else { return Err(fault("a sum of nothing")) };
            let mut acc = first?;
            for p in it {
                acc = acc.add(p?).map_err(fault)?;
            }
            enc(&acc)?
        }
        Combine::Moments => {
            let mut m = Moments::default();
            for p in parts {
                m = m.merge(dec(p)?);
            }
            enc(&m)?
        }
        Combine::Truth => {
            let (mut any, mut all) = (false, true);
            for p in parts {
                let (a, b): (bool, bool) = dec(p)?;
                any |= a;
                all &= b;
            }
            enc(&(any, all))?
        }
        Combine::Top { k, largest, key, ty } => {
            let o = ops_of(ty)?;
            let mut all: Vec<Part> = Vec::new();
            for p in parts {
                all.push((o.decode)(p).map_err(fault)?);
            }
            let joined = (o.concat)(all).map_err(fault)?;
            let top = match key {
                Some(f) => adapter(f).map_err(fault)?.top(joined, *k as usize, *largest, cx)?,
                None => need(o.ord, "an order", o)?(joined, *k as usize, *largest).map_err(fault)?,
            };
            return Ok(Value::Typed((top, o)));
        }
        Combine::Fold(f) => adapter(f).map_err(fault)?.merge(parts, cx)?,
        Combine::Aggregate(f) => {
            let mut input = Vec::new();
            put_varint(&mut input, parts.len() as u64);
            for p in parts {
                input.extend_from_slice(p);
            }
            adapter(f).map_err(fault)?.aggregate(&input, cx)?
        }
        Combine::Keyed { combine: f, finish } => {
            let f = adapter(f).map_err(fault)?;
            let mut accs: Ordered<'_, Vec<&[u8]>> = Ordered::new();
            for p in parts {
                for record in pairs(p) {
                    let (k, a) = record.map_err(fault)?;
                    accs.entry(k, Vec::new).1.push(a);
                }
            }
            let mut out = Vec::new();
            if *finish {
                put_varint(&mut out, accs.entries.len() as u64);
            }
            for (k, a) in accs.entries {
                let merged = if a.len() == 1 { a[0].to_vec() } else { f.merge(&a, cx)? };
                if *finish {
                    out.extend_from_slice(k);
                    out.extend_from_slice(&merged);
                } else {
                    put_frame(&mut out, k);
                    put_frame(&mut out, &merged);
                }
            }
            out
        }
        Combine::Frequencies { finish } => {
            let mut counts: Ordered<'_, u64> = Ordered::new();
            for p in parts {
                let mut rest = *p;
                while !rest.is_empty() {
                    let (r, after) = get_frame(rest).map_err(fault)?;
                    let (n, after) = get_varint(after).map_err(fault)?;
                    rest = after;
                    *counts.entry(r, || 0).1 += n;
                }
            }
            let mut out = Vec::new();
            if *finish {
                put_varint(&mut out, counts.entries.len() as u64);
            }
            for (r, n) in counts.entries {
                if *finish {
                    out.extend_from_slice(r);
                } else {
                    put_frame(&mut out, r);
                }
                put_varint(&mut out, n);
            }
            out
        }
        Combine::Distinct { finish, ty } => {
            let mut seen: Ordered<'_, ()> = Ordered::new();
            for p in parts {
                for r in frames(p) {
                    seen.entry(r.map_err(fault)?, || ());
                }
            }
            let mut out = Vec::new();
            if *finish {
                // The postcard `Vec<T>`, in the task encoding of its type.
                put_varint(&mut out, seen.entries.len() as u64);
                for (r, ()) in seen.entries {
                    out.extend_from_slice(r);
                }
                let o = ops_of(ty)?;
                return Ok(Value::Typed(((o.from_postcard)(&out).map_err(fault)?, o)));
            }
            for (r, ()) in seen.entries {
                put_frame(&mut out, r);
            }
            out
        }
    }))
}

/// The fused word count of a range (see [`crate::words`]): what `Words` then
/// `Frequencies` would give. The worker thread keeps the read buffer for its next
/// range, so that each range costs no fresh pages.
fn word_frequencies(r: &text::TextRange) -> Result<Vec<u8>, Fault> {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with_borrow_mut(|buf| {
        let offset = text::read_range_into(r, buf).map_err(fault)?;
        let text = text::text_of(r, buf, offset).map_err(fault)?;
        let mut counts = crate::words::WordCounts::new();
        counts.count(&text);
        let out = counts.frames();
        drop(text);
        if buf.capacity() > 256 << 20 {
            *buf = Vec::new();
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_buckets_and_plans_are_errors_not_panics() {
        assert!(bucket_of(&[0xff; 20], 0).is_err());
        let mut out = Vec::new();
        put_varint(&mut out, 2);
        put_varint(&mut out, u64::MAX);
        put_varint(&mut out, 3);
        assert!(bucket_of(&out, 1).is_err());
        assert!(run(&[b"\xff\xff\xff"]).is_err());
        assert!(run(&[]).is_err());
    }
}
