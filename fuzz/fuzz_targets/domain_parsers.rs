#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| verifyd::fuzz_targets::domain_parsers(data));
