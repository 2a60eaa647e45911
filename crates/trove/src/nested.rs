//! Nested runs: a trove request made by a command that a command recipe is building
//! (`trove run` inside a recipe's command, or any program embedding the engine).
//!
//! The outer build hands its command two variables:
//! - `TROVE_BUILDING`: the keys being built on the way to this command, outermost first
//!   (hex, comma-separated). A nested request for one of them is a cycle across
//!   processes; it is refused at once instead of waiting for a lock its own ancestor
//!   holds.
//! - `TROVE_NESTED`: a file where every top-level request the nested process answers
//!   appends one JSON line (recipe, arguments, key, output digest). After the command
//!   exits, the outer build adds each as an object input of its own trace, so a nested
//!   object is a tracked dependency with early cutoff, never an untracked one.

use std::cell::RefCell;
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use trove_fingerprint::Digest;

use crate::trace::Input;

/// The variable naming the keys being built by the processes above this one.
pub(crate) const BUILDING_VAR: &str = "TROVE_BUILDING";
/// The variable naming the file nested requests are recorded in.
pub(crate) const NESTED_VAR: &str = "TROVE_NESTED";

thread_local! {
    /// Keys being built on this thread, innermost last: a recipe asking for one of them
    /// is a cycle. Together with [`inherited`] (the processes above), the chain of builds
    /// a request is made inside.
    pub(crate) static BUILDING: RefCell<Vec<Digest>> = const { RefCell::new(Vec::new()) };
}

/// One nested request, as recorded for the outer build.
#[derive(Serialize, Deserialize)]
struct Record {
    recipe: String,
    args_display: String,
    /// The postcard encoding of the arguments, hex.
    args: String,
    key: String,
    output: String,
}

/// The keys the processes above this one are building (from `TROVE_BUILDING`).
pub(crate) fn inherited() -> &'static [Digest] {
    static CHAIN: OnceLock<Vec<Digest>> = OnceLock::new();
    CHAIN.get_or_init(|| {
        std::env::var(BUILDING_VAR)
            .map(|v| v.split(',').filter_map(Digest::from_hex).collect())
            .unwrap_or_default()
    })
}

/// The keys being built on the way to a request made now on this thread: by the
/// processes that started this one, then by this thread.
pub(crate) fn chain() -> Vec<Digest> {
    let mut keys: Vec<Digest> = inherited().to_vec();
    BUILDING.with(|b| keys.extend(b.borrow().iter().copied()));
    keys
}

/// The value of `TROVE_BUILDING` for a command started by the build on this thread.
pub(crate) fn chain_for_child() -> String {
    chain()
        .iter()
        .map(Digest::hex)
        .collect::<Vec<_>>()
        .join(",")
}

/// The file named by `TROVE_NESTED`, when a build started this process.
fn nested_file() -> Option<&'static std::ffi::OsString> {
    static FILE: OnceLock<Option<std::ffi::OsString>> = OnceLock::new();
    FILE.get_or_init(|| std::env::var_os(NESTED_VAR)).as_ref()
}

/// Whether a request made now on this thread is to be recorded: a build started this
/// process, and the request is not made inside a build of this process (those are that
/// build's own inputs).
pub(crate) fn recording() -> bool {
    nested_file().is_some() && BUILDING.with(|b| b.borrow().is_empty())
}

/// Records a top-level request for the build that started this process (see
/// [`recording`]).
pub(crate) fn record(recipe: &str, args_display: &str, args: &[u8], key: Digest, output: Digest) {
    let Some(path) = nested_file() else {
        return;
    };
    let record = Record {
        recipe: recipe.to_owned(),
        args_display: args_display.to_owned(),
        args: trove_fingerprint::hex(args),
        key: key.hex(),
        output: output.hex(),
    };
    let Ok(mut line) = serde_json::to_string(&record) else {
        return;
    };
    line.push('\n');
    // One write of one line with O_APPEND: lines from nested processes never interleave.
    let written = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(
            "cannot record this request for the build that started it ({}): {e}; \
             that object will not know it depends on this one",
            Path::new(path).display()
        );
    }
}

/// The object inputs recorded in `path` by nested requests; lines that do not parse are
/// an error naming the file (a build whose dependencies are unknown must not be stored).
pub(crate) fn read(path: &Path) -> Result<Vec<Input>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut inputs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let parsed = serde_json::from_str::<Record>(line).ok().and_then(|r| {
            Some(Input::Object {
                recipe: r.recipe,
                args_display: r.args_display,
                args: trove_fingerprint::from_hex(&r.args)?,
                key: Digest::from_hex(&r.key)?,
                output: Digest::from_hex(&r.output)?,
            })
        });
        match parsed {
            Some(input) => inputs.push(input),
            None => {
                return Err(format!(
                    "{}:{}: not a nested request record",
                    path.display(),
                    n + 1
                ));
            }
        }
    }
    Ok(inputs)
}
