//! trove's cross-crate scenario suites, one test binary (ripgrep's `tests/tests.rs`):
//! several processes sharing one store through `trove-probe` (`src/main.rs`), processes
//! killed while they publish, full disks, and the store's fail points.
//!
//! `cargo test -p trove-tests` runs them; the fail point suite needs
//! `--features failpoints` (README's test command, `.ci/test`, passes it).

mod failpoints;
mod processes;
#[allow(dead_code)] // the probe's recipes; the suites use those they read back
#[path = "src/recipes.rs"]
mod recipes;
mod reliability;
mod util;
