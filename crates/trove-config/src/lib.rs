//! trove's configuration: the `trove.ron` schema, its defaults, the
//! per-developer `trove.local.ron` overlay, and errors that say where.
//!
//! This is the only crate that knows RON. It reads and checks; it does not
//! read environment variables (the command line handles `--config` and
//! `TROVE_CONFIG`), and apart from [`Config::load`] and [`Config::discover`]
//! it does no IO.
//!
//! ```
//! use std::path::Path;
//! use trove_config::Config;
//!
//! let err = Config::parse("(max_age: \"30\")", Path::new("trove.ron")).unwrap_err();
//! assert_eq!((err.line, err.column), (1, 11));
//! assert!(err.to_string().starts_with("error: trove.ron:1:11: invalid duration"));
//! ```
//!
//! How positions are found: `ron` checks the syntax (and refuses absurd
//! nesting), then a small reader in `syntax.rs` builds a tree that remembers
//! the byte offset of every key and value, and `schema.rs` checks that tree
//! against the schema. serde would forget where values came from.

mod config;
mod error;
mod load;
mod paths;
mod schema;
mod suggest;
mod syntax;
mod units;

pub use config::{
    Config, FILE_NAME, LOCAL_FILE_NAME, LeaseSettings, MAX_FILE_SIZE, Need, Place, RecipeConfig,
    SharedSettings, StoreConfig, WatchConfig,
};
pub use error::ConfigError;
pub use schema::need_var;
pub use suggest::did_you_mean;
pub use units::{format_duration, format_size, parse_duration, parse_size};
