//! AES-128-CCM (RFC 3610, NIST SP 800-38C) for the record layer's 12-byte nonces, with the
//! whole record processed inside **one** entry into the `aes` crate's backend.
//!
//! Why not `ccm::Ccm<Aes128, _, U12>`: the `ccm` crate runs its CBC-MAC through
//! `BlockCipherEncrypt::encrypt_block`, one call per 16-byte block, and every such call enters
//! `aes`'s run-time backend dispatch afresh. On a CPU with AVX-512 and VAES, `aes` 0.9 picks
//! its VAES-512 backend, whose entry broadcasts the 11 round keys into 512-bit registers
//! (`broadcast_keys`, through `core::array::map`) before it encrypts anything. Whether that
//! dead work is optimised away depends on inlining across codegen units: with
//! `codegen-units = 1` it is; with the default 16 (every `cargo build --release` of a library
//! user) `array::map` stays an out-of-line call that copies 11 round keys per block, and a CCM
//! record costs about 3 times as much (docs/performance.md, "AES-CCM and codegen units").
//!
//! Here the CBC-MAC and the CTR keystream of one record run in one
//! [`BlockCipherEncClosure`], so the backend is entered once per record whatever the build
//! settings, and each iteration encrypts the CTR block beside the (serial) CBC-MAC block, so
//! the CPU overlaps the two: a record costs about what its CBC-MAC alone costs.
//!
//! The output is byte for byte that of `ccm::Ccm<Aes128, U8 | U16, U12>` (checked against it in
//! the tests below, and by the known-answer tests of the record layer).
//!
//! Key distribution uses the same code with 13-byte nonces and 16-byte tags (`AesCcm<13>`,
//! byte for byte `ccm::Ccm<Aes128, U16, U13>`, checked below and by the key-distribution golden
//! vectors): one AES-CCM, one AES fixslice width in a member (issue 12).
//!
//! Sealing and opening are two loops (one per `Mode` type, no branch in either) in the default
//! build, and one loop with a run-time mode in the size builds that set the `aes` crate's
//! `--cfg aes_backend_soft="compact"` (this workspace's `.cargo/config.toml` for thumbv7em):
//! there the software AES block dwarfs a predicted branch, and one pass instead of two saved
//! 456 to 732 bytes of flash in the footprint images and, no longer inlined into `Group::seal`
//! and `Group::open`, 290 to 380 bytes of the seal, open and join stack peaks
//! (docs/footprint.md, tenth step).

use aes::Aes128;
use aes::cipher::consts::U16;
use aes::cipher::{
    Block, BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser, KeyInit,
};
use subtle::ConstantTimeEq;

use super::AeadError;

/// AES-128-CCM with an `N`-byte nonce (12: the record layer's AES suites, write IV salt 4 +
/// explicit nonce 8, L = 3; 13: key distribution, L = 2) and an 8- or 16-byte tag.
pub(crate) struct AesCcm<const N: usize = 12> {
    cipher: Aes128,
    /// 8 or 16 (a byte: this struct is held per epoch slot, issue 12).
    tag_len: u8,
    /// Flags byte of B0 without the Adata bit: M' = (M - 2) / 2 in bits 3..5, L' = L - 1.
    flags: u8,
}

impl<const N: usize> AesCcm<N> {
    /// Bytes of the length field (L = 15 - N).
    const L: usize = 15 - N;
    /// The flags byte of the counter blocks: L' = L - 1.
    const CTR_FLAGS: u8 = (Self::L - 1) as u8;
    /// Largest message: 2^(8L) - 1 bytes (and at most 2^24 - 1).
    const MAX_LEN: usize = if Self::L >= 3 {
        0xFF_FFFF
    } else {
        (1 << (8 * Self::L)) - 1
    };

    /// Keys the cipher; `tag_len` is 8 or 16, the nonce 12 or 13 bytes (`N`).
    pub(crate) fn new(key: &[u8], tag_len: usize) -> Option<Self> {
        if N != 12 && N != 13 {
            return None;
        }
        let (flags, tag_len) = match tag_len {
            8 => ((3 << 3) | Self::CTR_FLAGS, 8),
            16 => ((7 << 3) | Self::CTR_FLAGS, 16),
            _ => return None,
        };
        let cipher = Aes128::new_from_slice(key).ok()?;
        Some(Self {
            cipher,
            tag_len,
            flags,
        })
    }

