//! Key distribution on the device: a [`Member`] joins through a [`KeyServer`] (both in the
//! image, exchanging messages in memory), installs the group keys into its group context and
//! seals a record with the sender ID it was assigned, its sequence numbers reserved in a
//! [`FlashSequenceStore`].

use group_core::keydist::{
    DeviceCredential, DeviceId, GroupSpec, KeyServer, Member, MemberConfig, MemberCredentials,
    MemoryServerStore, Role, ServerCredentials,
};
use group_core::suite::Suite;
use group_core::time::Instant;
use group_core::wire::{Epoch, Record};
use group_embedded::flash::{FlashSequenceStore, StoreState};
use p256::ecdsa::SigningKey;

use crate::test_rng::TestRng;
use crate::{Failure, GROUP_ID, factory_flash};

/// Joins as a sender; returns the epoch installed and the bytes exchanged.
pub fn join_and_send() -> Result<(u16, usize), Failure> {
    let mut rng = TestRng(0x0123_4567);
    let now = Instant(0);
    let server_key = SigningKey::from_slice(&[0x5a; 32]).map_err(|_| Failure::KeyDist)?;
    let device_key = SigningKey::from_slice(&[0x3c; 32]).map_err(|_| Failure::KeyDist)?;
    let mut server: KeyServer<_> = KeyServer::open(
        ServerCredentials::new(server_key.clone()),
        MemoryServerStore::new(),
    )
    .map_err(|_| Failure::KeyDist)?;
    server
        .create_group(GroupSpec::new(GROUP_ID, Suite::AES_128_CCM), now, &mut rng)
        .map_err(|_| Failure::KeyDist)?;
    server
        .admit_device(
            DeviceId(1),
            DeviceCredential::public_key(device_key.verifying_key()),
            Role::Sender,
            &[GROUP_ID],
        )
        .map_err(|_| Failure::KeyDist)?;

    // The device's boot path: the factory commissioned the store, the boot opens it.
    let (store, state) =
        FlashSequenceStore::open(factory_flash()?, 0, 2).map_err(|_| Failure::Flash)?;
    if state != StoreState::CommissionedEmpty {
        return Err(Failure::FlashBoot);
    }
    let mut member: Member<_, 4, 2> = Member::new(
        MemberConfig::new(DeviceId(1), GROUP_ID, Role::Sender),
        MemberCredentials::signed(device_key, *server_key.verifying_key()),
        store,
    );
    member.join(now).map_err(|_| Failure::KeyDist)?;
    let mut buf = [0u8; 1200];
    let mut exchanged = 0usize;
    // Shuttle messages both ways until neither side has anything to send (bounded).
    for _ in 0..8 {
        let mut moved = false;
        if let Some(n) = member
            .poll_transmit(now, &mut rng, &mut buf)
            .map_err(|_| Failure::KeyDist)?
        {
            let msg = buf.get(..n).ok_or(Failure::KeyDist)?;
            server
                .handle_message(now, &mut rng, msg)
                .map_err(|_| Failure::KeyDist)?;
            exchanged = exchanged.saturating_add(n);
            moved = true;
        }
        if let Some(t) = server
            .poll_transmit(now, &mut rng, &mut buf)
            .map_err(|_| Failure::KeyDist)?
        {
            let msg = buf.get(..t.len).ok_or(Failure::KeyDist)?;
            member
                .handle_message(now, msg)
                .map_err(|_| Failure::KeyDist)?;
            exchanged = exchanged.saturating_add(t.len);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    if !member.is_joined() {
        return Err(Failure::KeyDist);
    }
    let epoch = member
        .group()
        .and_then(|g| g.current_epoch())
        .ok_or(Failure::KeyDist)?;
    let sid = member
        .group()
        .and_then(|g| g.config().own_sender_id)
        .ok_or(Failure::KeyDist)?;
    let mut rec = [0u8; 64];
    let len = member
        .seal(now, b"joined", &mut rec)
        .map_err(|_| Failure::KeyDist)?;
    let view = Record::new_checked(rec.get(..len).ok_or(Failure::KeyDist)?)
        .map_err(|_| Failure::KeyDist)?;
    let h = view.header();
    if h.epoch != epoch || h.sender_id != sid || h.seq != 0 || epoch != Epoch(1) {
        return Err(Failure::KeyDist);
    }
    Ok((epoch.0, exchanged))
}
