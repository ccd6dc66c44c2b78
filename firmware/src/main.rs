//! The firmware image: runs [`firmware::run`] and exits through semihosting.
//!
//! On `thumbv7em-none-eabihf` this is a `#![no_std]`, `#![no_main]` Cortex-M image
//! (cortex-m-rt start-up, no heap): it prints each step over semihosting and exits with
//! `EXIT_SUCCESS`, or prints the failing step's code and exits with `EXIT_FAILURE`, which QEMU
//! turns into its own exit status (0 or 1). A panic prints its message and exits with failure.
//!
//! ```text
//! cargo build -p firmware --profile firmware --target thumbv7em-none-eabihf
//! qemu-system-arm -M mps2-an386 -nographic -semihosting-config enable=on,target=native \
//!     -kernel $CARGO_TARGET_DIR/thumbv7em-none-eabihf/firmware/firmware
//! ```
//!
//! With feature `defmt` the image writes defmt frames instead of text (`defmt_image.rs`).
//!
//! On the host it is an ordinary program running the same self-test.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(all(target_os = "none", feature = "defmt"))]
mod defmt_image;

#[cfg(all(target_os = "none", not(feature = "defmt")))]
mod image {
    use core::fmt;
    use core::panic::PanicInfo;

    // cortex-m also links the critical-section implementation semihosting output needs.
    use cortex_m::asm;
    use cortex_m_rt::entry;
    use cortex_m_semihosting::{debug, hprintln};

    struct Semihosting;

    impl firmware::Report for Semihosting {
        fn line(&mut self, args: fmt::Arguments<'_>) {
            hprintln!("{}", args);
        }
    }

    #[entry]
    fn main() -> ! {
        hprintln!("dtls-group firmware self-test (thumbv7em-none-eabihf)");
        match firmware::run(&mut Semihosting) {
            Ok(s) => {
                hprintln!("PASS {:?}", s);
                debug::exit(debug::EXIT_SUCCESS);
            }
            Err(f) => {
                hprintln!("FAIL {:?} code {}", f, f.code());
                debug::exit(debug::EXIT_FAILURE);
            }
        }
        loop {
            asm::wfi();
        }
    }

    #[panic_handler]
    fn panic(info: &PanicInfo) -> ! {
        hprintln!("PANIC {}", info);
        debug::exit(debug::EXIT_FAILURE);
        loop {
            asm::wfi();
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    struct Stdout;
    impl firmware::Report for Stdout {
        fn line(&mut self, args: std::fmt::Arguments<'_>) {
            println!("{args}");
        }
    }
    match firmware::run(&mut Stdout) {
        Ok(s) => println!("PASS {s:?}"),
        Err(f) => {
            println!("FAIL {f:?} code {}", f.code());
            std::process::exit(i32::from(f.code()));
        }
    }
}
