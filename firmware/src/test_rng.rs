//! A deterministic generator for the test images only (splitmix64): NOT a CSPRNG. A device
//! uses its hardware TRNG. One file for both users: the firmware's key-distribution self-test
//! (`mod test_rng`) and the footprint images with their host-made transcripts (footprint's
//! `rng` module is this file, included by path).

/// splitmix64 over a seed.
pub struct TestRng(pub u64);

impl rand_core::TryRng for TestRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let [a, b, c, d, ..] = self.try_next_u64()?.to_le_bytes();
        Ok(u32::from_le_bytes([a, b, c, d]))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            for (d, s) in chunk.iter_mut().zip(v.iter()) {
                *d = *s;
            }
        }
        Ok(())
    }
}

// The self-test and the images' transcripts must be reproducible; this is a test generator
// (see above).
impl rand_core::TryCryptoRng for TestRng {}
