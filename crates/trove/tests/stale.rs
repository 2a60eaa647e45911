//! Stale serves and waits found by real use, pinned at the engine: cycles across threads,
//! recipes registered at link time, forcing, the configuration as part of a Rust recipe's
//! definition, and explanations that name what really differs.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, OnceLock};

use support::{Log, Probe, Project, text};
use trove::{BuildError, Config, Cx, Engine, Error, Prediction, Reason, Recipe, Why};

fn is_cycle(e: &Error) -> bool {
    match e {
        Error::Cycle { .. } => true,
        Error::Shared(inner) => is_cycle(inner),
        Error::Build {
            source: BuildError::Dependency(inner),
            ..
        } => is_cycle(inner),
        _ => false,
    }
}

#[test]
fn two_threads_each_building_one_side_of_a_cycle_get_an_error_not_a_wait() {
    let p = Project::new();
    let log = Log::new();
    let cyclic = Arc::new(AtomicBool::new(true));
    let both_started = Arc::new(Barrier::new(2));
    let a_cell: Arc<OnceLock<Probe<String>>> = Arc::new(OnceLock::new());
    let b_cell: Arc<OnceLock<Probe<String>>> = Arc::new(OnceLock::new());
    let make = |name: &'static str, other: Arc<OnceLock<Probe<String>>>| {
        let (cyclic, both_started) = (cyclic.clone(), both_started.clone());
        Probe::new(name, &log, move |cx: &mut Cx, arg: &String| {
            if !cyclic.load(Ordering::SeqCst) {
                return Ok(format!("{name} alone"));
            }
            // Each thread is inside its own build before either asks for the other.
            both_started.wait();
            let other = other.get().expect("both recipes made").clone();
            cx.get(&other, arg).map(|v| format!("{name}({v})"))
        })
    };
    a_cell.set(make("a", b_cell.clone())).ok();
    b_cell.set(make("b", a_cell.clone())).ok();
    let e = p.engine();
    let (a, b) = (a_cell.get().unwrap().clone(), b_cell.get().unwrap().clone());
    let arg = "x".to_owned();
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| e.get(&a, &arg));
        let tb = s.spawn(|| e.get(&b, &arg));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let (ea, eb) = (ra.unwrap_err(), rb.unwrap_err());
    assert!(
        is_cycle(&ea) || is_cycle(&eb),
        "a cycle is named: {ea} / {eb}"
    );
    // Nothing was stored and nothing is left locked: both keys are usable at once.
    cyclic.store(false, Ordering::SeqCst);
    assert_eq!(*e.get(&a, &arg).unwrap(), "a alone");
    assert_eq!(*e.get(&b, &arg).unwrap(), "b alone");
}

#[test]
fn a_recipe_asking_for_its_own_key_is_a_cycle_and_the_key_stays_usable() {
    let p = Project::new();
    let log = Log::new();
    let again = Arc::new(AtomicBool::new(true));
    let me: Arc<OnceLock<Probe<String>>> = Arc::new(OnceLock::new());
    let (me2, again2) = (me.clone(), again.clone());
    let r = Probe::new("selfish", &log, move |cx: &mut Cx, arg: &String| {
        if again2.load(Ordering::SeqCst) {
            let me = me2.get().unwrap().clone();
            cx.get(&me, arg)?;
        }
        Ok("done".to_owned())
    });
    me.set(r.clone()).ok();
    let e = p.engine();
    let err = e.get(&r, &"k".to_owned()).unwrap_err();
    assert!(is_cycle(&err), "{err}");
    again.store(false, Ordering::SeqCst);
    assert_eq!(*e.get(&r, &"k".to_owned()).unwrap(), "done");
}

// ------------------------------------------------------- recipes registered at link time

#[derive(Clone)]
struct Upper;

impl Recipe for Upper {
    const NAME: &'static str = "stale-upper";
    const VERSION: u32 = 1;
    type Args = String;
    type Output = String;
    fn build(&self, cx: &mut Cx, path: &String) -> Result<String, BuildError> {
        Ok(cx.read_to_string(path)?.to_uppercase())
    }
}

#[derive(Clone)]
struct Shout;

impl Recipe for Shout {
    const NAME: &'static str = "stale-shout";
    const VERSION: u32 = 1;
    type Args = String;
    type Output = String;
    fn build(&self, cx: &mut Cx, path: &String) -> Result<String, BuildError> {
        Ok(format!("{}!", cx.get(&Upper, path)?))
    }
}

trove::register!(Upper, Shout);

#[test]
fn a_fresh_process_validates_an_object_that_depends_on_another_recipe() {
    let p = Project::new();
    let path = p.write("in.txt", "hi").to_string_lossy().into_owned();
    let first = p.engine();
    assert_eq!(*first.get(&Shout, &path).unwrap(), "HI!");
    drop(first);
    // A new engine knows nothing but what was linked: nobody registers Upper by hand.
    let fresh = p.engine();
    let served = fresh.get_explained(&Shout, &path).unwrap();
    assert_eq!(served.reason, Reason::HitDisk);
    assert_eq!(*served.value, "HI!");
    // And the dependency is really checked: editing its input rebuilds both.
    p.write("in.txt", "ho");
    let fresh = p.engine();
    let served = fresh.get_explained(&Shout, &path).unwrap();
    assert_eq!(*served.value, "HO!");
    assert!(
        served
            .reason
            .to_string()
            .starts_with("built: dependency stale-upper"),
        "{}",
        served.reason
    );
}

