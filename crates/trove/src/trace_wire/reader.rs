//! The format 3 to 6 decoder a hit uses: the same bytes as the serde decoder in
//! `trace_wire.rs` (postcard's layout, read by hand), giving the same [`Trace`] or
//! refusing the same input.
//!
//! Why by hand: a hit decodes every input of its trace, and a traced compile has
//! hundreds (most of them absent paths of the include search). Through serde each file
//! input went through a borrowed wire value, a `Cow` and two moves of a 100-byte enum,
//! and its digest through 32 calls of a tuple visitor: about 150 ns an input, a fifth of
//! a traced hit. Here a file input is read straight into its [`Input`], and a group of
//! absences into one string of its members' names (format 6: the string as written,
//! checked in one pass; formats 4 and 5: joined from the names table, each distinct name
//! checked once per trace). The other inputs (a handful: environment variables, objects)
//! and the two maps at the end are still read by postcard, from where this reader stands.
//!
//! The layout read (postcard 1, `Wire`'s fields in order): every integer is a LEB128
//! varint (`i64` zigzag-encoded first; postcard accepts an over-long varint when its
//! last byte fits the type, and so does this reader), an enum's variant is a `u32`
//! varint, a sequence or string its length then its elements or bytes, a struct its
//! fields in order, a `[u8; 32]` 32 raw bytes. The equivalence is tested (including on
//! every truncation and on random bytes) and fuzzed (`fuzz/fuzz_targets/trace_decode.rs`
//! compares both decoders on every input).

use std::collections::BTreeMap;

use trove_fingerprint::{Digest, FileKind, FileState, Stat};

use crate::absence::DirStamp;
use crate::trace::{Input, Role, Trace};

/// A cursor over the bytes of a format 3 to 6 trace.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(taken)
    }

    /// A varint of at most `max` bytes whose last byte is at most `last` (postcard's
    /// rule for a type of that width).
    fn varint(&mut self, max: usize, last: u8) -> Option<u64> {
        let mut out = 0u64;
        for i in 0..max {
            let b = self.byte()?;
            out |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return (i != max - 1 || b <= last).then_some(out);
            }
        }
        None
    }

    fn u64(&mut self) -> Option<u64> {
        self.varint(10, 0x01)
    }

    fn u32(&mut self) -> Option<u32> {
        self.varint(5, 0x0F).map(|v| v as u32)
    }

    fn i64(&mut self) -> Option<i64> {
        let n = self.u64()?;
        Some(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.u64()?).ok()
    }

    /// A sequence of strings (the tables). A table is usually ASCII throughout, its
    /// length prefixes included (each under 128): then it is checked as one span rather
    /// than string by string.
    fn strs(&mut self) -> Option<Vec<&'a str>> {
        let n = self.len()?;
        let table = self.rest;
        let mut out = Vec::with_capacity(prealloc(n, self.rest.len()));
        for _ in 0..n {
            let len = self.len()?;
            out.push(self.bytes(len)?);
        }
        let table = &table[..table.len() - self.rest.len()];
        if table.is_ascii() {
            // SAFETY: every string is a run of the table's bytes, and ASCII is UTF-8.
            let ascii = |s: &'a [u8]| unsafe { std::str::from_utf8_unchecked(s) };
            Some(out.into_iter().map(ascii).collect())
        } else {
            out.into_iter()
                .map(|s| std::str::from_utf8(s).ok())
                .collect()
        }
    }

    fn kind(&mut self) -> Option<FileKind> {
        Some(match self.u32()? {
            0 => FileKind::File,
            1 => FileKind::Dir,
            2 => FileKind::Other,
            _ => return None,
        })
    }

    fn stat(&mut self) -> Option<Stat> {
        Some(Stat {
            dev: self.u64()?,
            ino: self.u64()?,
            len: self.u64()?,
            mtime_ns: self.i64()?,
            ctime_ns: self.i64()?,
            kind: self.kind()?,
        })
    }

    fn stamp(&mut self) -> Option<DirStamp> {
        Some(DirStamp {
            stat: self.stat()?,
            taken_ns: self.i64()?,
        })
    }

    fn role(&mut self) -> Option<Role> {
        Some(match self.u32()? {
            0 => Role::Data,
            1 => Role::Module,
            2 => Role::Source,
            _ => return None,
        })
    }

    fn state(&mut self) -> Option<FileState> {
        Some(match self.u32()? {
            0 => FileState::Absent,
            1 => {
                let stat = self.stat()?;
                let hash = Digest(self.bytes(32)?.try_into().ok()?);
                FileState::Present {
                    stat,
                    hash,
                    taken_ns: self.i64()?,
                }
            }
            2 => FileState::NotAFile { kind: self.kind()? },
            _ => return None,
        })
    }

    /// A value postcard decodes, read from where this reader stands.
    fn postcard<T: serde::de::DeserializeOwned>(&mut self) -> Option<T> {
        let (value, rest) = postcard::take_from_bytes(self.rest).ok()?;
        self.rest = rest;
        Some(value)
    }
}

