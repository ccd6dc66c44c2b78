//! Peak stack of one call, by painting: on the target, the free stack below the caller is
//! filled with a pattern, the call runs, and the lowest word that no longer holds the pattern
//! marks how deep the call went. On the host, calls run unmeasured (0).

/// Runs `f` and returns its result with the peak stack it used below this function's frame,
/// in bytes (0 on the host).
#[inline(never)]
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, usize) {
    imp::measure(f)
}

#[cfg(not(target_os = "none"))]
mod imp {
    pub fn measure<R>(f: impl FnOnce() -> R) -> (R, usize) {
        (f(), 0)
    }
}

#[cfg(target_os = "none")]
#[allow(unsafe_code)] // the only unsafe code of the crate: reading and writing free stack RAM
mod imp {
    const PATTERN: u32 = 0xC5C5_C5C5;
    /// Words right below the stack pointer that are left unpainted: the painting loop's own
    /// frame lives above the stack pointer it read, this is a margin for the call's prologue.
    const MARGIN: usize = 64;

    unsafe extern "C" {
        /// cortex-m-rt's linker script: the lowest address the stack may grow to (end of
        /// `.bss`/`.uninit`, 4-byte aligned).
        static _stack_end: u32;
    }

    #[inline(always)]
    fn stack_pointer() -> usize {
        cortex_m::register::msp::read() as usize
    }

    pub fn measure<R>(f: impl FnOnce() -> R) -> (R, usize) {
        // Only the address of the linker symbol is taken (no read), which needs no `unsafe`.
        let bottom = core::ptr::addr_of!(_stack_end) as usize;
        let sp = stack_pointer();
        let top = sp.saturating_sub(MARGIN) & !3;
        let mut p = bottom;
        while p < top {
            // SAFETY: [bottom, top) is RAM between the end of the statics and the live stack,
            // 4-byte aligned (cortex-m-rt aligns `_stack_end`; `top` is masked); no live data
            // is there (single core, no interrupts enabled by these images, and everything
            // above `top` including this frame is left untouched).
            unsafe { core::ptr::write_volatile(p as *mut u32, PATTERN) };
            p += 4;
        }
        let r = f();
        let mut low = top;
        let mut q = bottom;
        while q < top {
            // SAFETY: the same aligned RAM words as painted above.
            if unsafe { core::ptr::read_volatile(q as *const u32) } != PATTERN {
                low = q;
                break;
            }
            q += 4;
        }
        (r, sp.saturating_sub(low))
    }
}
