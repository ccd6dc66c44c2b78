//! The `record` image: a light's record layer (AES-128-CCM_8, 32 senders), seal and open, and
//! the GnuTLS CCM_8 known answers.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg_attr(target_os = "none", cortex_m_rt::entry)]
fn main() -> ! {
    footprint::exit::finish("record", footprint::with_kat(footprint::record::run))
}
