//! # group-embedded
//!
//! Adapter of [`group_core`] for embedded network stacks (smoltcp, embassy-net) and
//! flash-backed sequence storage. Not implemented yet: today this crate only re-exports the
//! core so that firmware builds for `thumbv7em-none-eabihf` exercise the same dependency graph.
#![no_std]
#![forbid(unsafe_code)]

pub use group_core;
