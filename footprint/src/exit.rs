//! How an image reports: one line `footprint-run image=NAME ok stack=.. ram_group32=.. seal=..
//! open=.. join=.. rekey=.. kat=..` (or `footprint-run image=NAME FAIL ..`), then the exit
//! status (QEMU's, through semihosting, on the target).

use core::fmt;

use crate::{Failure, Figures, app_memory_work, vectors_checksum};

struct Line<'a>(&'a str, &'a Result<Figures, Failure>);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Ok(x) => write!(
                f,
                "footprint-run image={} ok stack={} ram_group32={} seal={} open={} join={} rekey={} data={:08x} app={:08x}",
                self.0,
                x.stack,
                x.ram_group32,
                x.seal,
                x.open,
                x.join,
                x.rekey,
                vectors_checksum(),
                app_memory_work()
            ),
            Err(e) => write!(f, "footprint-run image={} FAIL {:?}", self.0, e),
        }
    }
}

/// Prints the image's line and exits (0 on success).
#[cfg(target_os = "none")]
pub fn finish(image: &str, r: Result<Figures, Failure>) -> ! {
    use cortex_m_semihosting::{debug, hprintln};
    hprintln!("{}", Line(image, &r));
    debug::exit(if r.is_ok() {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}

/// Prints the image's line and exits (0 on success).
#[cfg(not(target_os = "none"))]
pub fn finish(image: &str, r: Result<Figures, Failure>) -> ! {
    extern crate std;
    std::println!("{}", Line(image, &r));
    std::process::exit(if r.is_ok() { 0 } else { 1 })
}

/// A panic prints a fixed line and exits with failure. The message and location are printed
/// only with the feature `panic-message` (to debug an image): formatting them links every
/// panic site's file path and `Location`, and the `Debug` impls of the errors that library
/// code `expect`s (for example `sec1`'s and `der`'s), which a production panic handler
/// (halt or reset) does not link: 3 to 12 KB of the images' flash (docs/footprint.md).
#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    use cortex_m_semihosting::{debug, hprintln};
    #[cfg(feature = "panic-message")]
    hprintln!("PANIC {}", info);
    #[cfg(not(feature = "panic-message"))]
    {
        let _ = info;
        hprintln!("PANIC (build with --features panic-message for where and why)");
    }
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