    /// The tag length: 8 or 16.
    pub(crate) fn tag_len(&self) -> usize {
        usize::from(self.tag_len)
    }

    /// Encrypts `buf` in place and writes the tag into `tag` (exactly the tag length).
    pub(crate) fn seal_in_place(
        &self,
        nonce: &[u8; N],
        aad: &[u8],
        buf: &mut [u8],
        tag: &mut [u8],
    ) -> Result<(), AeadError> {
        self.seal_with(SEAL, nonce, aad, buf, tag)
    }

    /// [`Self::seal_in_place`] with the pass's mode given: [`Sealing`] or `true`.
    fn seal_with<M: Mode>(
        &self,
        mode: M,
        nonce: &[u8; N],
        aad: &[u8],
        buf: &mut [u8],
        tag: &mut [u8],
    ) -> Result<(), AeadError> {
        if !mode.seals() || tag.len() != self.tag_len() {
            return Err(AeadError);
        }
        let b0 = self.b0(nonce, aad, buf.len())?;
        let mut full = [0u8; 16];
        self.cipher.encrypt_with_backend(Pass {
            mode,
            b0,
            base: Self::ctr_base(nonce),
            aad,
            buf,
            tag: &mut full,
        });
        for (t, f) in tag.iter_mut().zip(full.iter()) {
            *t = *f;
        }
        Ok(())
    }

    /// Decrypts `buf` in place and checks `tag` (constant time). On failure `buf` holds
    /// unauthenticated plaintext: the caller wipes it.
    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8; N],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<(), AeadError> {
        self.open_with(OPEN, nonce, aad, buf, tag)
    }

    /// [`Self::open_in_place`] with the pass's mode given: [`Opening`] or `false`.
    fn open_with<M: Mode>(
        &self,
        mode: M,
        nonce: &[u8; N],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<(), AeadError> {
        if mode.seals() || tag.len() != self.tag_len() {
            return Err(AeadError);
        }
        let b0 = self.b0(nonce, aad, buf.len())?;
        let mut full = [0u8; 16];
        self.cipher.encrypt_with_backend(Pass {
            mode,
            b0,
            base: Self::ctr_base(nonce),
            aad,
            buf,
            tag: &mut full,
        });
        let expected = full.get(..self.tag_len()).ok_or(AeadError)?;
        if bool::from(expected.ct_eq(tag)) {
            Ok(())
        } else {
            Err(AeadError)
        }
    }

    /// B0 = flags || nonce || message length (L bytes, big endian).
    fn b0(&self, nonce: &[u8; N], aad: &[u8], len: usize) -> Result<B16, AeadError> {
        if len > Self::MAX_LEN {
            return Err(AeadError);
        }
        let len = u32::try_from(len).map_err(|_| AeadError)?;
        let [_, l0, l1, l2] = len.to_be_bytes();
        let flags = if aad.is_empty() {
            self.flags
        } else {
            self.flags | 0x40
        };
        Ok(block(flags, nonce, [l0, l1, l2]))
    }

    /// Counter block A_0 as a big-endian integer: A_i is `base + i` (the counter has L bytes
    /// and `i` < 2^(8L) for any allowed length, so the addition never carries into the nonce).
    fn ctr_base(nonce: &[u8; N]) -> u128 {
        u128::from_be_bytes(block(Self::CTR_FLAGS, nonce, [0; 3]))
    }
}

