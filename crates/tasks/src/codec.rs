//! How task values (arguments, results, scattered data) become bytes.
//!
//! Most values are encoded with postcard. Bulk data is not: a `Vec` of plain numbers
//! (`u8` … `u128`, `i8` … `i128`, `f32`, `f64`) or a [`bytes::Bytes`] is sent as its
//! bytes, with no element-wise encoding, and a `Vec<u8>` (or a uniquely held `Bytes`)
//! moves into the object store without being copied at all. Both ends see the same
//! static type (a task's parameter or result type, a future's type), so they agree on
//! the representation without a tag on the wire.
//!
//! For vectors of other [`bytemuck::Pod`] types, [`PodVec`] gives the same treatment
//! through serde.

use std::any::Any;
use std::sync::Arc;

use bytemuck::Pod;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Runs `$body` with `$t` bound to each plain number type that has a raw representation.
macro_rules! for_each_pod {
    ($mac:ident) => {
        $mac!(u8);
        $mac!(i8);
        $mac!(u16);
        $mac!(i16);
        $mac!(u32);
        $mac!(i32);
        $mac!(u64);
        $mac!(i64);
        $mac!(u128);
        $mac!(i128);
        $mac!(f32);
        $mac!(f64);
    };
}

/// Encodes `value`, moving its buffer when it is a `Vec<u8>` or a unique `Bytes`.
pub(crate) fn encode_owned<T: Serialize + 'static>(value: T) -> Result<Vec<u8>, String> {
    let mut slot = Some(value);
    let any = &mut slot as &mut dyn Any;
    if let Some(v) = any.downcast_mut::<Option<Vec<u8>>>() {
        return Ok(v.take().expect("set above"));
    }
    if let Some(b) = any.downcast_mut::<Option<bytes::Bytes>>() {
        return Ok(Vec::from(b.take().expect("set above")));
    }
    encode(slot.as_ref().expect("set above"))
}

/// Encodes `value` (raw bytes for vectors of plain numbers, postcard otherwise).
pub(crate) fn encode<T: Serialize + 'static>(value: &T) -> Result<Vec<u8>, String> {
    let any = value as &dyn Any;
    macro_rules! raw {
        ($t:ty) => {
            if let Some(v) = any.downcast_ref::<Vec<$t>>() {
                return Ok(bytemuck::cast_slice::<$t, u8>(v).to_vec());
            }
        };
    }
    for_each_pod!(raw);
    if let Some(b) = any.downcast_ref::<bytes::Bytes>() {
        return Ok(b.to_vec());
    }
    postcard::to_stdvec(value).map_err(|e| format!("a value of type `{}` could not be serialized: {e}", std::any::type_name::<T>()))
}

/// Decodes a value encoded by [`encode`] for the same type.
pub(crate) fn decode<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<T, String> {
    if let Some(v) = decode_raw::<T>(bytes) {
        return v;
    }
    postcard::from_bytes(bytes).map_err(|e| format!("it could not be decoded as `{}`: {e}", std::any::type_name::<T>()))
}

/// Like [`decode`], taking the buffer without a copy when the value is a `Vec<u8>` or
/// `Bytes` and nobody else holds it.
pub(crate) fn decode_shared<T: DeserializeOwned + 'static>(bytes: Arc<Vec<u8>>) -> Result<T, String> {
    let wants_bytes = std::any::TypeId::of::<T>() == std::any::TypeId::of::<Vec<u8>>()
        || std::any::TypeId::of::<T>() == std::any::TypeId::of::<bytes::Bytes>();
    if wants_bytes {
        let owned = Arc::try_unwrap(bytes).unwrap_or_else(|shared| (*shared).clone());
        let boxed: Box<dyn Any> = if std::any::TypeId::of::<T>() == std::any::TypeId::of::<Vec<u8>>() {
            Box::new(owned)
        } else {
            Box::new(bytes::Bytes::from(owned))
        };
        return Ok(*boxed.downcast::<T>().expect("type checked above"));
    }
    decode(&bytes)
}

