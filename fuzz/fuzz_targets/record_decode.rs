//! An index row with arbitrary column types and values, decoded as the store decodes the
//! rows it reads: never a panic, and random columns are never a live record.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((record, corrupt)) = trove_store::fuzzing::decode_record(data) {
        // A row marked quarantined (status 1) is returned as such, never as live.
        assert!(
            corrupt.is_some() || record.quarantined.is_some(),
            "a random row passed as a live record"
        );
    }
});
