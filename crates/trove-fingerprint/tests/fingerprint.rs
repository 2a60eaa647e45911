//! The canonical encoding, glob bases, the file rules, and listings, globs and trees,
//! checked directly.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, FileTimes};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use trove_fingerprint::{
    FileCheck, FileState, GlobMode, Listing, ListingState, check_file, encode, fingerprint_file,
    glob_base, glob_with, key_of, list_dir, list_dir_changed, read_file, tree,
};

// ---------------------------------------------------------------- canonical encoding

#[test]
fn a_hash_map_encodes_like_a_btree_map_whatever_its_insertion_order() {
    let mut forward = HashMap::new();
    let mut backward = HashMap::new();
    for i in 0..100u32 {
        forward.insert(format!("k{i}"), i);
        backward.insert(format!("k{}", 99 - i), 99 - i);
    }
    let tree: BTreeMap<String, u32> = forward.clone().into_iter().collect();
    assert_eq!(encode(&forward).unwrap(), encode(&backward).unwrap());
    assert_eq!(encode(&forward).unwrap(), encode(&tree).unwrap());
}

#[test]
fn values_of_distinct_types_get_distinct_keys() {
    let keys = [
        key_of("r", &1u8).unwrap(),
        key_of("r", &1u16).unwrap(),
        key_of("r", &1i32).unwrap(),
        key_of("r", &1u64).unwrap(),
        key_of("r", &1.0f64).unwrap(),
        key_of("r", &()).unwrap(),
        key_of("r", &None::<u8>).unwrap(),
        key_of("r", &Some(())).unwrap(),
        key_of("r", &"a").unwrap(),
        key_of("r", &'a').unwrap(),
        key_of("r", &RawBytes(b"a")).unwrap(),
        key_of("r", &vec![1u8]).unwrap(),
        key_of("r", &(1u8,)).unwrap(),
    ];
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(a, b);
        }
    }
    // The recipe name is part of the key.
    assert_ne!(key_of("r", &1u8).unwrap(), key_of("s", &1u8).unwrap());
}

/// Bytes serialized as bytes (not as a sequence of u8).
struct RawBytes<'a>(&'a [u8]);
impl Serialize for RawBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

#[test]
fn every_nan_encodes_the_same_but_signed_zeros_differ() {
    let quiet = f64::NAN;
    let other = f64::from_bits(0x7ff8_0000_0000_0001);
    let negative = -f64::NAN;
    assert!(other.is_nan() && negative.is_nan());
    assert_eq!(encode(&quiet).unwrap(), encode(&other).unwrap());
    assert_eq!(encode(&quiet).unwrap(), encode(&negative).unwrap());
    assert_eq!(
        encode(&f32::NAN).unwrap(),
        encode(&f32::from_bits(0x7fc0_0001)).unwrap()
    );
    assert_ne!(encode(&0.0f64).unwrap(), encode(&-0.0f64).unwrap());
}

#[test]
fn renaming_a_field_changes_the_key() {
    #[derive(Serialize)]
    struct Before {
        region: String,
    }
    #[derive(Serialize)]
    #[serde(rename = "Before")]
    struct After {
        area: String,
    }
    let a = key_of(
        "r",
        &Before {
            region: "eu".into(),
        },
    )
    .unwrap();
    let b = key_of("r", &After { area: "eu".into() }).unwrap();
    assert_ne!(a, b);
}

#[test]
fn a_sequence_boundary_shift_changes_the_encoding() {
    let a = (vec!["ab".to_owned()], vec!["c".to_owned()]);
    let b = (vec!["a".to_owned()], vec!["bc".to_owned()]);
    assert_ne!(encode(&a).unwrap(), encode(&b).unwrap());
    let c: (Vec<u8>, Vec<u8>) = (vec![1, 2], vec![]);
    let d: (Vec<u8>, Vec<u8>) = (vec![1], vec![2]);
    assert_ne!(encode(&c).unwrap(), encode(&d).unwrap());
}

#[test]
fn the_encoding_is_stable_across_releases() {
    // Pinned bytes: changing them changes every key in every store.
    assert_eq!(encode(&7u16).unwrap(), [1, 8, 7, 0]);
    assert_eq!(
        encode(&"hi").unwrap(),
        [1, 15, 2, 0, 0, 0, 0, 0, 0, 0, b'h', b'i']
    );
}

