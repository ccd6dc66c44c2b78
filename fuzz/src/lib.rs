//! Shared set-ups of the fuzz targets (`fuzz_targets/*.rs`) and of the seed generator
//! (`examples/make_seeds.rs`). Not part of the product: panics here are test failures.

#![forbid(unsafe_code)]

pub mod keydist_fixture;
pub mod model;
pub mod open_fixture;

use group_core::schedule::{EpochSecret, native_keys};
use group_core::suite::{RecordKeys, Suite};
use group_core::wire::Epoch;

/// The group every record-layer target uses.
pub const GROUP_ID: u32 = 7;

/// The suites a target picks from with two bits.
pub const SUITES: [Suite; 4] = [
    Suite::AES_128_CCM,
    Suite::AES_128_CCM_8,
    Suite::AES_128_GCM,
    Suite::CHACHA20_POLY1305,
];

/// Deterministic keys of `epoch` (the fuzzer knows them only through sealed seeds).
pub fn epoch_keys(suite: Suite, epoch: u16) -> RecordKeys {
    let mut secret = [0x5au8; 32];
    secret[..2].copy_from_slice(&epoch.to_be_bytes());
    native_keys(GROUP_ID, Epoch(epoch), suite, &EpochSecret(secret)).expect("enabled suite")
}

/// A deterministic, non-cryptographic RNG for the key-distribution set-ups (the targets must be
/// reproducible from their input alone).
pub struct TestRng(pub u64);

impl rand_core::TryRng for TestRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Ok(self.0 >> 11)
    }
    fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> {
        for b in d {
            *b = self.try_next_u64()? as u8;
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for TestRng {}
