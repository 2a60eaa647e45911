//! The stored trace's wire format: both decoders agree, every path and group decodes to
//! what was encoded, and damaged or older traces are refused or upgraded.

use super::*;
use crate::trace::{TRACE_FORMAT, TRACE_FORMAT_IMPLIED};
use trove_fingerprint::{FileKind, Stat};

fn sample() -> Trace {
    let present = FileState::Present {
        stat: Stat {
            dev: 2049,
            ino: 1234,
            len: 99,
            mtime_ns: 1_700_000_000_123_456_789,
            ctime_ns: 1_700_000_000_123_456_789,
            kind: FileKind::File,
        },
        hash: Digest([7; 32]),
        taken_ns: 1_700_000_009_000_000_000,
    };
    let file = |path: &str, state: &FileState| Input::File {
        role: Role::Data,
        path: path.into(),
        state: state.clone(),
    };
    let stamp = crate::absence::made_up_stamp();
    let mut inputs = Vec::new();
    for dir in ["/usr/local/include", "/usr/include", "/p/inc1", "/p/inc2"] {
        if dir == "/p/inc1" {
            inputs.push(Input::Absences {
                role: Role::Module,
                dir: dir.into(),
                stamp: stamp.clone(),
                names: "stdio.h\0bits/types.h\0stdlib.h\0".into(),
            });
            continue;
        }
        for name in ["stdio.h", "bits/types.h", "stdlib.h"] {
            inputs.push(file(&format!("{dir}/{name}"), &FileState::Absent));
        }
    }
    inputs.extend([
        file("/usr/include/stdint.h", &present),
        file(
            "/",
            &FileState::NotAFile {
                kind: FileKind::Dir,
            },
        ),
        file(
            "/usr",
            &FileState::NotAFile {
                kind: FileKind::Dir,
            },
        ),
        file("relative", &present),
        file("./data/x.csv", &present),
        file(
            "/p/dir/",
            &FileState::NotAFile {
                kind: FileKind::Dir,
            },
        ),
        file("/p//doubled", &FileState::Absent),
        Input::Env {
            name: "PATH".into(),
            value: Some("/usr/bin".into()),
        },
    ]);
    Trace {
        inputs,
        counters: [("team.x".to_owned(), 3)].into(),
        definition: [("command".to_owned(), Digest([1; 32]))].into(),
    }
}

/// What a row an older trove wrote of `trace` decodes to: the same trace without the
/// directory inputs its files imply (`/` and `/usr` in [`sample`]).
fn from_older(trace: &Trace) -> Trace {
    let mut t = trace.clone();
    crate::absence::leave_out_implied_dirs(&mut t);
    t
}

#[test]
fn every_path_decodes_to_exactly_what_was_encoded_and_the_encoding_is_smaller() {
    let trace = sample();
    let bytes = trace.encode();
    assert_eq!(bytes[0], TRACE_FORMAT);
    assert_eq!(Trace::decode(&bytes), Some(trace.clone()));
    let plain = trace.encode_plain();
    assert_eq!(plain[0], 2);
    // The format before still decodes, to the same trace but for the directory inputs
    // its files imply.
    assert_eq!(Trace::decode(&plain), Some(from_older(&trace)));
    assert!(bytes.len() < plain.len());
    // A compiler's include search: 20 names looked up in 10 directories.
    let mut search = Trace::default();
    for d in 0..10 {
        for n in 0..20 {
            search.inputs.push(Input::File {
                role: Role::Data,
                path: format!("/usr/lib/gcc/x86_64-linux-gnu/12/include{d}/header{n}.h"),
                state: FileState::Absent,
            });
        }
    }
    let (bytes, plain) = (search.encode(), search.encode_plain());
    assert_eq!(Trace::decode(&bytes), Some(search));
    assert!(
        bytes.len() * 5 < plain.len(),
        "interned {} bytes, plain {}",
        bytes.len(),
        plain.len()
    );
}

