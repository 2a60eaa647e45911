//! The shared tier's suites: `local` runs everywhere (memory, a directory, dead and silent
//! ports on 127.0.0.1).

mod local;
mod scenarios;
mod support;