/// `flags || nonce || the last L = 15 - N bytes of tail`, for the two nonce lengths
/// [`AesCcm::new`] accepts (each arm is the whole block as one array: no copies on the stack).
#[inline(always)]
fn block<const N: usize>(flags: u8, nonce: &[u8; N], tail: [u8; 3]) -> B16 {
    let [t0, t1, t2] = tail;
    if let Ok(&[n0, n1, n2, n3, n4, n5, n6, n7, n8, n9, n10, n11]) =
        <&[u8; 12]>::try_from(nonce.as_slice())
    {
        return [
            flags, n0, n1, n2, n3, n4, n5, n6, n7, n8, n9, n10, n11, t0, t1, t2,
        ];
    }
    if let Ok(&[n0, n1, n2, n3, n4, n5, n6, n7, n8, n9, n10, n11, n12]) =
        <&[u8; 13]>::try_from(nonce.as_slice())
    {
        return [
            flags, n0, n1, n2, n3, n4, n5, n6, n7, n8, n9, n10, n11, n12, t1, t2,
        ];
    }
    // Not reached: `AesCcm::new` refuses every other nonce length.
    [0; 16]
}

/// A 16-byte block as the loops handle it (a plain array: one vector register).
type B16 = [u8; 16];

#[inline(always)]
fn ctr(base: u128, i: u32) -> B16 {
    base.wrapping_add(u128::from(i)).to_be_bytes()
}

#[inline(always)]
fn xor(a: B16, b: &B16) -> B16 {
    let mut out = a;
    for (o, x) in out.iter_mut().zip(b) {
        *o ^= *x;
    }
    out
}

#[inline(always)]
fn enc<B: BlockCipherEncBackend<BlockSize = U16>>(backend: &B, x: B16) -> B16 {
    let mut b = Block::<Aes128>::from(x);
    backend.encrypt_block_inplace(&mut b);
    b.0
}

/// `bytes` zero-padded to a block (at most 16 of them are used).
#[inline(always)]
fn padded(bytes: &[u8]) -> B16 {
    let mut out = [0u8; 16];
    for (o, x) in out.iter_mut().zip(bytes) {
        *o = *x;
    }
    out
}

/// Starts the MAC: E(B0), then the associated data with its length prefix, zero-padded
/// (RFC 3610 §2.2). Returns the MAC state and S0 = E(A0), the tag's keystream block.
#[inline(always)]
fn start<B: BlockCipherEncBackend<BlockSize = U16>>(
    backend: &B,
    b0: B16,
    base: u128,
    aad: &[u8],
) -> (B16, B16) {
    let s0 = enc(backend, ctr(base, 0));
    let mut mac = enc(backend, b0);
    if aad.is_empty() {
        return (mac, s0);
    }
    // Length encoding of the associated data: 2 bytes below 0xFF00, else 0xFFFE || 4 bytes,
    // else 0xFFFF || 8 bytes.
    let (header, header_len): ([u8; 10], usize) =
        match (u16::try_from(aad.len()), u32::try_from(aad.len())) {
            (Ok(l), _) if l < 0xFF00 => {
                let [a, b] = l.to_be_bytes();
                ([a, b, 0, 0, 0, 0, 0, 0, 0, 0], 2)
            }
            (_, Ok(l)) => {
                let [a, b, c, d] = l.to_be_bytes();
                ([0xFF, 0xFE, a, b, c, d, 0, 0, 0, 0], 6)
            }
            _ => {
                let [a, b, c, d, e, f, g, h] = (aad.len() as u64).to_be_bytes();
                ([0xFF, 0xFF, a, b, c, d, e, f, g, h], 10)
            }
        };
    let mut bytes = header.iter().take(header_len).chain(aad.iter());
    loop {
        let mut block = [0u8; 16];
        let filled = block
            .iter_mut()
            .zip(bytes.by_ref())
            .map(|(o, x)| *o = *x)
            .count();
        if filled == 0 {
            break;
        }
        mac = enc(backend, xor(mac, &block));
        if filled < 16 {
            break;
        }
    }
    (mac, s0)
}

/// Whether a [`Pass`] seals or opens: a type per mode ([`Sealing`], [`Opening`]: each pass
/// compiles to its own loop, with no branch in it) or a run-time `bool` (one loop for both).
trait Mode: Copy {
    /// True when the pass seals.
    fn seals(self) -> bool;
}

/// The sealing pass, as a type.
#[derive(Clone, Copy)]
#[cfg_attr(aes_backend_soft = "compact", allow(dead_code))]
struct Sealing;
/// The opening pass, as a type.
#[derive(Clone, Copy)]
#[cfg_attr(aes_backend_soft = "compact", allow(dead_code))]
struct Opening;