// ---------------------------------------------------------------- glob bases

#[test]
fn a_globs_base_is_its_leading_literal_directories() {
    let cases = [
        ("data/raw/**/*.csv", "data/raw"),
        ("data/*.csv", "data"),
        ("*.csv", ""),
        ("**/*.rs", ""),
        ("src/{a,b}/x.rs", "src"),
        ("src/a?/x.rs", "src"),
        ("src/[ab]/x.rs", "src"),
        ("data/prices.csv", "data"),
        ("prices.csv", ""),
        ("a/b/c/*", "a/b/c"),
    ];
    for (pattern, base) in cases {
        assert_eq!(glob_base(pattern), base, "{pattern}");
    }
}

// ---------------------------------------------------------------- file rules

fn set_mtime(path: &Path, t: SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(FileTimes::new().set_modified(t))
        .unwrap();
}

/// A fingerprint taken "long ago", so the racy rule does not apply.
fn old_fingerprint(path: &Path) -> FileState {
    let (state, stable) = fingerprint_file(path).unwrap();
    assert!(stable);
    match state {
        FileState::Present { stat, hash, .. } => FileState::Present {
            stat,
            hash,
            taken_ns: stat.mtime_ns.max(stat.ctime_ns) + 10 * trove_fingerprint::RACY_WINDOW_NS,
        },
        other => other,
    }
}

#[test]
fn an_untouched_file_is_unchanged_without_rehashing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    std::fs::write(&path, "abc").unwrap();
    let state = old_fingerprint(&path);
    assert_eq!(check_file(&state, &path).unwrap(), FileCheck::Unchanged);
}

#[test]
fn new_metadata_over_the_same_content_is_refreshed_not_changed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    std::fs::write(&path, "abc").unwrap();
    let state = old_fingerprint(&path);
    set_mtime(&path, SystemTime::now() + Duration::from_secs(100));
    match check_file(&state, &path).unwrap() {
        FileCheck::Refreshed(new) => {
            assert_eq!(new.hash(), state.hash());
            assert_ne!(new, state);
        }
        other => panic!("expected refreshed, got {other:?}"),
    }
}

#[test]
fn new_content_is_changed_even_with_the_old_mtime_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    std::fs::write(&path, "abc").unwrap();
    let old = SystemTime::now() - Duration::from_secs(1000);
    set_mtime(&path, old);
    let state = old_fingerprint(&path);
    std::fs::write(&path, "xyz").unwrap();
    set_mtime(&path, old);
    match check_file(&state, &path).unwrap() {
        FileCheck::Changed(new) => assert_ne!(new.hash(), state.hash()),
        other => panic!("expected changed, got {other:?}"),
    }
}

#[test]
fn a_file_created_where_none_was_is_changed_and_a_removed_one_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    let (_, absent, _) = read_file(&path).unwrap();
    assert_eq!(absent, FileState::Absent);
    assert_eq!(check_file(&absent, &path).unwrap(), FileCheck::Unchanged);
    std::fs::write(&path, "now").unwrap();
    assert!(matches!(
        check_file(&absent, &path).unwrap(),
        FileCheck::Changed(FileState::Present { .. })
    ));
    let present = old_fingerprint(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        check_file(&present, &path).unwrap(),
        FileCheck::Changed(FileState::Absent)
    );
}

#[test]
fn a_racy_fingerprint_is_rehashed_even_when_every_stat_field_matches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    std::fs::write(&path, "1111").unwrap();
    let (_, state, stable) = read_file(&path).unwrap();
    assert!(stable);
    let FileState::Present { stat, taken_ns, .. } = &state else {
        panic!()
    };
    assert!(stat.is_racy(*taken_ns), "a file written just now is racy");
    // Pretend a same-size write landed in the same tick: same stat, other content. The
    // recorded state claims a hash the content no longer has.
    let lying = FileState::Present {
        stat: *stat,
        hash: trove_fingerprint::Digest::of_bytes(b"2222"),
        taken_ns: *taken_ns,
    };
    assert!(matches!(
        check_file(&lying, &path).unwrap(),
        FileCheck::Changed(_)
    ));
    // The same recorded stat, outside the racy window, would be trusted as is.
    let trusted = FileState::Present {
        stat: *stat,
        hash: trove_fingerprint::Digest::of_bytes(b"2222"),
        taken_ns: stat.mtime_ns.max(stat.ctime_ns) + 10 * trove_fingerprint::RACY_WINDOW_NS,
    };
    assert_eq!(check_file(&trusted, &path).unwrap(), FileCheck::Unchanged);
    // And the honest racy state is refreshed (re-hashed, same content).
    assert!(matches!(
        check_file(&state, &path).unwrap(),
        FileCheck::Refreshed(_)
    ));
}

