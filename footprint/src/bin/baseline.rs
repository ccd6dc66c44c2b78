//! The baseline image: everything but the library (runtime, vector table, semihosting output,
//! stack painting, the known-answer data). `.ci/footprint.sh` subtracts its size.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(target_os = "none")]
use cortex_m_rt as _;

#[cfg_attr(target_os = "none", cortex_m_rt::entry)]
fn main() -> ! {
    footprint::exit::finish("baseline", footprint::baseline())
}
