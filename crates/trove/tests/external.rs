//! Run-time recipes and external inputs: what the Python package builds on.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use support::{Log, Project};
use trove::{BuildError, DynRecipe, Engine, Error, Reason, Residency, Why};

/// A run-time recipe that logs each build and records one external `code` input.
fn recipe(log: &Log) -> DynRecipe {
    let log = log.clone();
    DynRecipe::new("py.table", 1, move |cx, args| {
        log.push(format!("py.table {args}"));
        cx.track_external("code", "helper.py");
        Ok(format!("table of {args}").into_bytes())
    })
}

/// The fingerprint of `code` inputs the test controls.
fn fingerprinted(engine: &Engine, value: &Arc<Mutex<Option<String>>>) {
    let value = value.clone();
    engine.register_fingerprinter("code", move |name| {
        assert_eq!(name, "helper.py");
        value.lock().unwrap().clone()
    });
}

#[test]
fn a_run_time_recipe_is_built_once_and_served_raw_from_disk_in_a_new_engine() {
    let p = Project::new();
    let log = Log::new();
    let code = Arc::new(Mutex::new(Some("v1".to_owned())));
    let engine = p.engine();
    fingerprinted(&engine, &code);
    let args = "(1, 'a')".to_owned();
    let built = engine.get_explained(&recipe(&log), &args).unwrap();
    assert_eq!(*built.value, b"table of (1, 'a')".to_vec());
    assert_eq!(built.reason, Reason::Built(Why::NoEntry));
    drop(engine);

    let engine = p.engine();
    fingerprinted(&engine, &code);
    let served = engine.get_explained(&recipe(&log), &args).unwrap();
    assert_eq!(served.reason, Reason::HitDisk);
    assert_eq!(served.digest, built.digest);
    assert_eq!(log.take(), ["py.table (1, 'a')"]);
}

#[test]
fn an_external_input_that_changes_rebuilds_and_the_reason_names_it() {
    let p = Project::new();
    let log = Log::new();
    let code = Arc::new(Mutex::new(Some("1.0".to_owned())));
    let engine = p.engine();
    fingerprinted(&engine, &code);
    let args = "()".to_owned();
    engine.get(&recipe(&log), &args).unwrap();
    assert_eq!(
        engine.residency(&recipe(&log), &args).unwrap(),
        Residency::InMemory
    );

    *code.lock().unwrap() = Some("2.0".to_owned());
    let why = Why::Changed {
        what: "helper.py (code)".into(),
        from: "1.0".into(),
        to: "2.0".into(),
    };
    assert_eq!(
        engine.residency(&recipe(&log), &args).unwrap(),
        Residency::Stale(why.clone())
    );
    let served = engine.get_explained(&recipe(&log), &args).unwrap();
    assert_eq!(served.reason, Reason::Built(why));
    assert_eq!(
        served.reason.to_string(),
        "built: helper.py (code) changed (1.0 -> 2.0)"
    );

    *code.lock().unwrap() = None;
    let served = engine.get_explained(&recipe(&log), &args).unwrap();
    assert_eq!(
        served.reason.to_string(),
        "built: helper.py (code) changed (2.0 -> absent)"
    );
    assert_eq!(log.take(), ["py.table ()", "py.table ()", "py.table ()"]);
}

#[test]
fn without_a_fingerprinter_for_its_kind_a_stored_object_is_not_served() {
    let p = Project::new();
    let log = Log::new();
    let code = Arc::new(Mutex::new(Some("v1".to_owned())));
    let engine = p.engine();
    fingerprinted(&engine, &code);
    engine.get(&recipe(&log), &"()".to_owned()).unwrap();
    drop(engine);

    // Another process (the CLI) that knows no `code` fingerprinter.
    let engine = p.engine();
    let served = engine
        .get_explained(&recipe(&log), &"()".to_owned())
        .unwrap();
    assert!(
        matches!(&served.reason, Reason::Built(Why::Unverifiable(m)) if m.contains("`code`")),
        "{}",
        served.reason
    );
    assert_eq!(log.take().len(), 2);
}

#[test]
fn a_check_on_the_bytes_rejects_a_stored_object_and_it_is_rebuilt() {
    let p = Project::new();
    let log = Log::new();
    let code = Arc::new(Mutex::new(Some("v1".to_owned())));
    let engine = p.engine();
    fingerprinted(&engine, &code);
    engine.get(&recipe(&log), &"()".to_owned()).unwrap();
    drop(engine);
    let engine = p.engine();
    fingerprinted(&engine, &code);
    let strict = recipe(&log).with_check(|bytes| {
        if bytes.starts_with(b"table") {
            Err("not a table any more".into())
        } else {
            Ok(())
        }
    });
    let served = engine.get_explained(&strict, &"()".to_owned()).unwrap();
    assert_eq!(
        served.reason.to_string(),
        "built: check failed: not a table any more"
    );
    assert_eq!(log.take().len(), 2);
}

#[derive(Debug)]
struct Raised(&'static str);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Raised {}

/// The recipe's own error, downcast from what a caller or a waiter got.
fn raised(e: &Error) -> Option<&'static str> {
    match e {
        Error::Shared(inner) => raised(inner),
        Error::Build {
            source: BuildError::Other(source),
            ..
        } => source.downcast_ref::<Raised>().map(|r| r.0),
        _ => None,
    }
}

#[test]
fn a_recipes_own_error_reaches_the_caller_and_every_waiter_whole_and_nothing_is_stored() {
    let p = Project::new();
    let engine = p.engine();
    let builds = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(4));
    let failing = {
        let builds = builds.clone();
        DynRecipe::new("py.fails", 1, move |_, _| {
            builds.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(200));
            Err(BuildError::Other(Box::new(Raised("ValueError: no rows"))))
        })
    };
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (engine, failing, barrier) = (engine.clone(), failing.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let e = engine.get(&failing, &"()".to_owned()).unwrap_err();
                raised(&e)
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), Some("ValueError: no rows"));
    }
    assert_eq!(builds.load(Ordering::SeqCst), 1);
    assert_eq!(
        engine.residency(&failing, &"()".to_owned()).unwrap(),
        Residency::Absent
    );
}
