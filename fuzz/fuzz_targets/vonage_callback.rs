#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| verifyd::fuzz_targets::vonage_callback(data));
