//! The `member-signed` image: a key-distribution member in signed mode (ECDH + ECDSA P-256)
//! joins, follows a rekey, seals and opens (transcript made on the host by the key server:
//! `transcripts/signed.bin`).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg_attr(target_os = "none", cortex_m_rt::entry)]
fn main() -> ! {
    let r = footprint::member::signed_credentials()
        .ok_or(footprint::Failure::Keys)
        .and_then(|creds| {
            footprint::with_kat(|| {
                footprint::member::run(creds, include_bytes!("../../transcripts/signed.bin"))
            })
        });
    footprint::exit::finish("member-signed", r)
}
