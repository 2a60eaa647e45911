//! Object encoding: postcard through serde, or the raw bytes of a `Vec<u8>` object.
//!
//! The codec id is stored with every variant; an unknown id is a miss.

use std::any::Any;
use std::borrow::Cow;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// postcard 1.x of the object.
pub(crate) const POSTCARD: u8 = 1;
/// The object is a `Vec<u8>`, stored as its bytes.
pub(crate) const RAW: u8 = 2;

/// Encodes an object; a `Vec<u8>` is borrowed, not copied.
pub(crate) fn encode<T: Serialize + 'static>(value: &T) -> Result<(Cow<'_, [u8]>, u8), String> {
    if let Some(bytes) = (value as &dyn Any).downcast_ref::<Vec<u8>>() {
        return Ok((Cow::Borrowed(bytes.as_slice()), RAW));
    }
    postcard::to_allocvec(value)
        .map(|v| (Cow::Owned(v), POSTCARD))
        .map_err(|e| e.to_string())
}

/// Decodes an object that was verified against its digest; a raw blob becomes the
/// `Vec<u8>` without a copy.
pub(crate) fn decode<T: DeserializeOwned + 'static>(
    bytes: Vec<u8>,
    codec: u8,
) -> Result<T, String> {
    match codec {
        RAW => {
            let boxed: Box<dyn Any> = Box::new(bytes);
            boxed
                .downcast::<T>()
                .map(|b| *b)
                .map_err(|_| "a raw blob for a recipe whose output is not Vec<u8>".to_owned())
        }
        POSTCARD => postcard::from_bytes(&bytes).map_err(|e| format!("does not decode: {e}")),
        other => Err(format!("unknown codec {other}")),
    }
}
