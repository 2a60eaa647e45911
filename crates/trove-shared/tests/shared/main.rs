//! The shared tier's suites: `local` runs everywhere (memory, a directory, dead and silent
//! ports on 127.0.0.1); `servers` runs against the real servers `.ci/servers` starts, only
//! with `--features servers` (see `.ci/shared`).

mod hints;
mod local;
mod orphans;
mod scenarios;
#[cfg(feature = "servers")]
mod servers;
mod support;