impl Mode for Sealing {
    #[inline(always)]
    fn seals(self) -> bool {
        true
    }
}

impl Mode for Opening {
    #[inline(always)]
    fn seals(self) -> bool {
        false
    }
}

impl Mode for bool {
    #[inline(always)]
    fn seals(self) -> bool {
        self
    }
}

/// The modes the build uses: two loops by default, one in the compact (size) builds.
#[cfg(not(aes_backend_soft = "compact"))]
const SEAL: Sealing = Sealing;
#[cfg(not(aes_backend_soft = "compact"))]
const OPEN: Opening = Opening;
#[cfg(aes_backend_soft = "compact")]
const SEAL: bool = true;
#[cfg(aes_backend_soft = "compact")]
const OPEN: bool = false;

/// One record's encryption or decryption (`mode`): CTR over the buffer and CBC-MAC over the
/// plaintext, block by block.
struct Pass<'a, M: Mode> {
    mode: M,
    b0: B16,
    base: u128,
    aad: &'a [u8],
    buf: &'a mut [u8],
    tag: &'a mut B16,
}

impl<M: Mode> BlockSizeUser for Pass<'_, M> {
    type BlockSize = U16;
}

impl<M: Mode> BlockCipherEncClosure for Pass<'_, M> {
    /// Sealing: the MAC absorbs each plaintext block, which then becomes ciphertext. Opening:
    /// each ciphertext block becomes plaintext, which the MAC then absorbs.
    #[inline(always)]
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
        let seal = self.mode.seals();
        let (mut mac, s0) = start(backend, self.b0, self.base, self.aad);
        let mut counter = 1u32;
        let (blocks, tail) = self.buf.as_chunks_mut::<16>();
        for block in blocks {
            // The keystream does not depend on the MAC chain: the CPU computes it while the
            // MAC absorbs the previous block.
            let ks = enc(backend, ctr(self.base, counter));
            let (plain, out) = if seal {
                (*block, xor(*block, &ks))
            } else {
                let p = xor(*block, &ks);
                (p, p)
            };
            mac = enc(backend, xor(mac, &plain));
            *block = out;
            counter = counter.wrapping_add(1);
        }
        if !tail.is_empty() {
            let ks = enc(backend, ctr(self.base, counter));
            if seal {
                mac = enc(backend, xor(mac, &padded(tail)));
            }
            for (t, k) in tail.iter_mut().zip(ks.iter()) {
                *t ^= *k;
            }
            if !seal {
                mac = enc(backend, xor(mac, &padded(tail)));
            }
        }
        *self.tag = xor(mac, &s0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aead::{AeadInOut, Nonce};
    use ccm::Ccm;
    use ccm::consts::{U8, U12};

    extern crate std;
    use std::{format, vec, vec::Vec};

    type Ref8 = Ccm<Aes128, U8, U12>;
    type Ref16 = Ccm<Aes128, U16, U12>;

    fn reference(
        tag_len: usize,
        key: &[u8],
        nonce: &[u8; 12],
        aad: &[u8],
        pt: &[u8],
    ) -> (Vec<u8>, Vec<u8>) {
        let mut buf = pt.to_vec();
        let tag = if tag_len == 8 {
            let c = Ref8::new_from_slice(key).unwrap();
            let n = Nonce::<Ref8>::try_from(&nonce[..]).unwrap();
            c.encrypt_inout_detached(&n, aad, (&mut buf[..]).into())
                .unwrap()
                .to_vec()
        } else {
            let c = Ref16::new_from_slice(key).unwrap();
            let n = Nonce::<Ref16>::try_from(&nonce[..]).unwrap();
            c.encrypt_inout_detached(&n, aad, (&mut buf[..]).into())
                .unwrap()
                .to_vec()
        };
        (buf, tag)
    }

    #[test]
    fn matches_the_ccm_crate() {
        let key: Vec<u8> = (0..16u8).map(|i| i.wrapping_mul(37)).collect();
        let nonce: [u8; 12] = core::array::from_fn(|i| (i as u8).wrapping_mul(11) ^ 0x5a);
        for tag_len in [8, 16] {
            let ccm = AesCcm::new(&key, tag_len).unwrap();
            for aad_len in [0usize, 1, 13, 14, 15, 16, 17, 40, 0xFEFF, 0xFF00, 0x1_0000] {
                let aad: Vec<u8> = (0..aad_len).map(|i| (i % 251) as u8).collect();
                for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 64, 100, 1400, 4097] {
                    if aad_len > 100 && len > 33 {
                        continue;
                    }
                    let pt: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
                    let (ct, rtag) = reference(tag_len, &key, &nonce, &aad, &pt);
                    let mut buf = pt.clone();
                    let mut tag = vec![0u8; tag_len];
                    ccm.seal_in_place(&nonce, &aad, &mut buf, &mut tag).unwrap();
                    assert_eq!(buf, ct, "ciphertext tag {tag_len} aad {aad_len} len {len}");
                    assert_eq!(tag, rtag, "tag {tag_len} aad {aad_len} len {len}");
                    ccm.open_in_place(&nonce, &aad, &mut buf, &tag).unwrap();
                    assert_eq!(buf, pt);
                    if len > 0 {
                        let mut bad = ct.clone();
                        bad[len - 1] ^= 1;
                        assert!(ccm.open_in_place(&nonce, &aad, &mut bad, &tag).is_err());
                    }
                    let mut bad_tag = tag.clone();
                    bad_tag[0] ^= 0x80;
                    let mut again = ct.clone();
                    assert!(
                        ccm.open_in_place(&nonce, &aad, &mut again, &bad_tag)
                            .is_err()
                    );
                }
            }
        }
    }

    /// RFC 3610 packet vector #1 has a 13-byte nonce; SP 800-38C example 3 has a 12-byte one.
    #[test]
    fn sp800_38c_example_3() {
        let key = hex::decode("404142434445464748494a4b4c4d4e4f").unwrap();
        let nonce: [u8; 12] = hex::decode("101112131415161718191a1b")
            .unwrap()
            .try_into()
            .unwrap();
        let aad = hex::decode("000102030405060708090a0b0c0d0e0f10111213").unwrap();
        let pt = hex::decode("202122232425262728292a2b2c2d2e2f3031323334353637").unwrap();
        // Example 3 uses an 8-byte tag: ciphertext E3B201A9F5B71A7A9B1CEAECCD97E70B6176AAD9A4428AA5, tag 484392FBC1B09951.
        let ccm = AesCcm::new(&key, 8).unwrap();
        let mut buf = pt.clone();
        let mut tag = [0u8; 8];
        ccm.seal_in_place(&nonce, &aad, &mut buf, &mut tag).unwrap();
        assert_eq!(
            hex::encode(&buf),
            "e3b201a9f5b71a7a9b1ceaeccd97e70b6176aad9a4428aa5"
        );
        assert_eq!(hex::encode(tag), "484392fbc1b09951");
    }

    /// Key distribution's form: 13-byte nonces (L = 2), 16-byte tags, as the `ccm` crate.
    #[test]
    fn thirteen_byte_nonces_match_the_ccm_crate() {
        type Ref13 = Ccm<Aes128, U16, ccm::consts::U13>;
        let key: Vec<u8> = (0..16u8).map(|i| i.wrapping_mul(29) ^ 3).collect();
        let nonce: [u8; 13] = core::array::from_fn(|i| (i as u8).wrapping_mul(7) ^ 0xa5);
        let ours = AesCcm::<13>::new(&key, 16).unwrap();
        let reference = Ref13::new_from_slice(&key).unwrap();
        let n = Nonce::<Ref13>::try_from(&nonce[..]).unwrap();
        for aad_len in [0usize, 1, 20, 31, 32, 33] {
            let aad: Vec<u8> = (0..aad_len).map(|i| (i * 3 % 256) as u8).collect();
            for len in [0usize, 1, 15, 16, 17, 33, 129, 145, 1000] {
                let pt: Vec<u8> = (0..len).map(|i| (i * 13 % 256) as u8).collect();
                let mut want = pt.clone();
                let want_tag = reference
                    .encrypt_inout_detached(&n, &aad, (&mut want[..]).into())
                    .unwrap();
                let mut buf = pt.clone();
                let mut tag = [0u8; 16];
                ours.seal_in_place(&nonce, &aad, &mut buf, &mut tag)
                    .unwrap();
                assert_eq!(buf, want, "aad {aad_len} len {len}");
                assert_eq!(&tag[..], &want_tag[..], "aad {aad_len} len {len}");
                ours.open_in_place(&nonce, &aad, &mut buf, &tag).unwrap();
                assert_eq!(buf, pt);
            }
        }
        // L = 2: at most 65 535 bytes.
        let mut big = vec![0u8; 0x1_0000];
        let mut tag = [0u8; 16];
        assert!(ours.seal_in_place(&nonce, b"", &mut big, &mut tag).is_err());
    }

    /// Both forms of the pass (a type per mode, the default build's; a run-time `bool`, the
    /// compact builds') give the `ccm` crate's output, and each refuses the other's mode.
    #[test]
    fn both_pass_forms_match_the_ccm_crate() {
        let key: Vec<u8> = (0..16u8).map(|i| i.wrapping_mul(53) ^ 9).collect();
        let nonce: [u8; 12] = core::array::from_fn(|i| (i as u8).wrapping_mul(5) ^ 0x3c);
        for tag_len in [8, 16] {
            let ccm = AesCcm::new(&key, tag_len).unwrap();
            for aad_len in [0usize, 13, 16, 40] {
                let aad: Vec<u8> = (0..aad_len).map(|i| (i * 5 % 256) as u8).collect();
                for len in [0usize, 1, 16, 17, 33, 100] {
                    let pt: Vec<u8> = (0..len).map(|i| (i * 11 % 256) as u8).collect();
                    let (ct, rtag) = reference(tag_len, &key, &nonce, &aad, &pt);
                    let ctx = format!("tag {tag_len} aad {aad_len} len {len}");
                    let mut typed = pt.clone();
                    let mut typed_tag = vec![0u8; tag_len];
                    ccm.seal_with(Sealing, &nonce, &aad, &mut typed, &mut typed_tag)
                        .unwrap();
                    let mut flag = pt.clone();
                    let mut flag_tag = vec![0u8; tag_len];
                    ccm.seal_with(true, &nonce, &aad, &mut flag, &mut flag_tag)
                        .unwrap();
                    assert_eq!((&typed, &typed_tag), (&ct, &rtag), "typed {ctx}");
                    assert_eq!((&flag, &flag_tag), (&ct, &rtag), "run-time {ctx}");
                    ccm.open_with(Opening, &nonce, &aad, &mut typed, &rtag)
                        .unwrap();
                    ccm.open_with(false, &nonce, &aad, &mut flag, &rtag)
                        .unwrap();
                    assert_eq!((&typed, &flag), (&pt, &pt), "{ctx}");
                    let mut bad = ct.clone();
                    let mut bad_tag = rtag.clone();
                    bad_tag[tag_len - 1] ^= 1;
                    assert!(
                        ccm.open_with(false, &nonce, &aad, &mut bad, &bad_tag)
                            .is_err()
                    );
                    assert!(ccm.open_with(true, &nonce, &aad, &mut bad, &rtag).is_err());
                    assert!(
                        ccm.seal_with(false, &nonce, &aad, &mut bad, &mut bad_tag)
                            .is_err()
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_wrong_tag_lengths() {
        assert!(AesCcm::<12>::new(&[0; 16], 12).is_none());
        assert!(AesCcm::<12>::new(&[0; 15], 8).is_none());
        // Only 12- and 13-byte nonces are built into blocks.
        assert!(AesCcm::<11>::new(&[0; 16], 16).is_none());
        assert!(AesCcm::<14>::new(&[0; 16], 16).is_none());
        let ccm = AesCcm::<12>::new(&[0; 16], 8).unwrap();
        let mut tag = [0u8; 16];
        assert!(ccm.seal_in_place(&[0; 12], b"", &mut [], &mut tag).is_err());
        assert!(ccm.open_in_place(&[0; 12], b"", &mut [], &tag).is_err());
    }
}