#[test]
fn a_recorded_state_vouches_for_exactly_the_same_stat_outside_the_racy_window() {
    use trove_fingerprint::{FileKind, RACY_WINDOW_NS, Stat};
    let stat = Stat {
        dev: 1,
        ino: 2,
        len: 3,
        mtime_ns: 1_000 * RACY_WINDOW_NS,
        ctime_ns: 1_000 * RACY_WINDOW_NS + 5,
        kind: FileKind::File,
    };
    let recorded = |taken_ns| FileState::Present {
        stat,
        hash: trove_fingerprint::Digest::of_bytes(b"abc"),
        taken_ns,
    };
    let long_after = stat.ctime_ns + RACY_WINDOW_NS + 1;
    assert!(recorded(long_after).vouches_for(&stat));
    // Any field different, ctime alone included (`touch -d`, `cp -p`), and mtime moved
    // backwards: never "newer than".
    for now in [
        Stat { dev: 9, ..stat },
        Stat { ino: 9, ..stat },
        Stat { len: 9, ..stat },
        Stat {
            mtime_ns: stat.mtime_ns - 1,
            ..stat
        },
        Stat {
            ctime_ns: stat.ctime_ns + 1,
            ..stat
        },
        Stat {
            kind: FileKind::Other,
            ..stat
        },
    ] {
        assert!(!recorded(long_after).vouches_for(&now), "{now:?}");
    }
    // Racy: taken within the window after the last change (or before it).
    assert!(!recorded(stat.ctime_ns + RACY_WINDOW_NS).vouches_for(&stat));
    assert!(!recorded(stat.mtime_ns - 1).vouches_for(&stat));
    // Absent and not-a-file states carry no hash to reuse.
    assert!(!FileState::Absent.vouches_for(&stat));
    assert!(
        !FileState::NotAFile {
            kind: FileKind::File
        }
        .vouches_for(&stat)
    );
}

#[test]
fn read_file_fingerprints_exactly_the_bytes_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    std::fs::write(&path, "content").unwrap();
    let (bytes, state, stable) = read_file(&path).unwrap();
    assert!(stable);
    assert_eq!(bytes, b"content");
    assert_eq!(
        state.hash(),
        Some(&trove_fingerprint::Digest::of_bytes(b"content"))
    );
}

#[test]
fn a_fifo_is_recorded_as_a_special_file_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Opening a FIFO for reading blocks until a writer comes; neither call may.
    let (bytes, state, _) = trove_fingerprint::read_file(&fifo).unwrap();
    assert!(bytes.is_empty());
    assert_eq!(state.describe(), "a special file");
    let (state, _) = trove_fingerprint::fingerprint_file(&fifo).unwrap();
    assert_eq!(state.describe(), "a special file");
}

// ---------------------------------------------------------------- listings, globs, trees

/// A scratch directory tree for the listing tests.
struct Tree(tempfile::TempDir);

impl Tree {
    fn new() -> Tree {
        Tree(tempfile::tempdir().unwrap())
    }

    fn root(&self) -> &Path {
        self.0.path()
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.root().join(rel)
    }

