//! trove-fingerprint
