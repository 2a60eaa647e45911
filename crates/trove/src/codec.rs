//! Object encoding: postcard through serde, or the object's own bytes for a `Vec<u8>`, a
//! [`Bytes`] or a file-backed [`Blob`].
//!
//! The codec id is stored with every variant; an unknown id is a miss. A `Vec<u8>` and a
//! `Blob` share the id `RAW`: on disk both are the blob file holding exactly the object's
//! bytes, so the recipe's output type only decides how a load hands them out (read whole,
//! or opened and verified by streaming). Stores written before `Blob` existed keep
//! serving their command objects, and processes of either kind share a store.

use std::any::{Any, TypeId};
use std::borrow::Cow;

use serde::Serialize;
use serde::de::DeserializeOwned;
use trove_fingerprint::Digest;
use trove_store::{Record, Store};

use crate::bytes::{self, PrivateHead};
use crate::{Blob, Bytes};

/// postcard 1.x of the object.
pub(crate) const POSTCARD: u8 = 1;
/// The object's own bytes: a `Vec<u8>` in memory, or a [`Blob`] (a file).
pub(crate) const RAW: u8 = 2;

/// Whether this trove knows how to load objects stored with `codec`. An unknown id was
/// written by another trove: its variant is a miss, never corruption.
pub(crate) fn known(codec: u8) -> bool {
    matches!(codec, POSTCARD | RAW)
}

/// What a [`Blob`] weighs in the memory tier. It is not resident bytes (its content stays
/// in the file and the page cache), but each one holds a file descriptor open: this weight
/// keeps the default 1 GiB tier to 256 open blobs, well under the usual limit of 1024
/// descriptors a process.
pub(crate) const BLOB_WEIGHT: u64 = 4 << 20;

/// An encoded object, borrowed from it when it can be.
pub(crate) enum Encoded<'a> {
    /// postcard bytes, or the bytes of a `Vec<u8>` (borrowed, not copied).
    Bytes(Cow<'a, [u8]>, u8),
    /// A file-backed object: already hashed, stored by moving its file.
    File(&'a Blob),
}

impl Encoded<'_> {
    pub(crate) fn codec(&self) -> u8 {
        match self {
            Encoded::Bytes(_, codec) => *codec,
            Encoded::File(_) => RAW,
        }
    }

    /// blake3 of the encoding: the blob's name. A `Blob` was hashed when it was written.
    pub(crate) fn digest(&self) -> Digest {
        match self {
            Encoded::Bytes(bytes, _) => Digest::of_bytes(bytes),
            Encoded::File(blob) => blob.digest(),
        }
    }

    /// What the object weighs in the memory tier.
    pub(crate) fn weight(&self) -> u64 {
        match self {
            Encoded::Bytes(bytes, _) => bytes.len() as u64,
            Encoded::File(_) => BLOB_WEIGHT,
        }
    }

    /// The postcard bytes, worth keeping for the publish; `None` when the object is its
    /// own encoding (a `Vec<u8>` or a `Blob`), which the publish takes from the object.
    pub(crate) fn into_owned(self) -> Option<Vec<u8>> {
        match self {
            Encoded::Bytes(Cow::Owned(v), _) => Some(v),
            Encoded::Bytes(Cow::Borrowed(_), _) | Encoded::File(_) => None,
        }
    }
}

/// Encodes an object; a `Vec<u8>` is borrowed, a `Blob` is its file.
pub(crate) fn encode<T: Serialize + 'static>(value: &T) -> Result<Encoded<'_>, String> {
    let any = value as &dyn Any;
    if let Some(bytes) = any.downcast_ref::<Vec<u8>>() {
        return Ok(Encoded::Bytes(Cow::Borrowed(bytes.as_slice()), RAW));
    }
    if let Some(bytes) = any.downcast_ref::<Bytes>() {
        return Ok(Encoded::Bytes(Cow::Borrowed(&bytes[..]), RAW));
    }
    if let Some(blob) = any.downcast_ref::<Blob>() {
        return Ok(Encoded::File(blob));
    }
    postcard::to_allocvec(value)
        .map(|v| Encoded::Bytes(Cow::Owned(v), POSTCARD))
        .map_err(|e| e.to_string())
}

/// Loads a stored object, verifying its blob against its blake3 before anything decodes
/// it; returns the object and its weight in the memory tier. A `Blob` is opened and
/// verified by streaming, never read whole; a large [`Bytes`] object of a recipe with a
/// private head is served as a verified map of its blob (`bytes::load_mapped`). Any error
/// means the variant cannot be served (the caller quarantines it).
pub(crate) fn load<T: DeserializeOwned + 'static>(
    store: &Store,
    rec: &Record,
    head: Option<PrivateHead>,
) -> Result<(T, u64), String> {
    let (blob, codec) = (&rec.blob, rec.codec);
    if codec == RAW
        && let Some(head) = head
        && TypeId::of::<T>() == TypeId::of::<Bytes>()
        && let Some(mapped) = bytes::load_mapped(store, rec, head)?
    {
        let object: Box<dyn Any> = Box::new(mapped);
        let object = object
            .downcast::<T>()
            .map_err(|_| "a mapped blob for a recipe whose output is not Bytes".to_owned())?;
        return Ok((*object, blob.len));
    }
    if codec == RAW && TypeId::of::<T>() == TypeId::of::<Blob>() {
        let file = store.open_blob(blob).map_err(|e| e.to_string())?;
        let object: Box<dyn Any> = Box::new(Blob::verified(file, *blob));
        let object = object
            .downcast::<T>()
            .map_err(|_| "a blob for a recipe whose output is not Blob".to_owned())?;
        return Ok((*object, BLOB_WEIGHT));
    }
    // A small blob comes from the index's copy read with the record, verified as a file is.
    let bytes = store.read_blob_of(rec).map_err(|e| e.to_string())?;
    let size = bytes.len() as u64;
    Ok((decode(bytes, codec)?, size))
}

/// Decodes an object that was verified against its digest; a raw blob becomes the
/// `Vec<u8>` (or [`Bytes`]) without a copy.
pub(crate) fn decode<T: DeserializeOwned + 'static>(
    bytes: Vec<u8>,
    codec: u8,
) -> Result<T, String> {
    match codec {
        RAW => {
            let boxed: Box<dyn Any> = if TypeId::of::<T>() == TypeId::of::<Bytes>() {
                Box::new(Bytes::from(bytes))
            } else {
                Box::new(bytes)
            };
            boxed
                .downcast::<T>()
                .map(|b| *b)
                .map_err(|_| "a raw blob for a recipe whose output is not Vec<u8>".to_owned())
        }
        POSTCARD => postcard::from_bytes(&bytes).map_err(|e| format!("does not decode: {e}")),
        other => Err(format!("unknown codec {other}")),
    }
}