// ------------------------------------------------------------------------------ forcing

#[test]
fn refresh_builds_anew_and_replaces_what_is_stored() {
    let p = Project::new();
    let log = Log::new();
    let r = text("text", &log);
    let path = p.write("a.txt", "1").to_string_lossy().into_owned();
    assert_eq!(*p.engine().get(&r, &path).unwrap(), "1");
    let e = p.engine();
    let refreshed = e.refresh(&r, &path).unwrap();
    assert_eq!(refreshed.reason, Reason::Built(Why::Forced));
    assert_eq!(
        e.get_explained(&r, &path).unwrap().reason,
        Reason::HitMemory
    );
    assert_eq!(
        p.engine().get_explained(&r, &path).unwrap().reason,
        Reason::HitDisk
    );
    assert_eq!(log.take().len(), 2, "the first build and the forced one");
}

// ---------------------------------------------- the configuration in a Rust recipe's definition

fn engine_with(p: &Project, config: &str) -> Engine {
    let file = p.write("trove.ron", config);
    Engine::open(Config::load(&file).unwrap()).unwrap()
}

#[test]
fn declaring_inputs_or_env_for_a_rust_recipe_in_the_configuration_rebuilds_it() {
    let p = Project::new();
    let log = Log::new();
    let r = text("text", &log);
    let path = p.write("a.txt", "1").to_string_lossy().into_owned();
    p.write("extra.txt", "e");
    let plain = r#"(recipes: { "text": () })"#;
    assert_eq!(
        engine_with(&p, plain)
            .get_explained(&r, &path)
            .unwrap()
            .reason,
        Reason::Built(Why::NoEntry)
    );
    let with_inputs = r#"(recipes: { "text": (inputs: ["extra.txt"]) })"#;
    assert_eq!(
        engine_with(&p, with_inputs)
            .get_explained(&r, &path)
            .unwrap()
            .reason
            .to_string(),
        "built: recipe definition changed (inputs)"
    );
    // Reformatting the file changes nothing; editing another recipe neither.
    let reformatted = "// ours\n(\n  recipes: {\n    \"other\": (env: [\"X\"]),\n    \"text\": (inputs: [\"extra.txt\"]),\n  },\n)\n";
    assert_eq!(
        engine_with(&p, reformatted)
            .get_explained(&r, &path)
            .unwrap()
            .reason,
        Reason::HitDisk
    );
    assert_eq!(log.take().len(), 2);
}

// --------------------------------------------------------- explanations name the real cause

#[test]
fn with_several_variants_explain_names_what_differs_in_the_one_last_served() {
    let p = Project::new();
    let log = Log::new();
    let r = Probe::new("pair", &log, |cx: &mut Cx, _: &String| {
        Ok(format!(
            "{}{}",
            cx.read_to_string("a.txt")?,
            cx.read_to_string("b.txt")?
        ))
    });
    let arg = String::new();
    let serve = |want: &str| {
        // A new engine per step: a new process, and the last one's hits are written.
        let e = p.engine();
        let value = e.get(&r, &arg).unwrap();
        assert_eq!(*value, want);
    };
    p.write("a.txt", "main");
    p.write("b.txt", "1");
    serve("main1");
    p.write("a.txt", "feat");
    serve("feat1"); // the newest variant
    p.write("a.txt", "main");
    serve("main1"); // the first variant comes back (a branch switch) and is served
    p.write("b.txt", "2");
    let e = p.engine();
    match e.explain(&r, &arg).unwrap() {
        Prediction::Build(Why::Changed { what, .. }) => {
            assert_eq!(what, "b.txt", "what changed in the variant last served")
        }
        other => panic!("expected a build, got {other}"),
    }
}

// ------------------------------------------------------------- the watcher and traced inputs

#[test]
fn with_a_watcher_a_traced_object_checks_only_the_files_outside_the_roots() {
    let p = Project::new();
    p.write("data/a.txt", "1");
    let file = p.write(
        "trove.ron",
        r#"(watch: (roots: ["data"]), recipes: { "cat": (command: ["cat", "data/a.txt"]) })"#,
    );
    let config = Config::load(&file).unwrap();
    let e = Engine::open(config.clone()).unwrap();
    let _watch = e.watch().unwrap();
    let r = trove::CommandRecipe::new("cat", config.recipes["cat"].clone());
    let args: Vec<String> = Vec::new();
    assert_eq!(e.get(&r, &args).unwrap().to_vec().unwrap(), b"1");
    e.get(&r, &args).unwrap();
    let before = e.stats();
    e.get(&r, &args).unwrap();
    let checked = e.stats().files_checked - before.files_checked;
    // Without a watcher a hit checks every file input: data/a.txt, cat, libc, locale
    // files. With it, everything but data/a.txt (outside the roots: checked with stat).
    let plain = Engine::open(config.clone()).unwrap();
    plain.get(&r, &args).unwrap();
    let before = plain.stats();
    plain.get(&r, &args).unwrap();
    let all = plain.stats().files_checked - before.files_checked;
    assert!(checked > 0, "files outside the roots are still checked");
    assert_eq!(checked, all - 1, "all but the one under the roots");
    // An edit under the roots is seen through the watcher.
    p.write("data/a.txt", "2");
    let seen = support::wait_until(std::time::Duration::from_secs(10), || {
        e.get(&r, &args).unwrap().to_vec().unwrap() == b"2"
    });
    assert!(seen, "the edit was never seen");
}
