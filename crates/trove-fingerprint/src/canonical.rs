//! The canonical argument encoding (format version 1).
//!
//! A recipe's arguments become part of a cache key, so their encoding must be the same on
//! every platform, in every process and in every future release that keeps the version
//! number. `std::hash::Hash` and `Debug` promise none of that, so serde drives this small
//! serializer instead:
//!
//! - every value starts with a one-byte tag naming its serde data-model type, so `1u8` and
//!   `1u16`, `None` and `()`, a string and its bytes never collide;
//! - integers are little-endian at their declared width, lengths are `u64` little-endian;
//! - floats are their IEEE bits, with every NaN folded into one (`-0.0` and `0.0` stay
//!   distinct: they are different arguments to most computations);
//! - struct and variant names and field names are written, so renaming a field gives a new
//!   key rather than silently reusing an old object;
//! - map entries are sorted by their encoded key, so a `HashMap` encodes like a `BTreeMap`.

use serde::ser::{self, Serialize};

/// Version of the canonical encoding; bumping it changes every key.
pub const ENCODING_VERSION: u8 = 1;

/// Why arguments could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode arguments canonically: {0}")]
pub struct EncodeError(String);

impl ser::Error for EncodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        EncodeError(msg.to_string())
    }
}

/// Encodes `value` canonically (see the module documentation for the rules).
///
/// ```
/// use std::collections::{BTreeMap, HashMap};
/// let a: HashMap<&str, u32> = [("x", 1), ("y", 2)].into_iter().collect();
/// let b: BTreeMap<&str, u32> = [("y", 2), ("x", 1)].into_iter().collect();
/// assert_eq!(trove_fingerprint::encode(&a).unwrap(), trove_fingerprint::encode(&b).unwrap());
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    out.push(ENCODING_VERSION);
    value.serialize(&mut Encoder { out: &mut out })?;
    Ok(out)
}

mod tag {
    pub(super) const BOOL: u8 = 1;
    pub(super) const I8: u8 = 2;
    pub(super) const I16: u8 = 3;
    pub(super) const I32: u8 = 4;
    pub(super) const I64: u8 = 5;
    pub(super) const I128: u8 = 6;
    pub(super) const U8: u8 = 7;
    pub(super) const U16: u8 = 8;
    pub(super) const U32: u8 = 9;
    pub(super) const U64: u8 = 10;
    pub(super) const U128: u8 = 11;
    pub(super) const F32: u8 = 12;
    pub(super) const F64: u8 = 13;
    pub(super) const CHAR: u8 = 14;
    pub(super) const STR: u8 = 15;
    pub(super) const BYTES: u8 = 16;
    pub(super) const NONE: u8 = 17;
    pub(super) const SOME: u8 = 18;
    pub(super) const UNIT: u8 = 19;
    pub(super) const UNIT_STRUCT: u8 = 20;
    pub(super) const UNIT_VARIANT: u8 = 21;
    pub(super) const NEWTYPE_STRUCT: u8 = 22;
    pub(super) const NEWTYPE_VARIANT: u8 = 23;
    pub(super) const SEQ: u8 = 24;
    pub(super) const TUPLE: u8 = 25;
    pub(super) const TUPLE_STRUCT: u8 = 26;
    pub(super) const TUPLE_VARIANT: u8 = 27;
    pub(super) const MAP: u8 = 28;
    pub(super) const STRUCT: u8 = 29;
    pub(super) const STRUCT_VARIANT: u8 = 30;
    pub(super) const SKIPPED: u8 = 31;
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
}

impl Encoder<'_> {
    fn len(&mut self, n: usize) {
        self.out.extend_from_slice(&(n as u64).to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.out.extend_from_slice(s.as_bytes());
    }
    fn tagged(&mut self, tag: u8, bytes: &[u8]) {
        self.out.push(tag);
        self.out.extend_from_slice(bytes);
    }
}

/// Collects a sequence whose length may be unknown up front; the count is written at the end.
struct Seq<'a, 'b> {
    enc: &'b mut Encoder<'a>,
    count_at: usize,
    count: u64,
}

impl Seq<'_, '_> {
    fn finish(self) {
        self.enc.out[self.count_at..self.count_at + 8].copy_from_slice(&self.count.to_le_bytes());
    }
}

/// Map entries are encoded separately and sorted before they are written.
struct Map<'a, 'b> {
    enc: &'b mut Encoder<'a>,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    pending_key: Option<Vec<u8>>,
}

fn encode_part<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut buf = Vec::new();
    value.serialize(&mut Encoder { out: &mut buf })?;
    Ok(buf)
}

