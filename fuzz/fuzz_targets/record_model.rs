//! Structured target: senders and receivers driven by an operation list against a reference
//! model (see `dtls_group_fuzz::model`). Nothing delivered that was not sealed, nothing
//! delivered twice, no (key, epoch, sid, seq) sealed twice, every refusal counted.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dtls_group_fuzz::model::run(data);
});