/// A trace with every kind of file state, role and a few other inputs, with values
/// that take every varint length (negative times zigzag-encoded).
fn varied() -> Trace {
    let mut trace = sample();
    trace.inputs.push(Input::Absences {
        role: Role::Source,
        dir: "/p/inc2".into(),
        stamp: crate::absence::DirStamp {
            stat: Stat {
                dev: 7,
                ino: u64::MAX,
                len: 0,
                mtime_ns: -1,
                ctime_ns: i64::MAX,
                kind: FileKind::Other,
            },
            taken_ns: i64::MIN,
        },
        names: "é/ü.h\0z\0".into(),
    });
    for (i, (role, kind)) in [
        (Role::Data, FileKind::File),
        (Role::Module, FileKind::Dir),
        (Role::Source, FileKind::Other),
    ]
    .into_iter()
    .enumerate()
    {
        let big = u64::MAX >> (i * 20);
        trace.inputs.push(Input::File {
            role,
            path: format!("/odd/d{i}/é{i}"),
            state: FileState::Present {
                stat: Stat {
                    dev: big,
                    ino: big / 3,
                    len: i as u64,
                    mtime_ns: -(big as i64 / 7),
                    ctime_ns: i64::MIN + i as i64,
                    kind,
                },
                hash: Digest([i as u8 * 40; 32]),
                taken_ns: i64::MAX - i as i64,
            },
        });
        trace.inputs.push(Input::File {
            role,
            path: format!("/odd/d{i}/n"),
            state: FileState::NotAFile { kind },
        });
    }
    trace
}

/// Both decoders on `bytes` (format byte included): the same answer.
fn agree(bytes: &[u8]) -> Option<Trace> {
    let rest = &bytes[1..];
    let (fast, serde) = (decode(rest), decode_serde(rest));
    assert_eq!(fast, serde, "the decoders disagree on {bytes:?}");
    fast
}

#[test]
fn the_hand_reader_gives_what_serde_gives_on_every_cut_and_every_changed_byte() {
    let trace = varied();
    // Groups as one string (format 6), and as indices into the names (format 5).
    for bytes in [trace.encode(), encode(&trace, TRACE_FORMAT_IMPLIED)] {
        every_cut_and_changed_byte(&trace, &bytes);
    }
}

fn every_cut_and_changed_byte(trace: &Trace, bytes: &[u8]) {
    assert_eq!(agree(bytes), Some(trace.clone()));
    let mut accepted_changes = 0;
    for cut in 1..bytes.len() {
        assert_eq!(agree(&bytes[..cut]), None, "cut at {cut}");
    }
    for at in 1..bytes.len() {
        for value in [
            0x00,
            0x01,
            0x02,
            0x03,
            0x7F,
            0x80,
            0x81,
            0xFF,
            bytes[at] ^ 0x40,
        ] {
            let mut changed = bytes.to_vec();
            changed[at] = value;
            if agree(&changed).is_some() {
                accepted_changes += 1;
            }
        }
    }
    // Many changes still decode (a different digest, a different mtime): both
    // decoders accepted the same ones.
    assert!(accepted_changes > bytes.len(), "{accepted_changes}");
}

#[test]
fn over_long_varints_are_read_as_postcard_reads_them() {
    // An over-long varint (0 written as 0x80 0x00) is accepted by both, one that
    // overflows a u32 by neither.
    let wire = |dir: &[u8]| {
        let mut b = vec![
            TRACE_FORMAT,
            1,
            4,
            b'/',
            b'u',
            b's',
            b'r',
            1,
            1,
            b'a',
            1,
            0,
            0,
        ];
        b.extend_from_slice(dir);
        b.extend_from_slice(&[0, 0, 0, 0]);
        b
    };
    assert!(agree(&wire(&[0])).is_some());
    assert!(agree(&wire(&[0x80, 0x00])).is_some());
    assert_eq!(agree(&wire(&[0x80, 0x80, 0x80, 0x80, 0x10])), None);
    assert_eq!(agree(&wire(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00])), None);
}

#[test]
fn a_length_prefix_of_a_trillion_allocates_nothing_of_the_kind() {
    // 2^40 as a varint: a table, then the inputs, that say they hold that many.
    let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
    let mut table = vec![TRACE_FORMAT];
    table.extend(huge);
    assert_eq!(agree(&table), None);
    let mut inputs = vec![TRACE_FORMAT, 0, 0];
    inputs.extend(huge);
    inputs.extend([0; 64]);
    assert_eq!(agree(&inputs), None);
}