impl<'a, 'b> ser::Serializer for &'b mut Encoder<'a> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Seq<'a, 'b>;
    type SerializeTuple = Seq<'a, 'b>;
    type SerializeTupleStruct = Seq<'a, 'b>;
    type SerializeTupleVariant = Seq<'a, 'b>;
    type SerializeMap = Map<'a, 'b>;
    type SerializeStruct = Seq<'a, 'b>;
    type SerializeStructVariant = Seq<'a, 'b>;

    fn serialize_bool(self, v: bool) -> Result<(), EncodeError> {
        self.tagged(tag::BOOL, &[v as u8]);
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), EncodeError> {
        self.tagged(tag::I8, &v.to_le_bytes());
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), EncodeError> {
        self.tagged(tag::I16, &v.to_le_bytes());
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), EncodeError> {
        self.tagged(tag::I32, &v.to_le_bytes());
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), EncodeError> {
        self.tagged(tag::I64, &v.to_le_bytes());
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), EncodeError> {
        self.tagged(tag::I128, &v.to_le_bytes());
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), EncodeError> {
        self.tagged(tag::U8, &v.to_le_bytes());
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), EncodeError> {
        self.tagged(tag::U16, &v.to_le_bytes());
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), EncodeError> {
        self.tagged(tag::U32, &v.to_le_bytes());
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), EncodeError> {
        self.tagged(tag::U64, &v.to_le_bytes());
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), EncodeError> {
        self.tagged(tag::U128, &v.to_le_bytes());
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), EncodeError> {
        let bits = if v.is_nan() {
            f32::NAN.to_bits()
        } else {
            v.to_bits()
        };
        self.tagged(tag::F32, &bits.to_le_bytes());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), EncodeError> {
        let bits = if v.is_nan() {
            f64::NAN.to_bits()
        } else {
            v.to_bits()
        };
        self.tagged(tag::F64, &bits.to_le_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), EncodeError> {
        self.tagged(tag::CHAR, &(v as u32).to_le_bytes());
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), EncodeError> {
        self.out.push(tag::STR);
        self.str(v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), EncodeError> {
        self.out.push(tag::BYTES);
        self.len(v.len());
        self.out.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), EncodeError> {
        self.out.push(tag::NONE);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), EncodeError> {
        self.out.push(tag::SOME);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), EncodeError> {
        self.out.push(tag::UNIT);
        Ok(())
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<(), EncodeError> {
        self.out.push(tag::UNIT_STRUCT);
        self.str(name);
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), EncodeError> {
        self.out.push(tag::UNIT_VARIANT);
        self.str(name);
        self.str(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.out.push(tag::NEWTYPE_STRUCT);
        self.str(name);
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.out.push(tag::NEWTYPE_VARIANT);
        self.str(name);
        self.str(variant);
        value.serialize(self)
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Seq<'a, 'b>, EncodeError> {
        Ok(start_seq(self, tag::SEQ, &[]))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Seq<'a, 'b>, EncodeError> {
        Ok(start_seq(self, tag::TUPLE, &[]))
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> Result<Seq<'a, 'b>, EncodeError> {
        Ok(start_seq(self, tag::TUPLE_STRUCT, &[name]))
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Seq<'a, 'b>, EncodeError> {
        Ok(start_seq(self, tag::TUPLE_VARIANT, &[name, variant]))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Map<'a, 'b>, EncodeError> {
        Ok(Map {
            enc: self,
            entries: Vec::new(),
            pending_key: None,
        })
    }
    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Seq<'a, 'b>, EncodeError> {
        Ok(start_seq(self, tag::STRUCT, &[name]))
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Seq<'a, 'b>, EncodeError> {
        Ok(start_seq(self, tag::STRUCT_VARIANT, &[name, variant]))
    }
    fn is_human_readable(&self) -> bool {
        // Types such as `PathBuf` and `IpAddr` pick their portable string form.
        true
    }
}

fn start_seq<'a, 'b>(enc: &'b mut Encoder<'a>, tag: u8, names: &[&str]) -> Seq<'a, 'b> {
    enc.out.push(tag);
    for name in names {
        enc.str(name);
    }
    let count_at = enc.out.len();
    enc.out.extend_from_slice(&0u64.to_le_bytes());
    Seq {
        enc,
        count_at,
        count: 0,
    }
}

impl Seq<'_, '_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.count += 1;
        value.serialize(&mut *self.enc)
    }
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), EncodeError> {
        self.count += 1;
        self.enc.str(key);
        value.serialize(&mut *self.enc)
    }
}

impl ser::SerializeSeq for Seq<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish();
        Ok(())
    }
}

impl ser::SerializeTuple for Seq<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish();
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Seq<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish();
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Seq<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish();
        Ok(())
    }
}

impl ser::SerializeStruct for Seq<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.field(key, value)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), EncodeError> {
        // A skipped field still shapes the key: an object built while a field was skipped
        // is not the object built while it was present.
        self.count += 1;
        self.enc.str(key);
        self.enc.out.push(tag::SKIPPED);
        Ok(())
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish();
        Ok(())
    }
}

impl ser::SerializeStructVariant for Seq<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish();
        Ok(())
    }
}

impl ser::SerializeMap for Map<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), EncodeError> {
        self.pending_key = Some(encode_part(key)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        let key = self
            .pending_key
            .take()
            .ok_or_else(|| EncodeError("map value without a key".into()))?;
        self.entries.push((key, encode_part(value)?));
        Ok(())
    }
    fn end(mut self) -> Result<(), EncodeError> {
        self.entries.sort();
        if self.entries.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(EncodeError("map has two equal keys".into()));
        }
        self.enc.out.push(tag::MAP);
        self.enc.len(self.entries.len());
        for (k, v) in &self.entries {
            self.enc.out.extend_from_slice(k);
            self.enc.out.extend_from_slice(v);
        }
        Ok(())
    }
}