fn decode_raw<T: 'static>(bytes: &[u8]) -> Option<Result<T, String>> {
    fn boxed<T: 'static>(v: impl Any) -> Result<T, String> {
        let b: Box<dyn Any> = Box::new(v);
        Ok(*b.downcast::<T>().expect("type checked by the caller"))
    }
    let id = std::any::TypeId::of::<T>();
    macro_rules! raw {
        ($t:ty) => {
            if id == std::any::TypeId::of::<Vec<$t>>() {
                return Some(pod_vec::<$t>(bytes).and_then(boxed::<T>));
            }
        };
    }
    for_each_pod!(raw);
    if id == std::any::TypeId::of::<bytes::Bytes>() {
        return Some(boxed::<T>(bytes::Bytes::copy_from_slice(bytes)));
    }
    None
}

/// The values of type `P` whose bytes these are.
fn pod_vec<P: Pod>(bytes: &[u8]) -> Result<Vec<P>, String> {
    let size = std::mem::size_of::<P>();
    if bytes.len() % size != 0 {
        return Err(format!(
            "{} bytes are not a whole number of `{}` values ({size} bytes each)",
            bytes.len(),
            std::any::type_name::<P>()
        ));
    }
    Ok(bytemuck::pod_collect_to_vec::<u8, P>(bytes))
}

/// A vector of any [`Pod`] type that serializes as its bytes: for bulk data of your own
/// plain types (`#[derive(Pod, Zeroable)] #[repr(C)] struct Point { x: f32, y: f32 }`),
/// which serde would otherwise encode field by field.
///
/// Vectors of the built-in number types need no wrapper: chorus sends them as bytes.
///
/// ```
/// use chorus_tasks::PodVec;
/// let v = PodVec(vec![[1.0f32, 2.0], [3.0, 4.0]]);
/// let bytes = postcard::to_stdvec(&v).unwrap();
/// assert_eq!(bytes.len(), 1 + 16, "a length, then the bytes");
/// let back: PodVec<[f32; 2]> = postcard::from_bytes(&bytes).unwrap();
/// assert_eq!(back, v);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodVec<T: Pod>(pub Vec<T>);

impl<T: Pod> Serialize for PodVec<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytemuck::cast_slice(&self.0))
    }
}

impl<'de, T: Pod> Deserialize<'de> for PodVec<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: std::borrow::Cow<'de, [u8]> = serde_bytes::deserialize(d)?;
        pod_vec::<T>(&bytes).map(PodVec).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Clone + 'static>(v: T) {
        let by_ref = encode(&v).unwrap();
        let owned = encode_owned(v.clone()).unwrap();
        assert_eq!(by_ref, owned);
        assert_eq!(decode::<T>(&by_ref).unwrap(), v);
        assert_eq!(decode_shared::<T>(Arc::new(owned)).unwrap(), v);
    }

    #[test]
    fn raw_and_postcard_values_round_trip() {
        round_trip(vec![1u8, 2, 3]);
        round_trip(vec![1.5f64, -2.0]);
        round_trip(vec![-7i64; 1000]);
        round_trip(vec![u128::MAX]);
        round_trip(bytes::Bytes::from_static(b"abc"));
        round_trip((vec![1u8], String::from("x")));
        round_trip(Vec::<f32>::new());
        assert_eq!(encode(&vec![1.0f64]).unwrap(), 1.0f64.to_le_bytes(), "no length prefix, no varints");
    }

    #[test]
    fn a_byte_vector_moves_without_a_copy() {
        let v = vec![9u8; 1 << 20];
        let ptr = v.as_ptr();
        let enc = encode_owned(v).unwrap();
        assert_eq!(enc.as_ptr(), ptr);
        let back: Vec<u8> = decode_shared(Arc::new(enc)).unwrap();
        assert_eq!(back.as_ptr(), ptr);
    }

    #[test]
    fn truncated_raw_values_are_errors() {
        let e = decode::<Vec<f64>>(&[0u8; 12]).unwrap_err();
        assert!(e.contains("not a whole number of `f64`"), "{e}");
        assert!(decode::<PodVec<[u16; 3]>>(&postcard::to_stdvec(&serde_bytes::Bytes::new(&[1, 2, 3])).unwrap()).is_err());
    }
}
