//! A watcher loop in the manner of salsa's `lazy-input` example: serve an object, then
//! serve it again each time an input it was built from really changes.
//!
//! The watch is registered *before* the object is first read (`Engine::watch_stale`
//! starts the watcher, then reads the store), so no edit can fall between the read and
//! the watch: an edit before the read is in what was read, an edit after it is an event.
//! A file saved with the same bytes is not a change, and nothing is rebuilt for it.
//!
//! ```text
//! cargo run --example watcher -- watcher-demo      # edit watcher-demo/notes.txt, watch it rebuild
//! cargo run --example watcher -- watcher-demo --rebuilds 1   # stop after one rebuild (CI)
//! ```
//!
//! `tests.rs` runs it: it edits the file and waits for the rebuild.

use std::path::{Path, PathBuf};

use trove::{BuildError, Cx, Engine, Recipe, WatchUpdate};

/// Words and lines of a text file.
#[derive(Clone)]
struct Count;

impl Recipe for Count {
    const NAME: &'static str = "count";
    const VERSION: u32 = 1;
    type Args = String; // the file, relative to the project
    type Output = (usize, usize); // (words, lines)

    fn build(&self, cx: &mut Cx, path: &String) -> Result<(usize, usize), BuildError> {
        let text = cx.read_to_string(path)?; // tracked: editing the file makes it stale
        Ok((text.split_whitespace().count(), text.lines().count()))
    }
}

/// The file the demo counts.
const FILE: &str = "notes.txt";

/// Serves the count of `dir/notes.txt` and serves it again after each change, handing
/// every line of output to `out`; returns after `rebuilds` rebuilds (`None`: never).
pub(crate) fn run(
    dir: &Path,
    rebuilds: Option<usize>,
    out: &mut dyn FnMut(String),
) -> Result<(), trove::Error> {
    let engine = Engine::open_in(dir)?;
    // First the watch, then the read.
    let mut stream = engine.watch_stale()?;
    let file = FILE.to_owned();
    let served = engine.get_explained(&Count, &file)?;
    let (words, lines) = *served.value;
    out(format!(
        "{file}: {words} words, {lines} lines ({})",
        served.reason
    ));
    let mut rebuilt = 0;
    while rebuilds.is_none_or(|limit| rebuilt < limit) {
        let WatchUpdate::Stale(event) = stream.recv()? else {
            continue;
        };
        out(format!("stale: {}: {}", event.label(), event.why));
        if event.recipe != Count::NAME {
            continue;
        }
        // The arguments come typed from the event, checked against its key.
        let args = event.args_for(&Count)?;
        let served = engine.get_explained(&Count, &args)?;
        let (words, lines) = *served.value;
        out(format!(
            "{args}: {words} words, {lines} lines ({})",
            served.reason
        ));
        rebuilt += 1;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut dir = PathBuf::from("watcher-demo");
    let mut rebuilds = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rebuilds" => {
                rebuilds = Some(args.next().ok_or("--rebuilds needs a number")?.parse()?)
            }
            _ => dir = PathBuf::from(arg),
        }
    }
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(FILE);
    if !file.exists() {
        std::fs::write(&file, "edit this file and watch its count rebuild\n")?;
    }
    eprintln!("watching {}; edit it (Ctrl-C to stop)", file.display());
    run(&dir, rebuilds, &mut |line| println!("{line}"))?;
    Ok(())
}