/// How many elements to make room for when a sequence says it holds `n` and `left` bytes
/// follow: a length prefix is never trusted for more than a modest preallocation (each
/// element takes at least a byte, and a hostile row could say millions).
fn prealloc(n: usize, left: usize) -> usize {
    n.min(left).min(4096)
}

/// The trace format 3 to 6 `bytes` hold (without the format byte): exactly what
/// [`super::decode_serde`] gives for the same bytes.
pub(crate) fn decode(bytes: &[u8]) -> Option<Trace> {
    let mut r = Reader { rest: bytes };
    let dirs = r.strs()?;
    let names = r.strs()?;
    let n = r.len()?;
    let mut inputs = Vec::with_capacity(prealloc(n, r.rest.len()));
    // Which names were found plain as a group's members ([`super::member_name`]), made
    // at the first group.
    let mut plain: Option<Vec<bool>> = None;
    for _ in 0..n {
        let input = match r.u32()? {
            0 => {
                let role = r.role()?;
                let dir = dirs.get(r.u32()? as usize)?;
                let name = names.get(r.u32()? as usize)?;
                let state = r.state()?;
                let mut path = String::with_capacity(dir.len() + 1 + name.len());
                path.push_str(dir);
                path.push('/');
                path.push_str(name);
                Input::File { role, path, state }
            }
            // A group travels only as its own wire input (below).
            1 => match r.postcard::<Input>()? {
                Input::Absences { .. } => return None,
                input => input,
            },
            2 => {
                let role = r.role()?;
                let dir = (*dirs.get(r.u32()? as usize)?).to_owned();
                let stamp = r.stamp()?;
                // The members' names in one string, sized by a first pass over the
                // indices (each at least a byte, so `n` cannot make it loop for long)
                // that checks each name once per trace, however many groups name it.
                let n = r.len()?;
                let indices = r.rest;
                let mut len = 0usize;
                let plain = plain.get_or_insert_with(|| vec![false; names.len()]);
                for _ in 0..n {
                    let m = r.u32()? as usize;
                    let name = names.get(m)?;
                    if !plain[m] {
                        if !super::member_name(name) {
                            return None;
                        }
                        plain[m] = true;
                    }
                    len = len.checked_add(name.len() + 1)?;
                }
                let mut again = Reader { rest: indices };
                let mut joined = String::with_capacity(len);
                for _ in 0..n {
                    crate::absence::push_member(&mut joined, names[again.u32()? as usize]);
                }
                Input::Absences {
                    role,
                    dir,
                    stamp,
                    names: joined,
                }
            }
            // A group's names as one string (format 6): copied whole, checked in one pass.
            3 => {
                let role = r.role()?;
                let dir = (*dirs.get(r.u32()? as usize)?).to_owned();
                let stamp = r.stamp()?;
                let len = r.len()?;
                let names = std::str::from_utf8(r.bytes(len)?).ok()?;
                if !crate::absence::plain_members(names) {
                    return None;
                }
                Input::Absences {
                    role,
                    dir,
                    stamp,
                    names: names.to_owned(),
                }
            }
            _ => return None,
        };
        inputs.push(input);
    }
    let counters: BTreeMap<String, u64> = r.postcard()?;
    let definition: BTreeMap<String, Digest> = r.postcard()?;
    r.rest.is_empty().then_some(Trace {
        inputs,
        counters,
        definition,
    })
}
