//! trove-watch
