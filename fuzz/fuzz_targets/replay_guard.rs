#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dlms_sec_fuzz_harness::replay_guard(data));
