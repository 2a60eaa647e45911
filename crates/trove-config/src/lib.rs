//! trove-config
