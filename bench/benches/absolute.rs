//! Absolute record cost (issue 14): ns per seal and per open at 64 and 1400 bytes for every
//! suite, in the build's profile (`cargo bench` uses `bench`, i.e. release with the default 16
//! codegen units), beside
//!
//! - `openssl`: OpenSSL's EVP AEAD (libcrypto through the `openssl` crate; one keyed
//!   `EVP_CIPHER_CTX` per direction, reused for every record: IV, (CCM) length, AAD, update,
//!   final, tag), same key, nonce, AAD and bytes;
//! - `rustcrypto`: the RustCrypto AEAD type alone (`ccm::Ccm<Aes128, U8|U16, U12>`,
//!   `Aes128Gcm`), what group-core used for CCM before issue 14;
//! - `cbcmac-floor` (CCM only): the CBC-MAC of the same blocks (B0, the AAD block, the
//!   payload) alone, in one entry into the `aes` backend: the serial chain no CCM can beat;
//! - `group`: `Group::seal_in_place` / `Group::open` of a fresh in-order record (everything
//!   the record layer does, docs/performance.md).
//!
//! The first variant (`openssl`) is the anchor: the paired table's ratios are X / OpenSSL.
//! Goals: AES-CCM `group` within 1.3 x OpenSSL at 1400 bytes and faster than it at 64 bytes.
//!
//! Run: `cargo bench -p group-bench --bench absolute` (`BENCH_CRITERION=0` for the paired
//! table alone).

use std::cell::RefCell;
use std::hint::black_box;
use std::time::Instant;

use aead::{AeadInOut, KeyInit, Nonce, Tag};
use aes::Aes128;
use aes::cipher::consts::U16;
use aes::cipher::{
    Block, BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser,
};
use aes_gcm::Aes128Gcm;
use ccm::Ccm;
use ccm::consts::{U8, U12};
use criterion::Criterion;
use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;

use group_bench::pair::{NOW, Pair, keys};
use group_bench::{Report, Variant};
use group_core::suite::{RecordKeys, Suite};

const SIZES: [usize; 2] = [64, 1400];
const CHUNK: u64 = 64;

/// A record AAD as the record layer builds it (epoch 1, sid 1, seq 5, type 23, DTLS 1.2, n).
fn aad(n: usize) -> [u8; 13] {
    let [n0, n1] = u16::try_from(n).unwrap().to_be_bytes();
    [0, 1, 1, 0, 0, 0, 0, 5, 23, 0xfe, 0xfd, n0, n1]
}

fn nonce(keys: &RecordKeys) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(keys.iv());
    n[4..].copy_from_slice(&[0, 1, 1, 0, 0, 0, 0, 5]);
    n
}

/// OpenSSL EVP AEAD, one keyed context per direction reused for every record.
struct Ossl {
    enc: CipherCtx,
    dec: CipherCtx,
    ccm: bool,
    tag_len: usize,
}

impl Ossl {
    fn new(suite: Suite, key: &[u8]) -> Self {
        let (cipher, ccm, tag_len) = match suite {
            Suite::AES_128_CCM_8 => (Cipher::aes_128_ccm(), true, 8),
            Suite::AES_128_CCM => (Cipher::aes_128_ccm(), true, 16),
            _ => (Cipher::aes_128_gcm(), false, 16),
        };
        let mut enc = CipherCtx::new().unwrap();
        enc.encrypt_init(Some(cipher), None, None).unwrap();
        enc.set_iv_length(12).unwrap();
        if ccm {
            enc.set_tag_length(tag_len).unwrap();
        }
        enc.encrypt_init(None, Some(key), None).unwrap();
        let mut dec = CipherCtx::new().unwrap();
        dec.decrypt_init(Some(cipher), None, None).unwrap();
        dec.set_iv_length(12).unwrap();
        if ccm {
            dec.set_tag_length(tag_len).unwrap();
        }
        dec.decrypt_init(None, Some(key), None).unwrap();
        Self {
            enc,
            dec,
            ccm,
            tag_len,
        }
    }

