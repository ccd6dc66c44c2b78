//! Unit tests of the key server: sender-ID allocation, epochs for joiners, failed saves and
//! lost state.

use heapless::Vec;
use p256::ecdsa::SigningKey;

use super::state::GroupRec;
use super::*;
use crate::keydist::credential::DeviceCredential;
use crate::keydist::store::MemoryServerStore;
use crate::keydist::vocabulary::Role;
use crate::sequence::StoreError;
use crate::suite::Suite;
use crate::time::Instant;

/// Deterministic test RNG (not cryptographic).
struct Xs(u64);
impl rand_core::TryRng for Xs {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Ok(self.0)
    }
    fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> {
        for b in d {
            *b = self.try_next_u64()? as u8;
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for Xs {}

fn group() -> GroupRec {
    GroupRec {
        spec: GroupSpec::new(1, Suite::AES_128_CCM),
        latest_epoch: 1,
        current: None,
        staged: None,
        changed_at: 0,
        next_fresh_sid: 1,
        released: Vec::new(),
        stale: Vec::new(),
    }
}

type Ks = KeyServer<MemoryServerStore, 4, 2, 4096>;

fn server() -> Ks {
    let key = SigningKey::from_slice(&[7; 32]).unwrap();
    Ks::open(ServerCredentials::new(key), MemoryServerStore::new()).unwrap()
}

#[test]
fn sender_ids_fresh_first_then_quarantined() {
    let mut g = group();
    let mut seen = [false; 256];
    for _ in 0..255 {
        let s = g.alloc_sid(1).unwrap();
        assert!(s != 0 && !seen[usize::from(s)]);
        seen[usize::from(s)] = true;
    }
    assert_eq!(g.alloc_sid(1), Err(Error::SenderIdsExhausted));
    // Sid 9's holder knew epochs up to 5: reusable from epoch 7 on, not before.
    g.latest_epoch = 5;
    g.release_sid(9, 5);
    assert_eq!(g.stale.as_slice(), &[9]);
    for e in [5, 6] {
        assert_eq!(g.alloc_sid(e), Err(Error::SenderIdsExhausted));
    }
    assert_eq!(g.alloc_sid(7), Ok(9));
    assert_eq!(g.alloc_sid(7), Err(Error::SenderIdsExhausted));
}

#[test]
fn joiners_get_epochs_nobody_sent_in() {
    let mut s = server();
    let mut rng = Xs(3);
    let now = Instant(100);
    s.create_group(GroupSpec::new(1, Suite::AES_128_CCM), now, &mut rng)
        .unwrap();
    let c = s.next_counter;
    let mut st = s.state.clone();
    // Epoch 1 is current and nobody has it: a joiner may have it.
    assert_eq!(
        st.epoch_for_join(c, 0, now, &mut rng, true, false),
        Ok((1, false))
    );
    // Once handed out, a joiner needs a new epoch; it is staged until now + 2 s, and
    // further joiners share it until then.
    st.groups[0].current.as_mut().unwrap().handed_out = true;
    assert_eq!(
        st.epoch_for_join(c, 0, now, &mut rng, true, false),
        Ok((2, true))
    );
    st.groups[0].staged.as_mut().unwrap().handed_out = true;
    let later = Instant(100 + 1_999);
    assert_eq!(
        st.epoch_for_join(c, 0, later, &mut rng, true, false),
        Ok((2, false))
    );
    // At its activation time traffic may exist in it: a new one, activating no later.
    let at = Instant(100 + 2_000);
    assert_eq!(
        st.epoch_for_join(c, 0, at, &mut rng, true, false),
        Ok((3, true))
    );
    assert_eq!(st.groups[0].staged.as_ref().unwrap().activate_at, 2_100);
    // Without rekey-on-join the newest epoch is fine; a recovery always needs one that
    // nobody has received.
    st.groups[0].staged.as_mut().unwrap().handed_out = true;
    assert_eq!(
        st.epoch_for_join(c, 0, at, &mut rng, false, false),
        Ok((3, false))
    );
    assert_eq!(
        st.epoch_for_join(c, 0, now, &mut rng, true, true),
        Ok((4, true))
    );
    assert_eq!(
        st.epoch_for_join(c, 0, now, &mut rng, true, true),
        Ok((4, false))
    );
    // Epochs never wrap.
    st.groups[0].latest_epoch = u16::MAX;
    st.groups[0].staged.as_mut().unwrap().handed_out = true;
    assert_eq!(
        st.epoch_for_join(c, 0, now, &mut rng, true, true),
        Err(Error::EpochsExhausted)
    );
}

#[test]
fn failed_saves_change_nothing() {
    let mut s = server();
    let mut rng = Xs(5);
    s.create_group(GroupSpec::new(1, Suite::AES_128_CCM), Instant(0), &mut rng)
        .unwrap();
    s.store.crash_after(0);
    let key = SigningKey::from_slice(&[9; 32]).unwrap();
    let cred = DeviceCredential::public_key(key.verifying_key());
    assert_eq!(
        s.admit_device(DeviceId(1), cred.clone(), Role::Sender, &[1]),
        Err(Error::Store(StoreError::Io))
    );
    assert!(s.state.device_index(DeviceId(1)).is_none());
    assert_eq!(
        s.rekey(1, Instant(0), &mut rng),
        Err(Error::Store(StoreError::Io))
    );
    assert_eq!(s.latest_epoch(1), Some(1));
    s.store.restore_power();
    s.admit_device(DeviceId(1), cred, Role::Sender, &[1])
        .unwrap();
    assert_eq!(s.rekey(1, Instant(0), &mut rng), Ok(2));
    // A restart resumes where the store is; counters jump past the reservation.
    let reserved = s.state.counter_reserved;
    let store = s.into_store();
    let key = SigningKey::from_slice(&[7; 32]).unwrap();
    let s = Ks::open(ServerCredentials::new(key), store).unwrap();
    assert_eq!(s.latest_epoch(1), Some(2));
    assert_eq!(s.next_counter, reserved);
}

#[test]
fn lost_or_corrupt_state_is_refused() {
    struct Lost;
    impl ServerStore for Lost {
        fn load(&mut self, _: &mut [u8]) -> Result<Option<usize>, StoreError> {
            Err(StoreError::Missing)
        }
        fn save(&mut self, _: &[u8]) -> Result<(), StoreError> {
            Ok(())
        }
    }
    struct Garbage;
    impl ServerStore for Garbage {
        fn load(&mut self, buf: &mut [u8]) -> Result<Option<usize>, StoreError> {
            buf[..3].copy_from_slice(&[1, 0xff, 0xff]);
            Ok(Some(3))
        }
        fn save(&mut self, _: &[u8]) -> Result<(), StoreError> {
            Ok(())
        }
    }
    let key = || ServerCredentials::new(SigningKey::from_slice(&[7; 32]).unwrap());
    assert_eq!(
        KeyServer::<Lost>::open(key(), Lost).err(),
        Some(Error::Store(StoreError::Missing))
    );
    assert_eq!(
        KeyServer::<Garbage>::open(key(), Garbage).err(),
        Some(Error::StateCorrupt)
    );
}
