#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gemini_oauth::fuzz_entry::adc(data));
