//! A configuration file's text: parsed into a configuration or refused with an error that
//! names the file; never a panic.
#![no_main]

use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(e) = trove_config::Config::parse(text, Path::new("/fuzz/trove.ron"))
    {
        assert!(e.to_string().contains("trove.ron"));
    }
});
