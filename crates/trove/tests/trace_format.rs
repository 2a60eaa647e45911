//! The stored trace's format: traces are written with their paths interned, their
//! absences held by their groups (a group's names one string) and no directory input a
//! file implies (format 6); a row an older trove wrote (format 5, a group's names indices
//! into the names; format 3, each absence an input of its own; format 2, every path whole
//! too) is still served and still validated input by input; a corrupt trace is a miss
//! that rebuilds and stores a good one.

mod support;

use support::{Log, PAST_RACY, Probe, Project, include_search};
use trove::{Reason, Stats};
use trove_store::Store;

/// The names `include_search` looks up: `a.h` is found in `inc1/`, the others in `inc2/`
/// after an absent `inc1/` path each.
const NAMES: &str = "a.h,b.h,bits/x.h";

fn project() -> Project {
    let p = Project::new();
    p.write("inc1/a.h", "A1");
    p.write("inc2/b.h", "B2");
    p.write("inc2/bits/x.h", "X2");
    drop(p.engine());
    std::thread::sleep(PAST_RACY);
    p
}

fn get(p: &Project, r: &Probe<String>) -> (String, Reason, Stats) {
    let e = p.engine();
    let served = e.get_explained(r, &NAMES.to_owned()).unwrap();
    ((*served.value).clone(), served.reason, e.stats())
}

/// The store's only live variant.
fn only_record(p: &Project) -> (Store, trove_store::Record) {
    let store = Store::open(&p.path(".trove")).unwrap();
    let mut records: Vec<_> = store
        .records()
        .unwrap()
        .into_iter()
        .filter(|r| r.quarantined.is_none())
        .collect();
    assert_eq!(records.len(), 1, "expected one live variant");
    let rec = records.remove(0);
    (store, rec)
}

#[test]
fn traces_are_stored_with_interned_paths_and_grouped_absences_and_smaller_than_before() {
    let p = project();
    let log = Log::new();
    let r = include_search(&log);
    let (value, reason, _) = get(&p, &r);
    assert_eq!(value, "A1 B2 X2");
    assert!(matches!(reason, Reason::Built(_)), "{reason}");
    let (_, rec) = only_record(&p);
    assert_eq!(rec.trace[0], 6, "the format byte");
    let indexed = trove::fuzzing::trace_in_indexed_format(&rec.trace).unwrap();
    let plain = trove::fuzzing::trace_in_plain_format(&rec.trace).unwrap();
    assert_eq!((indexed[0], plain[0]), (3, 2));
    assert!(
        rec.trace.len() < indexed.len() && indexed.len() < plain.len(),
        "format 6: {} bytes, 3: {}, 2: {}",
        rec.trace.len(),
        indexed.len(),
        plain.len()
    );
}

#[test]
fn a_variant_an_older_trove_stored_is_served_and_still_validated() {
    type Older = fn(&[u8]) -> Option<Vec<u8>>;
    let formats: [(u8, Older); 3] = [
        (2, trove::fuzzing::trace_in_plain_format),
        (3, trove::fuzzing::trace_in_indexed_format),
        (5, trove::fuzzing::trace_in_format_5),
    ];
    for (format, older) in formats {
        let p = project();
        let log = Log::new();
        let r = include_search(&log);
        get(&p, &r);
        let (_, hit, fresh) = get(&p, &r);
        assert_eq!(hit, Reason::HitDisk);
        assert!(fresh.absences_vouched > 0);
        let (store, rec) = only_record(&p);
        let bytes = older(&rec.trace).unwrap();
        assert_eq!(bytes[0], format);
        store.update_trace(rec.id, &bytes).unwrap();
        drop(store);
        log.take();

        // Served from the older row, with the same checks as from a format 6 one: its
        // groups of absences still vouch.
        let (value, reason, stats) = get(&p, &r);
        assert_eq!((value.as_str(), &reason), ("A1 B2 X2", &Reason::HitDisk));
        assert_eq!(stats.files_checked, fresh.files_checked, "format {format}");
        assert_eq!(stats.absences_vouched, fresh.absences_vouched);
        assert!(log.take().is_empty(), "a format {format} row was rebuilt");

        // Still validated: a header created earlier in the search path rebuilds.
        p.write("inc1/b.h", "B1");
        let (value, reason, _) = get(&p, &r);
        assert_eq!(value, "A1 B1 X2");
        let why = reason.to_string();
        assert!(
            matches!(reason, Reason::Built(_)) && why.contains("inc1/b.h"),
            "{why}"
        );
    }
}

#[test]
fn a_corrupt_trace_is_a_miss_that_rebuilds_and_stores_a_readable_one() {
    let p = project();
    let log = Log::new();
    let r = include_search(&log);
    get(&p, &r);
    let (store, rec) = only_record(&p);
    // Truncated: the row's checksum is right (the store rewrote it), the trace is not.
    store
        .update_trace(rec.id, &rec.trace[..rec.trace.len() / 2])
        .unwrap();
    drop(store);
    log.take();

    let (value, reason, _) = get(&p, &r);
    assert_eq!(value, "A1 B2 X2");
    let why = reason.to_string();
    assert!(
        matches!(reason, Reason::Built(_)) && why.contains("unknown format"),
        "{why}"
    );
    assert_eq!(log.take(), [format!("search {NAMES}")]);
    // The rebuild stored a readable variant: the next engine hits it.
    let (_, reason, _) = get(&p, &r);
    assert_eq!(reason, Reason::HitDisk);
    assert!(log.take().is_empty());
}
