//! trove