    fn write(&self, rel: &str, content: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn mkdir(&self, rel: &str) {
        std::fs::create_dir_all(self.path(rel)).unwrap();
    }

    fn chmod(&self, rel: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.path(rel), std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn symlink(&self, target: &str, rel: &str) {
        std::os::unix::fs::symlink(target, self.path(rel)).unwrap();
    }

    fn glob(&self, pattern: &str, mode: GlobMode) -> Listing {
        glob_with(self.root(), pattern, &[], mode).unwrap()
    }

    fn tree(&self, rel: &str) -> Listing {
        tree(&self.path(rel), &[]).unwrap()
    }
}

#[test]
fn a_literal_glob_matches_the_files_gitignore_and_friends_hide_from_discovery() {
    let t = Tree::new();
    t.write(".gitignore", "*.bin\n");
    t.write("data/.ignore", "secret.bin\n");
    t.write(".git/info/exclude", "excluded.bin\n");
    for f in ["a.bin", "secret.bin", "excluded.bin", ".hidden.bin"] {
        t.write(&format!("data/{f}"), f);
    }
    t.write("data/b.txt", "not matched");

    let literal = t.glob("data/*.bin", GlobMode::Literal);
    assert_eq!(
        literal.files,
        [
            "data/.hidden.bin",
            "data/a.bin",
            "data/excluded.bin",
            "data/secret.bin"
        ]
    );
    // Discovery still honours the ignore files; hidden files it keeps.
    assert_eq!(
        t.glob("data/*.bin", GlobMode::Discovery).files,
        Vec::<String>::new()
    );
    t.write(".gitignore", "");
    assert_eq!(
        t.glob("data/*.bin", GlobMode::Discovery).files,
        ["data/.hidden.bin", "data/a.bin"]
    );
    // `glob` is the discovery glob, as a pair.
    let (files, state) = trove_fingerprint::glob(t.root(), "data/*.bin", &[]).unwrap();
    let discovery = t.glob("data/*.bin", GlobMode::Discovery);
    assert_eq!((files, state), (discovery.files, discovery.state));
}

#[test]
fn an_ignored_file_appearing_under_a_literal_glob_changes_its_state() {
    let t = Tree::new();
    t.write(".gitignore", "*.bin\n");
    t.write("data/a.bin", "a");
    let before = t.glob("data/*.bin", GlobMode::Literal);
    let discovered = t.glob("data/*.bin", GlobMode::Discovery);
    t.write("data/b.bin", "b");
    let after = t.glob("data/*.bin", GlobMode::Literal);
    assert_ne!(before.state, after.state);
    assert_eq!(after.files, ["data/a.bin", "data/b.bin"]);
    // The discovery glob does not see it, by design.
    assert_eq!(t.glob("data/*.bin", GlobMode::Discovery), discovered);
}

#[test]
fn a_literal_glob_never_enters_excluded_directories_nor_git_unless_the_pattern_starts_there() {
    let t = Tree::new();
    t.write("a.txt", "a");
    t.write(".trove/v1/blobs/x.txt", "stored");
    t.write(".git/info/exclude", "");
    t.write(".git/notes.txt", "git's own");
    t.write("vendor/lib/.git/HEAD", "ref");
    let store = vec![t.path(".trove")];
    let everything = glob_with(t.root(), "**/*", &store, GlobMode::Literal).unwrap();
    assert_eq!(everything.files, ["a.txt"]);
    // Named explicitly, `.git` is walked like any directory.
    let git = glob_with(t.root(), ".git/*.txt", &store, GlobMode::Literal).unwrap();
    assert_eq!(git.files, [".git/notes.txt"]);
    let nested = glob_with(t.root(), "vendor/lib/.git/*", &store, GlobMode::Literal).unwrap();
    assert_eq!(nested.files, ["vendor/lib/.git/HEAD"]);
}

#[test]
fn chmod_on_a_matched_file_changes_a_globs_state_and_a_listings() {
    let t = Tree::new();
    t.write("bin/tool", "#!/bin/sh\n");
    t.chmod("bin/tool", 0o644);
    let glob_before = t.glob("bin/*", GlobMode::Literal);
    let (names, list_before) = list_dir(&t.path("bin")).unwrap();
    assert_eq!(names, ["tool"]);

    t.chmod("bin/tool", 0o755);
    assert_ne!(t.glob("bin/*", GlobMode::Literal).state, glob_before.state);
    assert_ne!(
        t.glob("bin/*", GlobMode::Discovery).state,
        glob_before.state
    );
    assert_ne!(list_dir(&t.path("bin")).unwrap().1, list_before);

    t.chmod("bin/tool", 0o644);
    assert_eq!(t.glob("bin/*", GlobMode::Literal), glob_before);
    assert_eq!(list_dir(&t.path("bin")).unwrap().1, list_before);
}

#[test]
fn a_new_empty_directory_the_pattern_matches_changes_the_globs_state_one_it_does_not_match_does_not()
 {
    let t = Tree::new();
    t.write("data/a.csv", "a");
    let all = t.glob("data/**", GlobMode::Literal);
    let csvs = t.glob("data/**/*.csv", GlobMode::Literal);

    t.mkdir("data/sub/new");
    let all_now = t.glob("data/**", GlobMode::Literal);
    assert_ne!(all_now.state, all.state);
    assert_eq!(all_now.files, ["data/a.csv"], "directories are not files");
    assert_eq!(t.glob("data/**/*.csv", GlobMode::Literal), csvs);

    // A directory whose name the pattern matches is listed even under `*.csv`.
    t.mkdir("data/odd.csv");
    let csvs_now = t.glob("data/**/*.csv", GlobMode::Literal);
    assert_ne!(csvs_now.state, csvs.state);
    assert_eq!(csvs_now.files, ["data/a.csv"]);
}

#[test]
fn the_files_of_a_glob_are_regular_files_and_symlinks_to_them_and_kinds_are_in_its_state() {
    let t = Tree::new();
    t.write("d/file", "f");
    t.write("target/inner", "i");
    t.symlink("file", "d/to-file");
    t.symlink("../target", "d/to-dir");
    t.symlink("nowhere", "d/dangling");
    let _socket = std::os::unix::net::UnixListener::bind(t.path("d/socket")).unwrap();
    let before = t.glob("d/*", GlobMode::Literal);
    assert_eq!(before.files, ["d/file", "d/to-file"]);
    assert!(
        before.state.describe().starts_with("5 entries"),
        "{}",
        before.state.describe()
    );

    // A symlink pointed from a file to a directory is another entry, same name or not.
    std::fs::remove_file(t.path("d/to-file")).unwrap();
    t.symlink("../target", "d/to-file");
    let retargeted = t.glob("d/*", GlobMode::Literal);
    assert_ne!(retargeted.state, before.state);
    assert_eq!(retargeted.files, ["d/file"]);

    // A dangling symlink whose target appears becomes a file.
    t.write("d/nowhere", "now");
    let created = t.glob("d/*", GlobMode::Literal);
    assert_ne!(created.state, retargeted.state);
    assert!(created.files.contains(&"d/dangling".to_owned()));

    // A file replaced by a directory of the same name.
    std::fs::remove_file(t.path("d/file")).unwrap();
    t.mkdir("d/file");
    assert_ne!(t.glob("d/*", GlobMode::Literal).state, created.state);
}

#[test]
fn a_listings_state_is_not_the_version_1_hash_of_its_names() {
    let t = Tree::new();
    t.write("d/a", "a");
    let (names, state) = list_dir(&t.path("d")).unwrap();
    let mut v1 = blake3::Hasher::new_derive_key("trove listing v1");
    for n in &names {
        v1.update(&(n.len() as u64).to_le_bytes());
        v1.update(n.as_bytes());
    }
    let old = ListingState::Names {
        hash: trove_fingerprint::Digest(*v1.finalize().as_bytes()),
        count: 1,
    };
    assert_ne!(
        state, old,
        "a state stored by version 1 must read as changed"
    );
}

#[test]
fn a_directorys_tree_covers_every_name_kind_mode_and_through_its_files_every_content() {
    let t = Tree::new();
    t.write("lib/a.py", "a = 1\n");
    t.write("lib/pkg/b.py", "b = 2\n");
    t.write("lib/.hidden", "h");
    t.write("lib/.git/HEAD", "nested repository");
    t.write(".gitignore", "*.py\n");
    let before = t.tree("lib");
    assert_eq!(before.files, [".hidden", "a.py", "pkg/b.py"]);
    assert_eq!(t.tree("lib"), before, "nothing changed, nothing differs");

    let changes: [(&str, &dyn Fn()); 6] = [
        ("a file added deep inside", &|| {
            t.write("lib/pkg/deep/c.py", "c")
        }),
        ("an empty directory created", &|| t.mkdir("lib/pkg/empty")),
        ("chmod +x on a file", &|| t.chmod("lib/a.py", 0o755)),
        ("chmod on the directory itself", &|| t.chmod("lib", 0o700)),
        ("a file renamed", &|| {
            std::fs::rename(t.path("lib/pkg/b.py"), t.path("lib/pkg/b2.py")).unwrap()
        }),
        ("a directory renamed", &|| {
            std::fs::rename(t.path("lib/pkg"), t.path("lib/pkg2")).unwrap()
        }),
    ];
    let mut last = before.clone();
    for (what, change) in changes {
        change();
        let now = t.tree("lib");
        assert_ne!(now.state, last.state, "{what}");
        last = now;
    }

    // An edit keeps names, kinds and modes: the state stays, and the caller's fingerprint
    // of the returned file catches it.
    let t = Tree::new();
    t.write("lib/a.py", "a = 1\n");
    let before = t.tree("lib");
    let recorded = old_fingerprint(&t.path("lib").join(&before.files[0]));
    t.write("lib/a.py", "a = 2\n");
    assert_eq!(t.tree("lib"), before);
    assert!(matches!(
        check_file(&recorded, &t.path("lib/a.py")).unwrap(),
        FileCheck::Changed(_)
    ));
}

#[test]
fn a_tree_skips_the_excluded_store_and_an_absent_directory_is_absent() {
    let t = Tree::new();
    t.write("a.txt", "a");
    t.write(".trove/v1/index", "store");
    let listed = tree(t.root(), &[t.path(".trove")]).unwrap();
    assert_eq!(listed.files, ["a.txt"]);
    t.write(".trove/v1/more", "more");
    assert_eq!(tree(t.root(), &[t.path(".trove")]).unwrap(), listed);

    assert_eq!(t.tree("missing").state, ListingState::Absent);
    assert_eq!(t.tree("a.txt").state, ListingState::Absent);
}

#[test]
fn hex_is_lowercase_and_reads_back_in_either_case() {
    assert_eq!(trove_fingerprint::hex(&[0xAB, 0x01, 0xff]), "ab01ff");
    assert_eq!(
        trove_fingerprint::from_hex("AB01ff"),
        Some(vec![0xab, 0x01, 0xff])
    );
}

/// What a listing taken after a command ran says about changes: the latest of the
/// directory's mtime (an entry made, removed or renamed) and each entry's ctime when it
/// is later than its mtime (its mode changed), without the ones the caller says the
/// command made itself. A write of an entry's content changes nothing a listing records.
#[test]
fn a_listings_latest_change_covers_its_entries_and_modes_but_not_contents_nor_the_commands_own() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("a"), "").unwrap();
    std::fs::write(d.join("b"), "").unwrap();
    let nobody = |_: &Path| false;
    let latest = |own: &dyn Fn(&Path) -> bool, own_dir: bool| {
        let (names, _, changed) = list_dir_changed(&d, own, own_dir).unwrap();
        assert_eq!(names, ["a", "b"]);
        let changed = changed.unwrap();
        assert_eq!(changed.dev, Some(std::fs::metadata(&d).unwrap().dev()));
        changed.newest_ns
    };
    let times = |p: &Path| {
        let m = std::fs::symlink_metadata(p).unwrap();
        (
            m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        )
    };
    // The entries were made with the directory: its mtime is the latest change.
    let before = latest(&nobody, false);
    assert_eq!(before, times(&d).0);
    // Clock ticks are a few milliseconds: wait for the next before each change.
    std::thread::sleep(Duration::from_millis(30));
    // Content appended: nothing the listing records.
    std::fs::OpenOptions::new()
        .append(true)
        .open(d.join("b"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"more"))
        .unwrap();
    assert_eq!(latest(&nobody, false), before);
    std::thread::sleep(Duration::from_millis(30));
    std::fs::set_permissions(d.join("a"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let after_chmod = latest(&nobody, false);
    assert!(after_chmod > before, "{after_chmod} > {before}");
    assert_eq!(after_chmod, times(&d.join("a")).1);
    // The command's own change is left out.
    let own_a = |p: &Path| p.ends_with("a");
    assert_eq!(latest(&own_a, false), before);
    // An entry made and removed moves the directory's mtime; left out when the command
    // made it.
    std::thread::sleep(Duration::from_millis(30));
    std::fs::write(d.join("c"), "").unwrap();
    std::fs::remove_file(d.join("c")).unwrap();
    let dir_now = latest(&own_a, false);
    assert!(dir_now > after_chmod, "{dir_now} > {after_chmod}");
    assert_eq!(latest(&own_a, true), i64::MIN);
    // A directory no longer there has no listing to vouch for.
    let (_, state, changed) = list_dir_changed(&tmp.path().join("gone"), &nobody, false).unwrap();
    assert_eq!((state, changed), (ListingState::Absent, None));
}
