//! Unit tests of the key server: sender-ID allocation, epochs for joiners, failed saves and
//! lost state.

use heapless::Vec;
use p256::ecdsa::SigningKey;

use super::state::GroupRec;
use super::*;
use crate::keydist::credential::DeviceCredential;
use crate::keydist::store::MemoryServerStore;
use crate::keydist::store::{Row, RowVisitor, Table};
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

type Ks = KeyServer<MemoryServerStore, 2, HeaplessTables<4, 2>, 4096>;

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
    let mut st = s.tables.group(1).unwrap().clone();
    // Epoch 1 is current and nobody has it: a joiner may have it.
    assert_eq!(
        st.epoch_for_join(c, now, &mut rng, true, false),
        Ok((1, false))
    );
    // Once handed out, a joiner needs a new epoch; it is staged until now + 2 s, and
    // further joiners share it until then.
    st.current.as_mut().unwrap().handed_out = true;
    assert_eq!(
        st.epoch_for_join(c, now, &mut rng, true, false),
        Ok((2, true))
    );
    st.staged.as_mut().unwrap().handed_out = true;
    let later = Instant(100 + 1_999);
    assert_eq!(
        st.epoch_for_join(c, later, &mut rng, true, false),
        Ok((2, false))
    );
    // At its activation time traffic may exist in it: a new one, activating no later.
    let at = Instant(100 + 2_000);
    assert_eq!(
        st.epoch_for_join(c, at, &mut rng, true, false),
        Ok((3, true))
    );
    assert_eq!(st.staged.as_ref().unwrap().activate_at, 2_100);
    // Without rekey-on-join the newest epoch is fine; a recovery always needs one that
    // nobody has received.
    st.staged.as_mut().unwrap().handed_out = true;
    assert_eq!(
        st.epoch_for_join(c, at, &mut rng, false, false),
        Ok((3, false))
    );
    assert_eq!(
        st.epoch_for_join(c, now, &mut rng, true, true),
        Ok((4, true))
    );
    assert_eq!(
        st.epoch_for_join(c, now, &mut rng, true, true),
        Ok((4, false))
    );
    // Epochs never wrap.
    st.latest_epoch = u16::MAX;
    st.staged.as_mut().unwrap().handed_out = true;
    assert_eq!(
        st.epoch_for_join(c, now, &mut rng, true, true),
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
    assert!(s.tables.device(DeviceId(1)).is_none());
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
    let reserved = s.counter_reserved;
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
        fn load(&mut self, _: &mut RowVisitor<'_>) -> Result<bool, StoreError> {
            Err(StoreError::Missing)
        }
        fn commit(&mut self, _: &[Row<'_>]) -> Result<(), StoreError> {
            Ok(())
        }
    }
    /// Rows that do not decode, or rows without the server's own row.
    struct Garbage(bool);
    impl ServerStore for Garbage {
        fn load(&mut self, visit: &mut RowVisitor<'_>) -> Result<bool, StoreError> {
            if self.0 {
                visit(Table::Groups, 1, &[1, 0xff, 0xff])?;
            }
            Ok(true)
        }
        fn commit(&mut self, _: &[Row<'_>]) -> Result<(), StoreError> {
            Ok(())
        }
    }
    let key = || ServerCredentials::new(SigningKey::from_slice(&[7; 32]).unwrap());
    assert_eq!(
        KeyServer::<Lost>::open(key(), Lost).err(),
        Some(Error::Store(StoreError::Missing))
    );
    for garbage in [true, false] {
        assert_eq!(
            KeyServer::<Garbage>::open(key(), Garbage(garbage)).err(),
            Some(Error::StateCorrupt)
        );
    }
}

/// A transaction writes only the rows it changes: a rekey its group, an admission its device
/// and one (device, group) row per group, a revocation deletes them; the store's other rows
/// stay byte for byte.
#[test]
fn each_change_commits_only_its_rows() {
    struct Log {
        inner: MemoryServerStore,
        last: Vec<(Table, u64, bool), 8>,
    }
    impl ServerStore for Log {
        fn load(&mut self, visit: &mut RowVisitor<'_>) -> Result<bool, StoreError> {
            self.inner.load(visit)
        }
        fn commit(&mut self, rows: &[Row<'_>]) -> Result<(), StoreError> {
            self.last.clear();
            for r in rows {
                self.last.push((r.table, r.key, r.value.is_some())).unwrap();
            }
            self.inner.commit(rows)
        }
    }
    let key = SigningKey::from_slice(&[7; 32]).unwrap();
    let log = Log {
        inner: MemoryServerStore::new(),
        last: Vec::new(),
    };
    let mut s: KeyServer<Log, 2, HeaplessTables<4, 2>, 4096> =
        KeyServer::open(ServerCredentials::new(key), log).unwrap();
    let mut rng = Xs(11);
    s.create_group(GroupSpec::new(1, Suite::AES_128_CCM), Instant(0), &mut rng)
        .unwrap();
    // The first commit also writes the server's own row.
    assert_eq!(
        s.store().last.as_slice(),
        &[(Table::Counters, 0, true), (Table::Groups, 1, true)]
    );
    s.create_group(GroupSpec::new(2, Suite::AES_128_CCM), Instant(0), &mut rng)
        .unwrap();
    assert_eq!(s.store().last.as_slice(), &[(Table::Groups, 2, true)]);
    let cred =
        DeviceCredential::public_key(SigningKey::from_slice(&[9; 32]).unwrap().verifying_key());
    s.admit_device(DeviceId(5), cred, Role::Sender, &[1, 2])
        .unwrap();
    let k = |g| crate::keydist::member_key(5, g);
    assert_eq!(
        s.store().last.as_slice(),
        &[
            (Table::Devices, 5, true),
            (Table::Memberships, k(1), true),
            (Table::Memberships, k(2), true)
        ]
    );
    s.rekey(2, Instant(0), &mut rng).unwrap();
    assert_eq!(s.store().last.as_slice(), &[(Table::Groups, 2, true)]);
    s.revoke_device(DeviceId(5), Instant(0), &mut rng).unwrap();
    assert_eq!(
        s.store().last.as_slice(),
        &[
            (Table::Devices, 5, false),
            (Table::Memberships, k(1), false),
            (Table::Memberships, k(2), false)
        ]
    );
    // A restart sees the same state.
    let key = SigningKey::from_slice(&[7; 32]).unwrap();
    let store = s.into_store();
    let s: KeyServer<Log, 2, HeaplessTables<4, 2>, 4096> =
        KeyServer::open(ServerCredentials::new(key), store).unwrap();
    assert_eq!(s.latest_epoch(2), Some(2));
    assert_eq!(s.group_count(), 2);
    assert_eq!(s.device_count(), 0);
}

/// A state of format 2 (each device's groups and memberships inside its row, as main wrote it
/// before the (device, group) records) converted row by row with `migrate_v2_row` opens as
/// the same state; unconverted it is refused, and so is a newer format.
#[test]
fn format_2_state_migrates_to_format_3() {
    extern crate std;
    use super::state::{DeviceRecV2, MembershipV2, Meta};
    let mut s = server();
    let mut rng = Xs(5);
    for g in [1, 2] {
        s.create_group(GroupSpec::new(g, Suite::AES_128_CCM), Instant(0), &mut rng)
            .unwrap();
    }
    let mut groups: std::vec::Vec<(u64, std::vec::Vec<u8>)> = std::vec::Vec::new();
    let mut store = s.into_store();
    store
        .load(&mut |t, k, v| {
            if t == Table::Groups {
                groups.push((k, v.to_vec()));
            }
            Ok(())
        })
        .unwrap();
    let cred =
        DeviceCredential::public_key(SigningKey::from_slice(&[9; 32]).unwrap().verifying_key());
    let old_device: DeviceRecV2<32> = DeviceRecV2 {
        id: DeviceId(5),
        credential: cred,
        role: Role::Sender,
        groups: Vec::from_slice(&[1, 2]).unwrap(),
        last_join_nonce: Some([3; 16]),
        memberships: Vec::from_slice(&[MembershipV2 {
            group_id: 1,
            role: Role::Sender,
            sender_id: Some(1),
            since: 1,
            acked: 0,
            acked_epoch: 0,
            join_nonce: Some([3; 16]),
        }])
        .unwrap(),
    };
    let meta = |format| Meta {
        format,
        counter_reserved: 128,
    };
    let enc = |v: &dyn Fn(&mut [u8]) -> usize| {
        let mut b = [0u8; 1024];
        let n = v(&mut b);
        b[..n].to_vec()
    };
    let meta2 = enc(&|b| postcard::to_slice(&meta(2), b).unwrap().len());
    let dev2 = enc(&|b| postcard::to_slice(&old_device, b).unwrap().len());
    let key = || SigningKey::from_slice(&[7; 32]).unwrap();
    let write = |rows: &[(Table, u64, std::vec::Vec<u8>)]| {
        let mut st = MemoryServerStore::new();
        let rows: std::vec::Vec<Row<'_>> = rows
            .iter()
            .map(|(t, k, v)| Row {
                table: *t,
                key: *k,
                value: Some(v),
            })
            .collect();
        st.commit(&rows).unwrap();
        st
    };
    let mut old: std::vec::Vec<(Table, u64, std::vec::Vec<u8>)> =
        std::vec![(Table::Counters, 0, meta2), (Table::Devices, 5, dev2)];
    old.extend(groups.iter().map(|(k, v)| (Table::Groups, *k, v.clone())));
    // Unconverted: refused (format 2 is not this server's).
    assert_eq!(
        Ks::open(ServerCredentials::new(key()), write(&old)).err(),
        Some(Error::StateCorrupt)
    );
    // Converted: groups as they were, the device's row and one row per group it may join.
    let mut new: std::vec::Vec<(Table, u64, std::vec::Vec<u8>)> = std::vec::Vec::new();
    for (t, k, v) in &old {
        if *t == Table::Groups {
            new.push((*t, *k, v.clone()));
        }
        migrate_v2_row(*t, *k, v, &mut |t, k, v| {
            new.push((t, k, v.to_vec()));
            Ok(())
        })
        .unwrap();
    }
    let kinds: std::vec::Vec<(Table, u64)> = new.iter().map(|(t, k, _)| (*t, *k)).collect();
    assert!(kinds.contains(&(Table::Memberships, crate::keydist::member_key(5, 1))));
    assert!(kinds.contains(&(Table::Memberships, crate::keydist::member_key(5, 2))));
    assert_eq!(state_format(&new[0].2), Some(3));
    let s = Ks::open(ServerCredentials::new(key()), write(&new)).unwrap();
    assert_eq!(s.device_count(), 1);
    let mut gs: std::vec::Vec<u32> = s.device_groups(DeviceId(5)).collect();
    gs.sort_unstable();
    assert_eq!(gs, [1, 2]);
    assert_eq!(
        s.membership(DeviceId(5), 1),
        Some(Some(1)),
        "member, sender 1"
    );
    assert_eq!(s.membership(DeviceId(5), 2), None, "admitted, not a member");
    assert_eq!(s.members(1).count(), 1);
    // A newer format than this server's is refused.
    new[0].2 = enc(&|b| postcard::to_slice(&meta(4), b).unwrap().len());
    assert_eq!(
        Ks::open(ServerCredentials::new(key()), write(&new)).err(),
        Some(Error::StateCorrupt)
    );
    assert!(migrate_v2_row(Table::Counters, 0, &new[0].2, &mut |_, _, _| Ok(())).is_err());
}
