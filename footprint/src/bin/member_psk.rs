//! The `member-psk` image: a key-distribution member in PSK mode joins, follows a rekey,
//! seals and opens (transcript made on the host by the key server: `transcripts/psk.bin`).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use group_core::keydist::{MemberCredentials, Psk};

#[cfg_attr(target_os = "none", cortex_m_rt::entry)]
fn main() -> ! {
    let creds = MemberCredentials::Psk(Psk(footprint::member::PSK));
    footprint::exit::finish(
        "member-psk",
        footprint::with_kat(|| {
            footprint::member::run(creds, include_bytes!("../../transcripts/psk.bin"))
        }),
    )
}
