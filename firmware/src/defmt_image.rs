//! The image with feature `defmt`: the same self-test, but every line (the steps, `PASS`,
//! `FAIL`, a panic) and the core's log lines are defmt frames written over semihosting by
//! `defmt-semihosting`, which a host decodes with `defmt-print -e <this ELF>`. Nothing is
//! printed as text: text on the same semihosting stream would corrupt the frames.

use core::fmt;
use core::panic::PanicInfo;

use cortex_m::asm;
use cortex_m_rt::entry;
use cortex_m_semihosting::debug;
use defmt::{Debug2Format, Display2Format};
// Links the global logger (`#[defmt::global_logger]` is in that crate).
use defmt_semihosting as _;

struct Defmt;

impl firmware::Report for Defmt {
    fn line(&mut self, args: fmt::Arguments<'_>) {
        defmt::println!("{}", Display2Format(&args));
    }
}

#[entry]
fn main() -> ! {
    defmt::println!("dtls-group firmware self-test (thumbv7em-none-eabihf, defmt)");
    match firmware::run(&mut Defmt) {
        Ok(s) => {
            defmt::println!("PASS {}", Debug2Format(&s));
            debug::exit(debug::EXIT_SUCCESS);
        }
        Err(f) => {
            defmt::println!("FAIL {} code {}", Debug2Format(&f), f.code());
            debug::exit(debug::EXIT_FAILURE);
        }
    }
    loop {
        asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    defmt::println!("PANIC {}", Display2Format(info));
    debug::exit(debug::EXIT_FAILURE);
    loop {
        asm::wfi();
    }
}
