//! The stored trace's format: traces are written with their paths interned (format 3);
//! a row an older trove wrote (format 2, every path whole) is still served and still
//! validated input by input; a corrupt trace is a miss that rebuilds and stores a good one.

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
fn traces_are_stored_with_interned_paths_and_smaller_than_before() {
    let p = project();
    let log = Log::new();
    let r = include_search(&log);
    let (value, reason, _) = get(&p, &r);
    assert_eq!(value, "A1 B2 X2");
    assert!(matches!(reason, Reason::Built(_)), "{reason}");
    let (_, rec) = only_record(&p);
    assert_eq!(rec.trace[0], 3, "the format byte");
    let plain = trove::fuzzing::trace_in_plain_format(&rec.trace).unwrap();
    assert_eq!(plain[0], 2);
    assert!(
        rec.trace.len() < plain.len(),
        "interned {} bytes, plain {}",
        rec.trace.len(),
        plain.len()
    );
}

#[test]
fn a_variant_an_older_trove_stored_is_served_and_still_validated() {
    let p = project();
    let log = Log::new();
    let r = include_search(&log);
    get(&p, &r);
    let (_, hit, fresh) = get(&p, &r);
    assert_eq!(hit, Reason::HitDisk);
    let (store, rec) = only_record(&p);
    let plain = trove::fuzzing::trace_in_plain_format(&rec.trace).unwrap();
    store.update_trace(rec.id, &plain).unwrap();
    drop(store);
    log.take();

    // Served from the format 2 row, with the same checks as from a format 3 one.
    let (value, reason, stats) = get(&p, &r);
    assert_eq!((value.as_str(), &reason), ("A1 B2 X2", &Reason::HitDisk));
    assert_eq!(stats.files_checked, fresh.files_checked);
    assert_eq!(stats.absences_vouched, fresh.absences_vouched);
    assert!(log.take().is_empty(), "a format 2 row was rebuilt");

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
