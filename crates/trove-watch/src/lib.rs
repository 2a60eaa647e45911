//! trove's file watcher: notify behind a debouncer, delivering batches of changed paths
//! under a set of root directories, minus what `.gitignore` files, `.git` and the
//! store exclude.
//!
//! *Architecture invariant:* a path the watcher [covers](Watcher::covers) has every
//! change made after [`Watcher::start`] returned delivered, as [`WatchEvent::Changed`],
//! or announced as possibly lost by [`WatchEvent::Rescan`]. The engine relies on this to
//! skip system calls for inputs the watcher covers, so anything that could break it
//! (an overflowing queue, a watch that failed, a `.gitignore` that changed) is a rescan.
//!
//! `.gitignore` files are read from every directory of a root when the watcher starts
//! (and again when one changes); each applies relative to its own directory, with git's
//! precedence: the nearest file with a matching pattern decides, and nothing under an
//! excluded directory is reported.

mod filter;
mod watcher;

pub use watcher::{WatchError, WatchEvent, WatchOptions, Watcher};
