//! The compact stored form of a trace (formats 3 to 6): file paths interned.
//!
//! A traced compile names hundreds of paths that share a few dozen directories and
//! repeat the same file names (`stdio.h` looked up in every include directory). Format 2
//! wrote every path whole; format 3 writes each distinct directory and each distinct
//! final name once, and a file input as two indices into those tables. A path is split at
//! its last `/` (`/usr/include/stdio.h` is `/usr/include` and `stdio.h`; `/usr` is `""`
//! and `usr`) and joined back with one `/`, which gives back exactly the bytes written for
//! every path holding a `/`; a file input whose path has none (never recorded by a build,
//! possible in a hand-made trace) is written as format 2 wrote it. Format 4 adds one kind
//! of wire input: a group of absences ([`Input::Absences`]), its directory an index into
//! the directories and each member's name below it an index into the names. Every other
//! input is written as in format 2. Format 5 is format 4's layout (its rows hold no
//! directory input a present file implies, [`crate::absence::leave_out_implied_dirs`]).
//! Format 6 writes a group's names as one string, as [`Input::Absences`] holds them
//! ([`WireInput::Members`]): a hit copies it whole and checks it in one vectorized pass
//! ([`crate::absence::plain_members`]) instead of joining it name by name.
//! Decoding gives the same [`Trace`] value, so nothing after [`Trace::decode`] knows
//! which format a row was in.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use trove_fingerprint::{Digest, FileState};

use crate::absence::{DirStamp, members};
use crate::trace::{Input, Role, Trace};

mod reader;

pub(crate) use reader::decode;

/// A trace as format 3 stores it.
#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    /// Every directory part of an interned path, each once.
    #[serde(borrow)]
    dirs: Vec<&'a str>,
    /// Every final name of an interned path, each once.
    #[serde(borrow)]
    names: Vec<&'a str>,
    #[serde(borrow)]
    inputs: Vec<WireInput<'a>>,
    counters: Cow<'a, BTreeMap<String, u64>>,
    definition: Cow<'a, BTreeMap<String, Digest>>,
}

#[derive(Serialize, Deserialize)]
enum WireInput<'a> {
    /// A file input at `dirs[dir] + "/" + names[name]`.
    File {
        role: Role,
        dir: u32,
        name: u32,
        state: Cow<'a, FileState>,
    },
    /// Any other input, as format 2 writes it.
    Other(Cow<'a, Input>),
    /// A group of absences (formats 4 and 5): its directory `dirs[dir]`, each member's
    /// path below it `names[m]`.
    Absences {
        role: Role,
        dir: u32,
        stamp: Cow<'a, DirStamp>,
        names: Vec<u32>,
    },
    /// A group of absences (format 6): its directory `dirs[dir]`, its members' paths
    /// below it as [`Input::Absences`] holds them (each followed by a NUL), one string.
    Members {
        role: Role,
        dir: u32,
        stamp: Cow<'a, DirStamp>,
        #[serde(borrow)]
        names: Cow<'a, str>,
    },
}

/// Interns strings in order of first appearance.
#[derive(Default)]
struct Table<'a> {
    order: Vec<&'a str>,
    index: HashMap<&'a str, u32>,
}

impl<'a> Table<'a> {
    fn intern(&mut self, s: &'a str) -> Option<u32> {
        if let Some(&i) = self.index.get(s) {
            return Some(i);
        }
        let i = u32::try_from(self.order.len()).ok()?;
        self.order.push(s);
        self.index.insert(s, i);
        Some(i)
    }
}

/// The format byte `format` (3 and up) followed by the bytes of `trace` in that format:
/// a group's names as one string from format 6, as indices into the names before.
pub(crate) fn encode(trace: &Trace, format: u8) -> Vec<u8> {
    let out = vec![format];
    let mut dirs = Table::default();
    let mut names = Table::default();
    let inputs = trace
        .inputs
        .iter()
        .map(|input| {
            if let Input::File { role, path, state } = input
                && let Some((dir, name)) = path.rsplit_once('/')
                && let (Some(dir), Some(name)) = (dirs.intern(dir), names.intern(name))
            {
                return WireInput::File {
                    role: *role,
                    dir,
                    name,
                    state: Cow::Borrowed(state),
                };
            }
            // A group is always written as one (a hand-made one whose names would not
            // decode is refused when read, like any damaged trace): its names as one
            // string from format 6, as indices into the names before.
            if let Input::Absences {
                role,
                dir,
                stamp,
                names: joined,
            } = input
                && let Some(dir) = dirs.intern(dir)
            {
                let (role, stamp) = (*role, Cow::Borrowed(stamp));
                if format >= crate::trace::TRACE_FORMAT {
                    let names = Cow::Borrowed(joined.as_str());
                    return WireInput::Members {
                        role,
                        dir,
                        stamp,
                        names,
                    };
                }
                if let Some(members) = members(joined)
                    .map(|n| names.intern(n))
                    .collect::<Option<Vec<u32>>>()
                {
                    return WireInput::Absences {
                        role,
                        dir,
                        stamp,
                        names: members,
                    };
                }
            }
            WireInput::Other(Cow::Borrowed(input))
        })
        .collect();
    let wire = Wire {
        dirs: dirs.order,
        names: names.order,
        inputs,
        counters: Cow::Borrowed(&trace.counters),
        definition: Cow::Borrowed(&trace.definition),
    };
    // Serializing plain data into a Vec cannot fail.
    postcard::to_extend(&wire, out).unwrap_or_default()
}

