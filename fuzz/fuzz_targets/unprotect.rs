#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dlms_sec_fuzz_harness::unprotect(data));
