#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| verifyd::fuzz_targets::amqp_request(data));
