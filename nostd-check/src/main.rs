//! Link proof: [`group_core`]'s record path in a `#![no_std]`, `#![no_main]` binary with no
//! global allocator.
//!
//! Build and run it as `.ci/nostd.sh` does:
//!
//! ```text
//! cargo build -p nostd-check --profile nostd && target/nostd/nostd-check; echo $?
//! ```
//!
//! `[profile.nostd]` (root `Cargo.toml`) is the dev profile with `panic = "abort"`. In that
//! build this file is `no_std` + `no_main`: a panic handler that calls libc's `abort`, a C
//! `main` that runs [`nostd_check::round_trip`] and returns 0 on success or
//! [`nostd_check::Failure::code`], and no `#[global_allocator]`. If anything in the crate
//! graph linked `alloc`, rustc would stop with "no global memory allocator found"; so a
//! successful build proves the record path needs no heap, and a zero exit status proves it
//! works. libc is linked only for the C runtime start-up and `abort`.
//!
//! Why `unsafe_code` is allowed here, on three items and nowhere else in the workspace:
//! - `main` must be `#[unsafe(no_mangle)]` so that the C runtime finds it;
//! - `rust_eh_personality` must exist (empty, never called with `panic = "abort"`) because the
//!   precompiled `core` still references it in a build without LTO;
//! - `abort` is declared in an `unsafe extern "C"` block (as a safe function: it takes no
//!   arguments and never returns).
//!
//! rustc refuses `no_std` binaries built with `panic = "unwind"` ("unwinding panics are not
//! supported without std"), and the workspace's `cargo test`, `cargo clippy` and
//! `cargo build` use the unwinding dev profile. In that configuration only, this file is an
//! ordinary std program that runs the same round trip and says that it is not the proof.
#![cfg_attr(panic = "abort", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(panic = "abort")]
mod proof {
    use core::panic::PanicInfo;

    #[link(name = "c")]
    #[allow(unsafe_code)]
    unsafe extern "C" {
        /// libc `abort(3)`.
        safe fn abort() -> !;
    }

    #[panic_handler]
    fn panic(_: &PanicInfo) -> ! {
        abort()
    }

    /// The C entry point: runs the round trip; 0 on success, else the failing step's code.
    #[allow(unsafe_code)]
    #[unsafe(no_mangle)]
    pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
        match nostd_check::round_trip() {
            Ok(_) => 0,
            Err(f) => f.code(),
        }
    }

    /// Referenced by the precompiled `core` in builds without LTO; never called, because
    /// nothing unwinds with `panic = "abort"`.
    #[allow(unsafe_code)]
    #[unsafe(no_mangle)]
    pub extern "C" fn rust_eh_personality() {}
}

#[cfg(not(panic = "abort"))]
fn main() {
    eprintln!(
        "nostd-check: built with panic=unwind, so this is an ordinary std program and NOT the \
         link proof; build it with `cargo build -p nostd-check --profile nostd`"
    );
    match nostd_check::round_trip() {
        Ok(s) => println!("round trip ok: {s:?}"),
        Err(f) => {
            eprintln!("round trip failed: {f:?}");
            std::process::exit(f.code());
        }
    }
}
