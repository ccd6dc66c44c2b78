//! # group-examples
//!
//! The lighting-control demo as a library, so that the `lighting-demo` binary stays thin and
//! the workspace tests can run the whole scenario in process.
//!
//! - [`command`]: the application payload (postcard): `On`, `Off`, `Dim`, `Scene`.
//! - [`node`]: lights and switches, each a thread driving a `group_std::member::MemberRuntime`.
//! - [`attacker`]: a keyless UDP socket that captures, replays, modifies and forges records.
//! - [`scenario`]: the scripted story, [`scenario::run`].
//! - [`display`]: the timestamped lines and the row of lights.
//! - [`summary`]: the outcome, its table, and its JSON form.
//! - [`netns`]: IPv6 runs inside a private network namespace.
//!
//! ```no_run
//! use group_examples::scenario::{Options, run};
//!
//! let summary = run(&Options::default(), Box::new(std::io::stdout())).unwrap();
//! assert!(summary.ok);
//! ```
#![forbid(unsafe_code)]

pub mod attacker;
pub mod command;
pub mod display;
pub use group_std::netns;
pub mod node;
pub mod scenario;
pub mod summary;

/// The examples of `examples/README.md`, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDocTests;