    fn seal(&mut self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &mut [u8]) {
        let c = &mut self.enc;
        c.encrypt_init(None, None, Some(nonce)).unwrap();
        if self.ccm {
            c.set_data_len(buf.len()).unwrap();
        }
        c.cipher_update(aad, None).unwrap();
        let n = buf.len();
        c.cipher_update_inplace(buf, n).unwrap();
        c.cipher_final(&mut []).unwrap();
        c.tag(&mut tag[..self.tag_len]).unwrap();
    }

    fn open(&mut self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> bool {
        let c = &mut self.dec;
        if self.ccm {
            // CCM needs the expected tag before the IV.
            if c.set_tag(tag).is_err() {
                return false;
            }
        }
        c.decrypt_init(None, None, Some(nonce)).unwrap();
        if self.ccm {
            c.set_data_len(buf.len()).unwrap();
        }
        c.cipher_update(aad, None).unwrap();
        let n = buf.len();
        if c.cipher_update_inplace(buf, n).is_err() {
            return false;
        }
        if !self.ccm {
            c.set_tag(tag).unwrap();
        }
        // CCM verified in the update (final is a no-op that fails after a failed update).
        self.ccm || c.cipher_final(&mut []).is_ok()
    }
}

/// CBC-MAC over B0, the AAD block and the payload, in one backend entry.
struct CbcMac<'a> {
    blocks: &'a [[u8; 16]],
    tail: &'a [u8],
    out: &'a mut Block<Aes128>,
}

impl BlockSizeUser for CbcMac<'_> {
    type BlockSize = U16;
}

impl BlockCipherEncClosure for CbcMac<'_> {
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
        let mut mac = Block::<Aes128>::default();
        for b in self.blocks {
            for (m, x) in mac.iter_mut().zip(b) {
                *m ^= *x;
            }
            backend.encrypt_block_inplace(&mut mac);
        }
        if !self.tail.is_empty() {
            for (m, x) in mac.iter_mut().zip(self.tail) {
                *m ^= *x;
            }
            backend.encrypt_block_inplace(&mut mac);
        }
        *self.out = mac;
    }
}

/// CBC-MAC floor of a CCM record of `payload` bytes: 2 header blocks (B0, AAD) + payload.
fn cbc_mac_floor(aes: &Aes128, input: &[u8]) -> Block<Aes128> {
    let (blocks, tail) = input.as_chunks::<16>();
    let mut out = Block::<Aes128>::default();
    aes.encrypt_with_backend(CbcMac {
        blocks,
        tail,
        out: &mut out,
    });
    out
}

/// The RustCrypto AEAD of a suite, behind one interface.
enum Raw {
    Ccm8(Ccm<Aes128, U8, U12>),
    Ccm16(Ccm<Aes128, U16, U12>),
    Gcm(Aes128Gcm),
}

impl Raw {
    fn new(suite: Suite, key: &[u8]) -> Self {
        match suite {
            Suite::AES_128_CCM_8 => Raw::Ccm8(KeyInit::new_from_slice(key).unwrap()),
            Suite::AES_128_CCM => Raw::Ccm16(KeyInit::new_from_slice(key).unwrap()),
            _ => Raw::Gcm(KeyInit::new_from_slice(key).unwrap()),
        }
    }

    fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &mut [u8]) {
        fn run<A: AeadInOut>(a: &A, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &mut [u8]) {
            let n = Nonce::<A>::try_from(&nonce[..]).unwrap();
            let t = a.encrypt_inout_detached(&n, aad, buf.into()).unwrap();
            tag[..t.len()].copy_from_slice(&t);
        }
        match self {
            Raw::Ccm8(a) => run(a, nonce, aad, buf, tag),
            Raw::Ccm16(a) => run(a, nonce, aad, buf, tag),
            Raw::Gcm(a) => run(a, nonce, aad, buf, tag),
        }
    }

    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> bool {
        fn run<A: AeadInOut>(
            a: &A,
            nonce: &[u8; 12],
            aad: &[u8],
            buf: &mut [u8],
            tag: &[u8],
        ) -> bool {
            let n = Nonce::<A>::try_from(&nonce[..]).unwrap();
            let t = Tag::<A>::try_from(tag).unwrap();
            a.decrypt_inout_detached(&n, aad, buf.into(), &t).is_ok()
        }
        match self {
            Raw::Ccm8(a) => run(a, nonce, aad, buf, tag),
            Raw::Ccm16(a) => run(a, nonce, aad, buf, tag),
            Raw::Gcm(a) => run(a, nonce, aad, buf, tag),
        }
    }
}

