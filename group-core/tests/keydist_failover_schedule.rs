//! The member's side of a key-server failover, as the state machine sees it: the retry schedule
//! tells when a request went unanswered ([`Member::unanswered_due`]), and moving to another
//! server makes every outstanding request due at once with the first timeout
//! ([`Member::retry_now`]). No server answers here: only the schedule is under test.

mod keydist_support;

use group_core::keydist::{
    DeviceId, Member, MemberConfig, MemberCredentials, Message, Role, parse,
};
use group_core::sequence::MemorySequenceStore;
use group_core::time::Instant;
use keydist_support::{TestRng, key};

fn member() -> Member<MemorySequenceStore> {
    let creds = MemberCredentials::signed(key(7), *key(1).verifying_key());
    Member::new(
        MemberConfig::new(DeviceId(7), 3, Role::Listener),
        creds,
        MemorySequenceStore::commissioned(),
    )
}

/// Sends everything due at `at`; returns how many messages went out.
fn send(m: &mut Member<MemorySequenceStore>, rng: &mut TestRng, at: u64) -> usize {
    let mut buf = [0u8; 1500];
    let mut n = 0;
    while m
        .poll_transmit(Instant(at), rng, &mut buf)
        .unwrap()
        .is_some()
    {
        n += 1;
    }
    n
}

/// The nonce of the join request `m` sends at `at`.
fn join_nonce(m: &mut Member<MemorySequenceStore>, rng: &mut TestRng, at: u64) -> [u8; 16] {
    let mut buf = [0u8; 1500];
    let n = m
        .poll_transmit(Instant(at), rng, &mut buf)
        .unwrap()
        .expect("a join request is due");
    match parse(&buf[..n]).unwrap().message {
        Message::JoinRequest(j) => j.header.nonce,
        _ => panic!("not a join request"),
    }
}

#[test]
fn moving_on_starts_the_join_over_with_a_fresh_nonce() {
    let mut rng = TestRng::seeded(4);
    let mut m = member();
    m.join(Instant(0)).unwrap();
    let first = join_nonce(&mut m, &mut rng, 0);
    assert_eq!(
        join_nonce(&mut m, &mut rng, 1_000),
        first,
        "a retransmission"
    );
    m.retry_now(Instant(3_000));
    let fresh = join_nonce(&mut m, &mut rng, 3_000);
    assert_ne!(fresh, first, "a fresh request for the next server");
    assert_eq!(join_nonce(&mut m, &mut rng, 4_000), fresh);
}

#[test]
fn restarting_a_join_keeps_its_schedule_with_a_fresh_nonce() {
    let mut rng = TestRng::seeded(5);
    let mut m = member();
    m.join(Instant(0)).unwrap();
    let first = join_nonce(&mut m, &mut rng, 0);
    join_nonce(&mut m, &mut rng, 1_000);
    assert_eq!(m.unanswered_due(Instant(3_000)), 2);
    m.restart_join();
    assert_eq!(m.unanswered_due(Instant(3_000)), 2, "the schedule is kept");
    assert_eq!(send(&mut m, &mut rng, 2_999), 0, "not due before its time");
    let fresh = join_nonce(&mut m, &mut rng, 3_000);
    assert_ne!(fresh, first);
    assert_eq!(send(&mut m, &mut rng, 6_999), 0, "backed off to 4 s");
    assert_eq!(join_nonce(&mut m, &mut rng, 7_000), fresh);
}

#[test]
fn unanswered_join_requests_are_counted_when_due_again() {
    let mut rng = TestRng::seeded(1);
    let mut m = member();
    assert_eq!(m.unanswered_due(Instant(0)), 0, "nothing outstanding");
    m.join(Instant(0)).unwrap();
    assert_eq!(m.unanswered_due(Instant(0)), 0, "due, never sent");
    assert_eq!(send(&mut m, &mut rng, 0), 1);
    assert_eq!(m.unanswered_due(Instant(999)), 0, "not due yet");
    assert_eq!(m.unanswered_due(Instant(1_000)), 1);
    assert_eq!(send(&mut m, &mut rng, 1_000), 1);
    assert_eq!(m.unanswered_due(Instant(2_999)), 0);
    assert_eq!(m.unanswered_due(Instant(3_000)), 2);
}

#[test]
fn moving_to_another_server_sends_the_request_again_at_once_with_the_first_timeout() {
    let mut rng = TestRng::seeded(2);
    let mut m = member();
    m.join(Instant(0)).unwrap();
    send(&mut m, &mut rng, 0);
    send(&mut m, &mut rng, 1_000);
    send(&mut m, &mut rng, 3_000);
    // The backoff reached 4 s; the runtime moves to the next server at 3 500.
    assert_eq!(send(&mut m, &mut rng, 3_500), 0, "backed off");
    m.retry_now(Instant(3_500));
    assert_eq!(m.unanswered_due(Instant(3_500)), 0, "a fresh schedule");
    assert_eq!(send(&mut m, &mut rng, 3_500), 1, "sent at once");
    assert_eq!(send(&mut m, &mut rng, 4_499), 0);
    assert_eq!(
        m.unanswered_due(Instant(4_500)),
        1,
        "first timeout (1 s) again"
    );
    assert_eq!(send(&mut m, &mut rng, 4_500), 1);
}

#[test]
fn retry_now_without_anything_outstanding_sends_nothing() {
    let mut rng = TestRng::seeded(3);
    let mut m = member();
    m.retry_now(Instant(10));
    assert_eq!(send(&mut m, &mut rng, 10), 0);
    assert_eq!(m.unanswered_due(Instant(10_000)), 0);
}
