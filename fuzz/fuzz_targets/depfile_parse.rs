//! A depfile written by a command: its paths, or a reason to refuse it; never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(paths) = trove::fuzzing::parse_depfile(data) {
        assert!(paths.iter().all(|p| !p.contains('\0') && !p.contains('\n')));
    }
});
