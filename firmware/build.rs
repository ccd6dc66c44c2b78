//! For the bare-metal target only: put `memory.x` where cortex-m-rt's `link.x` finds it, and
//! link the image with `link.x`. Host builds need neither.
//!
//! `FIRMWARE_INJECT_FAILURE=1` in the environment builds an image whose self-test expects a
//! wrong known answer (`cfg(inject_failure)`), so that CI can prove it sees a failing image fail.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=FIRMWARE_INJECT_FAILURE");
    println!("cargo::rustc-check-cfg=cfg(inject_failure)");
    if env::var_os("FIRMWARE_INJECT_FAILURE").is_some_and(|v| v == "1") {
        println!("cargo:rustc-cfg=inject_failure");
    }
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR set by cargo"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    // Feature `defmt`: the linker script that places defmt's interned format strings.
    if env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    }
}