/// The trace format 3 `bytes` hold (without the format byte); `None` when they do not
/// decode, leave bytes over, or name a table entry that is not there.
///
/// The reference decoder, through serde: hits use [`reader::decode`], which reads the
/// same layout by hand and is checked (tests, fuzzing) to give exactly this.
/// Decoded field by field (postcard writes a struct as its fields in order), so each
/// file input becomes an [`Input`] as it is read, with no intermediate list.
pub(crate) fn decode_serde(bytes: &[u8]) -> Option<Trace> {
    use serde::de::DeserializeSeed;
    let mut de = postcard::Deserializer::from_bytes(bytes);
    let dirs: Vec<&str> = Deserialize::deserialize(&mut de).ok()?;
    let names: Vec<&str> = Deserialize::deserialize(&mut de).ok()?;
    let inputs = Inputs {
        dirs: &dirs,
        names: &names,
    }
    .deserialize(&mut de)
    .ok()?;
    let counters = Deserialize::deserialize(&mut de).ok()?;
    let definition = Deserialize::deserialize(&mut de).ok()?;
    if !de.finalize().ok()?.is_empty() {
        return None;
    }
    Some(Trace {
        inputs,
        counters,
        definition,
    })
}

/// The `inputs` field of a [`Wire`], read against its tables.
struct Inputs<'t, 'a> {
    dirs: &'t [&'a str],
    names: &'t [&'a str],
}

impl<'t, 'a> Inputs<'t, 'a> {
    fn input(&self, wire: WireInput<'_>) -> Option<Input> {
        Some(match wire {
            WireInput::File {
                role,
                dir,
                name,
                state,
            } => {
                let dir = self.dirs.get(dir as usize)?;
                let name = self.names.get(name as usize)?;
                let mut path = String::with_capacity(dir.len() + 1 + name.len());
                path.push_str(dir);
                path.push('/');
                path.push_str(name);
                Input::File {
                    role,
                    path,
                    state: state.into_owned(),
                }
            }
            // A group travels only as its own wire input, its names checked below.
            WireInput::Other(input) => match input.into_owned() {
                Input::Absences { .. } => return None,
                input => input,
            },
            WireInput::Absences {
                role,
                dir,
                stamp,
                names,
            } => self.group(role, dir, stamp, join_names(self.names, &names)?)?,
            WireInput::Members {
                role,
                dir,
                stamp,
                names,
            } => self.group(role, dir, stamp, joined_members(names)?)?,
        })
    }

    /// A group of absences under `dirs[dir]` whose names were read (and checked).
    fn group(
        &self,
        role: Role,
        dir: u32,
        stamp: Cow<'_, DirStamp>,
        names: String,
    ) -> Option<Input> {
        Some(Input::Absences {
            role,
            dir: (*self.dirs.get(dir as usize)?).to_owned(),
            stamp: stamp.into_owned(),
            names,
        })
    }
}

/// The members `names[i]` of a group of absences, each followed by a NUL, in one string;
/// `None` when an index is not in the table or a member is not a plain relative path
/// ([`member_name`]).
pub(crate) fn join_names(table: &[&str], members: &[u32]) -> Option<String> {
    let mut len = 0;
    for &m in members {
        let name = table.get(m as usize)?;
        if !member_name(name) {
            return None;
        }
        len += name.len() + 1;
    }
    let mut out = String::with_capacity(len);
    for &m in members {
        crate::absence::push_member(&mut out, table[m as usize]);
    }
    Some(out)
}

/// A group's names read as one string (format 6), each member followed by a NUL;
/// `None` when a member is not a plain relative path ([`member_name`]) or the last is not
/// closed. The reference check, member by member: the hand reader uses
/// [`crate::absence::plain_members`], which must (and is fuzzed to) answer the same.
fn joined_members(names: Cow<'_, str>) -> Option<String> {
    let closed = names.is_empty() || names.ends_with('\0');
    (closed && crate::absence::members(&names).all(member_name)).then(|| names.into_owned())
}

/// Whether `name` may be a member of a group of absences: one or more names joined by
/// single `/`s, none of them `.` or `..`, holding no NUL and no replacement character
/// (put in by a lossy conversion). Only such names are grouped when a build records
/// them; a trace holding another is refused as damaged (the variant is a miss), so a hit
/// trusts every decoded group's names below its directory without looking at them.
pub(crate) fn member_name(name: &str) -> bool {
    crate::absence::plain_names(name, true)
}

impl<'de, 't, 'a> serde::de::DeserializeSeed<'de> for Inputs<'t, 'a> {
    type Value = Vec<Input>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<Input>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, 't, 'a> serde::de::Visitor<'de> for Inputs<'t, 'a> {
    type Value = Vec<Input>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a trace's inputs")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Input>, A::Error> {
        // The length prefix is not trusted for more than a modest preallocation.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(wire) = seq.next_element::<WireInput<'_>>()? {
            let input = self.input(wire).ok_or_else(|| {
                <A::Error as serde::de::Error>::custom("a path names a missing table entry")
            })?;
            out.push(input);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
