//! A stored trace, as the disk tier decodes it: never a panic, never an allocation the
//! input's length prefixes ask for, and an accepted trace survives encode and decode.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = trove::fuzzing::decode_trace(data);
});