#[test]
fn truncated_extended_or_dangling_traces_are_refused() {
    let bytes = sample().encode();
    for cut in 1..bytes.len() {
        assert_eq!(Trace::decode(&bytes[..cut]), None, "cut at {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(Trace::decode(&longer), None);
    // A file input naming a directory or a name the tables do not hold.
    for (dir, name) in [(0, 0), (1, 0), (0, 1), (u32::MAX, 0)] {
        let wire = Wire {
            dirs: vec!["/usr"],
            names: vec!["stdio.h"],
            inputs: vec![WireInput::File {
                role: Role::Data,
                dir,
                name,
                state: Cow::Owned(FileState::Absent),
            }],
            counters: Cow::Owned(BTreeMap::new()),
            definition: Cow::Owned(BTreeMap::new()),
        };
        let mut bytes = vec![TRACE_FORMAT];
        bytes.extend(postcard::to_allocvec(&wire).unwrap());
        let decoded = Trace::decode(&bytes);
        if (dir, name) == (0, 0) {
            assert!(decoded.is_some());
        } else {
            assert_eq!(decoded, None, "dir {dir} name {name}");
        }
    }
    // An unknown format byte.
    let mut other = sample().encode();
    other[0] = TRACE_FORMAT + 1;
    assert_eq!(Trace::decode(&other), None);
}

#[test]
fn a_group_naming_anything_but_plain_relative_paths_is_refused() {
    let group = |names: &str| Input::Absences {
        role: Role::Data,
        dir: "/p/inc".into(),
        stamp: crate::absence::made_up_stamp(),
        names: names.into(),
    };
    let with = |input: Input| Trace {
        inputs: vec![input],
        ..Trace::default()
    };
    let fine = with(group("a.h\0bits/b.h\0"));
    for format in [TRACE_FORMAT, TRACE_FORMAT_IMPLIED] {
        assert_eq!(agree(&encode(&fine, format)), Some(fine.clone()));
        for odd in [
            "../x\0",
            "a/./b\0",
            "a//b\0",
            "a/\0",
            "/a\0",
            "\0",
            "\u{FFFD}\0",
            "a.h\0..\0",
            "a.h\0.\0b.h\0",
        ] {
            let bytes = encode(&with(group(odd)), format);
            assert_eq!(agree(&bytes), None, "{odd:?} in format {format}");
            assert_eq!(Trace::decode(&bytes), None, "{odd:?} in format {format}");
        }
    }
    // A group whose names are one or two bytes (found by the fuzzer: the check's loop
    // sliced past their end).
    let crash = [
        4, 2, 0, 0, 0, 4, 3, 0, 1, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 2, 4, 0,
        1, 2, 3, 40, 0, 0, 2, 234, 255, 251, 143, 5, 5, 0, 0, 5, 0, 5, 1, 0, 0, 2, 91, 85, 0, 0, 0,
    ];
    let _ = agree(&crash);
    for names in ["a\0", "\0", "ab\0"] {
        let short = with(group(names));
        let expected = (names != "\0").then(|| short.clone());
        assert_eq!(agree(&short.encode()), expected, "{names:?}");
    }
    // Format 6 reads the names as one string: the last member must be closed by its NUL.
    let open = with(group("a.h\0b.h"));
    assert_eq!(agree(&encode(&open, TRACE_FORMAT)), None);
    // A group written as any other input (format 2's way), in format 4 or 2.
    let wire = Wire {
        dirs: vec![],
        names: vec![],
        inputs: vec![WireInput::Other(Cow::Owned(group("a.h\0")))],
        counters: Cow::Owned(BTreeMap::new()),
        definition: Cow::Owned(BTreeMap::new()),
    };
    let mut bytes = vec![TRACE_FORMAT];
    bytes.extend(postcard::to_allocvec(&wire).unwrap());
    assert_eq!(agree(&bytes), None);
    let mut plain = vec![2];
    plain.extend(postcard::to_allocvec(&fine).unwrap());
    assert_eq!(Trace::decode(&plain), None);
}

#[test]
fn traces_older_troves_wrote_decode_to_the_groups_this_one_writes() {
    let trace = sample();
    for old in [trace.encode_indexed(), trace.encode_plain()] {
        assert!(old[0] == 3 || old[0] == 2);
        assert_eq!(
            Trace::decode(&old),
            Some(from_older(&trace)),
            "format {}",
            old[0]
        );
        if old[0] == 3 {
            assert_eq!(
                agree(&old).map(|t| t.inputs.len()),
                Some(trace.inputs.len() + 3)
            );
        }
    }
    // Format 4 holds the group's members in it: 3 fewer inputs than format 3.
    let bytes = trace.encode();
    assert!(bytes.len() < trace.encode_indexed().len());
    // A format 5 row (the group's names as indices) is read as it is, by both decoders.
    let five = encode(&trace, TRACE_FORMAT_IMPLIED);
    assert_eq!(five[0], 5);
    assert_ne!(five, bytes);
    assert_eq!(agree(&five), Some(trace.clone()));
    assert_eq!(Trace::decode(&five), Some(trace));
}