/// Seal and open variants of one (suite, size).
fn variants(suite: Suite, n: usize) -> (Vec<Variant<'static>>, Vec<Variant<'static>>) {
    let k = keys(suite);
    let key = k.key().to_vec();
    let nonce = nonce(&k);
    let aad = aad(n);
    let tag_len = suite.params().unwrap().tag_len;
    let is_ccm = suite != Suite::AES_128_GCM;
    let plaintext: Vec<u8> = (0..n).map(|i| i as u8).collect();

    // Cross-checks before measuring: OpenSSL, RustCrypto and group-core agree.
    let raw = Raw::new(suite, &key);
    let mut ossl = Ossl::new(suite, &key);
    let (mut c1, mut c2) = (plaintext.clone(), plaintext.clone());
    let (mut t1, mut t2) = ([0u8; 16], [0u8; 16]);
    raw.seal(&nonce, &aad, &mut c1, &mut t1);
    ossl.seal(&nonce, &aad, &mut c2, &mut t2);
    assert_eq!(
        (&c1, &t1[..tag_len]),
        (&c2, &t2[..tag_len]),
        "OpenSSL and RustCrypto differ"
    );
    let mut p = c1.clone();
    assert!(ossl.open(&nonce, &aad, &mut p, &t1[..tag_len]));
    assert_eq!(p, plaintext);
    let mut bad = c1.clone();
    bad[0] ^= 1;
    assert!(
        !ossl.open(&nonce, &aad, &mut bad, &t1[..tag_len]),
        "OpenSSL accepted a forgery"
    );
    let mut p = c1.clone();
    assert!(
        ossl.open(&nonce, &aad, &mut p, &t1[..tag_len]),
        "OpenSSL context not reusable"
    );
    {
        let mut pair = Pair::new(suite, n);
        let mut rec = Vec::new();
        pair.next_record(&mut rec);
        let off = pair.switch.payload_offset().unwrap();
        // The first record of sender 1 in epoch 1 has seq 0; recompute the raw one for it.
        let mut nn = [0u8; 12];
        nn[..4].copy_from_slice(k.iv());
        nn[4..].copy_from_slice(&rec[13..21]);
        let mut aa = [0u8; 13];
        aa[..8].copy_from_slice(&rec[3..11]);
        aa[8..11].copy_from_slice(&rec[..3]);
        aa[11..].copy_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
        let mut c3 = plaintext.clone();
        let mut t3 = [0u8; 16];
        raw.seal(&nn, &aa, &mut c3, &mut t3);
        assert_eq!(&rec[off..off + n], &c3[..], "group-core ciphertext differs");
        assert_eq!(&rec[off + n..], &t3[..tag_len], "group-core tag differs");
    }

    let mut seal = Vec::new();
    let mut open = Vec::new();
    // Anchor first.
    {
        let mut o = Ossl::new(suite, &key);
        let mut buf = plaintext.clone();
        let mut tag = [0u8; 16];
        seal.push(Variant::simple("openssl", move || {
            o.seal(&nonce, &aad, black_box(&mut buf), &mut tag)
        }));
    }
    {
        let o = RefCell::new(Ossl::new(suite, &key));
        let ct = c1.clone();
        let tag = t1;
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        open.push(Variant::new("openssl", move |iters| {
            inputs.resize(iters as usize, Vec::new());
            for i in inputs.iter_mut() {
                i.clear();
                i.extend_from_slice(&ct);
            }
            let mut o = o.borrow_mut();
            let start = Instant::now();
            for i in inputs.iter_mut() {
                assert!(o.open(&nonce, &aad, i, &tag[..tag_len]));
            }
            start.elapsed()
        }));
    }
    {
        let mut pair = Pair::new(suite, n);
        let mut rec = vec![0u8; pair.rec_len];
        let off = pair.switch.payload_offset().unwrap();
        rec[off..off + n].copy_from_slice(&plaintext);
        seal.push(Variant::simple("group", move || {
            pair.switch
                .seal_in_place(NOW, &mut pair.store, black_box(&mut rec), n)
                .unwrap();
        }));
    }
    {
        let mut pair = Pair::new(suite, n);
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        open.push(Variant::new("group", move |iters| {
            inputs.resize(iters as usize, Vec::new());
            for i in inputs.iter_mut() {
                pair.next_record(i);
            }
            let start = Instant::now();
            for i in inputs.iter_mut() {
                black_box(pair.light.open(NOW, i).unwrap());
            }
            let t = start.elapsed();
            assert_eq!(pair.light.counters().dropped(), 0);
            t
        }));
    }
    {
        let r = Raw::new(suite, &key);
        let mut buf = plaintext.clone();
        let mut tag = [0u8; 16];
        seal.push(Variant::simple("rustcrypto", move || {
            r.seal(&nonce, &aad, black_box(&mut buf), &mut tag)
        }));
    }
    {
        let r = Raw::new(suite, &key);
        let ct = c1.clone();
        let tag = t1;
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        open.push(Variant::new("rustcrypto", move |iters| {
            inputs.resize(iters as usize, Vec::new());
            for i in inputs.iter_mut() {
                i.clear();
                i.extend_from_slice(&ct);
            }
            let start = Instant::now();
            for i in inputs.iter_mut() {
                assert!(r.open(&nonce, &aad, i, &tag[..tag_len]));
            }
            start.elapsed()
        }));
    }
    if is_ccm {
        for list in [&mut seal, &mut open] {
            let aes = Aes128::new_from_slice(&key).unwrap();
            // B0 and the AAD block, then the payload.
            let mut input = vec![0u8; 32];
            input.extend_from_slice(&plaintext);
            list.push(Variant::simple("cbcmac-floor", move || {
                black_box(cbc_mac_floor(&aes, black_box(&input)));
            }));
        }
    }
    (seal, open)
}

/// The backend `aes` 0.9 picks at run time on this CPU (same order as its dispatch).
fn aes_backend() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("vaes")
        {
            return "x86 VAES-512 (avx512f + vaes)";
        }
        if std::arch::is_x86_feature_detected!("vaes") {
            return "x86 VAES-256 (vaes)";
        }
        if std::arch::is_x86_feature_detected!("aes") {
            return "x86 AES-NI (aes)";
        }
        "software (fixslice)"
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "see the aes crate's documentation for this architecture"
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut report = Report::new("absolute");
    println!("aes backend picked at run time: {}", aes_backend());
    println!("OpenSSL: {}", openssl::version::version());
    println!("| case | variant: median per op (ratio to openssl, quartiles) |");
    println!("|---|---|");
    for (name, suite) in [
        ("ccm8", Suite::AES_128_CCM_8),
        ("ccm", Suite::AES_128_CCM),
        ("gcm", Suite::AES_128_GCM),
    ] {
        for n in SIZES {
            let (mut seal, mut open) = variants(suite, n);
            report.seal_and_open(&mut c, (name, n), &mut seal, &mut open, CHUNK);
        }
    }
    report.finish();
    c.final_summary();
}
