//! Key-server failover (issue 16): twenty members (threads on real sockets, IPv4 multicast on
//! 127.0.0.1, TTL 1), two of them switches sending a record every 100 ms, and the active key
//! server SIGKILLed during joins, during a revocation and during a rekey (cycling the three),
//! ten times in a row. After each kill the server is started again; every member must get the
//! keys of the join or rekey that was in flight, the revoked device must not, and every member
//! must receive records from both switches again. The invariant (no epoch, sender ID or record
//! nonce handed out twice; no key to a revoked device after its revocation) is checked over the
//! whole run by [`failover::ledger`], whose own tests feed it each kind of violation.
//!
//! Modes: three key servers on one PostgreSQL database (the test's own, on loopback; feature
//! `postgres`), the active one killed each time and started again as a standby, members knowing
//! all three addresses; one redb server, members knowing only its address (today's deployment,
//! unchanged); the same behind a dead address first in the members' list (they must move on to
//! the live one, and back and forth across every outage).
//!
//! Each kill prints `failover N/10 SITUATION: killed ksI (down 300 ms), ksJ active after T ms;
//! first join|rekey bundle from it after T ms; all N live members in epoch E after T ms; ...`,
//! all times from the SIGKILL.
//! Every wait is bounded; the whole run fails with a clear message past [`RUN_LIMIT`].

#[cfg(feature = "postgres")]
mod common;
mod failover;

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use failover::ledger::Seen;
use failover::{GROUP, SWITCHES, Site};

/// A whole scenario must finish within this.
const RUN_LIMIT: Duration = Duration::from_secs(240);
/// Each wait (a join, a rekey, records flowing) must finish within this.
const STEP_LIMIT: Duration = Duration::from_secs(30);
/// How long a killed server stays down before it is started again.
const DOWNTIME: Duration = Duration::from_millis(300);

#[derive(Clone, Copy, Debug)]
enum Situation {
    Joins,
    Revocation,
    Rekey,
}

/// Waits until the key server has settled (no staged epoch, every live device a member that
/// acknowledged, current epoch above `above` if given) and every live member is active in its
/// current epoch; returns that epoch.
fn settle(site: &Site, live: &BTreeSet<u32>, above: Option<u16>, start: Instant) -> u16 {
    let deadline = Instant::now() + STEP_LIMIT;
    let current = loop {
        let s = site.status(STEP_LIMIT);
        let g = &s["groups"][0];
        let members: BTreeSet<u32> = g["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["pending"] == false)
            .filter_map(|m| m["device"].as_u64().map(|d| d as u32))
            .collect();
        let current = g["current"].as_u64().unwrap_or(0) as u16;
        if g["staged"].is_null() && live.is_subset(&members) && above.is_none_or(|a| current > a) {
            break current;
        }
        assert!(
            Instant::now() < deadline,
            "the key server did not settle within {STEP_LIMIT:?} (live {live:?}, above {above:?}); \
             status: {s}\nmembers:\n{}",
            site.describe()
        );
        assert!(
            start.elapsed() < RUN_LIMIT,
            "run deadline {RUN_LIMIT:?} passed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    site.wait(
        &format!("every live member active in epoch {current}"),
        STEP_LIMIT,
        |devs| {
            live.iter()
                .all(|id| devs.get(id).is_some_and(|d| d.active == Some(current)))
        },
    );
    current
}

/// Waits until every live member received a record from each switch (other than itself)
/// after `since`.
fn records_flow(site: &Site, live: &BTreeSet<u32>, since: Instant) {
    site.wait(
        "records from both switches at every live member",
        STEP_LIMIT,
        |devs| {
            live.iter().all(|id| {
                devs.get(id).is_some_and(|d| {
                    SWITCHES
                        .iter()
                        .filter(|sw| *sw != id)
                        .all(|sw| d.last_from.get(sw).is_some_and(|t| *t > since))
                })
            })
        },
    );
}

/// How long after `kill` the first bundle (with an epoch above `above` if given) was installed
/// by one of `who`; `None` if all of theirs came before the kill.
fn first_after(
    site: &Site,
    who: &BTreeSet<u32>,
    kill: Instant,
    above: Option<u16>,
) -> Option<Duration> {
    who.iter()
        .map(|id| site.device(*id))
        .flat_map(|d| d.installed)
        .filter(|(t, e)| *t > kill && above.is_none_or(|a| *e > a))
        .map(|(t, _)| t.duration_since(kill))
        .min()
}

/// The scenario: `kills` kills of the active server, cycling the situations.
fn scenario(site: &mut Site, kills: usize) {
    let start = Instant::now();
    let controls = site.controls();
    // The first server commissions the state (--init); the others start as standbys.
    site.servers[0].start(true);
    site.status(STEP_LIMIT);
    for s in site.servers.iter_mut().skip(1) {
        s.start(false);
    }
    site.note_lease();
    let mut live: BTreeSet<u32> = failover::DEVICES.collect();
    for id in failover::DEVICES {
        site.start_member(id);
    }
    settle(site, &live, None, start);
    records_flow(site, &live, Instant::now());
    site.note_server_members();
    println!(
        "all {} members joined and receiving after {} ms",
        live.len(),
        start.elapsed().as_millis()
    );
    let situations = [Situation::Joins, Situation::Revocation, Situation::Rekey];
    let mut joiner = *failover::DEVICES.end();
    let mut victim = 3u32;
    let mut times = Vec::new();
    for i in 0..kills {
        let situation = situations[i % situations.len()];
        let (current, staged) = site.epochs();
        let last = staged.unwrap_or(current);
        let (who, above) = match situation {
            Situation::Joins => {
                let mut who = BTreeSet::new();
                for _ in 0..3 {
                    who.insert(joiner);
                    site.start_member(joiner);
                    joiner -= 1;
                }
                // Let the join requests leave before the server dies.
                std::thread::sleep(Duration::from_millis(2));
                (who, None)
            }
            Situation::Revocation => {
                failover::admin(&controls, &["revoke", &victim.to_string()])
                    .unwrap_or_else(|e| panic!("revoke {victim}: {e}"));
                site.note(Seen::Revoked {
                    device: victim,
                    group: GROUP,
                    last_epoch: last,
                });
                live.remove(&victim);
                victim += 1;
                (live.clone(), Some(last))
            }
            Situation::Rekey => {
                failover::admin(&controls, &["rekey", &GROUP.to_string()])
                    .unwrap_or_else(|e| panic!("rekey: {e}"));
                (live.clone(), Some(last))
            }
        };
        let active = site.active(STEP_LIMIT);
        let kill = Instant::now();
        site.servers[active].kill();
        std::thread::sleep(DOWNTIME);
        // Started again: with PostgreSQL it comes back as a standby.
        site.servers[active].start(false);
        // When a server is seen active again (status polled every 50 ms): the takeover.
        let new_active = site.active(STEP_LIMIT);
        let took_over = Instant::now();
        let epoch = settle(site, &live, above, start);
        let settled = kill.elapsed();
        // The first bundle of the join or rekey from the server active now (bundles the
        // killed one had sent just before are not counted).
        let first = first_after(site, &who, took_over, above).map(|d| d + (took_over - kill));
        let marker = Instant::now();
        records_flow(site, &live, marker);
        site.note_server_members();
        site.note_lease();
        println!(
            "failover {}/{kills} {situation:?}: killed ks{active} (down {} ms), ks{new_active} \
             active after {} ms; first {} from it {}; all {} live members in epoch {epoch} after \
             {} ms; records from both switches again after {} ms",
            i + 1,
            DOWNTIME.as_millis(),
            took_over.duration_since(kill).as_millis(),
            match situation {
                Situation::Joins => "join bundle",
                _ => "rekey bundle",
            },
            first.map_or("(none: done before)".to_string(), |d| format!(
                "after {} ms",
                d.as_millis()
            )),
            live.len(),
            settled.as_millis(),
            kill.elapsed().as_millis()
        );
        times.extend(first);
        assert!(
            start.elapsed() < RUN_LIMIT,
            "run deadline {RUN_LIMIT:?} passed after {} kills",
            i + 1
        );
    }
    // Revoked devices got nothing after their revocation (also checked by the ledger).
    for id in 3..victim {
        let d = site.device(id);
        assert!(
            !d.joined || d.removed,
            "revoked device {id} still joined: {d:?}"
        );
    }
    for m in site.members.values_mut() {
        m.stop();
    }
    let sh = site.shared.lock().unwrap();
    let summary = sh
        .ledger
        .check()
        .unwrap_or_else(|bad| panic!("invariant violated:\n{}", bad.join("\n")));
    let failovers: u64 = sh.devices.values().map(|d| d.failovers).sum();
    let followed: u64 = sh.devices.values().map(|d| d.followed).sum();
    times.sort();
    println!(
        "invariant holds over {summary:?}; members moved to the next address {failovers} times \
         and followed an answering server {followed} times; kill -> first join/rekey bundle from the server active after it: median \
         {} ms, max {} ms; total {} ms",
        times.get(times.len() / 2).map_or(0, |d| d.as_millis()),
        times.last().map_or(0, |d| d.as_millis()),
        start.elapsed().as_millis()
    );
}

#[test]
fn redb_single_server_killed_and_restarted_ten_times() {
    let mut site = Site::new("failover-redb", &["state = \"ks.redb\"".to_string()], 0);
    scenario(&mut site, 10);
}

#[test]
fn redb_single_server_behind_a_dead_address_members_move_on() {
    let mut site = Site::new("failover-dead", &["state = \"ks.redb\"".to_string()], 1);
    scenario(&mut site, 3);
    let sh = site.shared.lock().unwrap();
    let moved = sh.devices.values().filter(|d| d.failovers > 0).count();
    assert_eq!(
        moved,
        sh.devices.len(),
        "every member started at the dead address and had to move on"
    );
}

/// Polls `rt` until `done` or `limit` (failing with `what`).
fn drive(
    rt: &mut group_std::member::MemberRuntime<group_core::sequence::MemorySequenceStore>,
    what: &str,
    limit: Duration,
    done: impl Fn(&group_std::member::MemberRuntime<group_core::sequence::MemorySequenceStore>) -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done(rt) {
        assert!(
            Instant::now() < deadline,
            "{what} within {limit:?}: {:?}",
            rt.contact()
        );
        rt.poll().unwrap();
    }
}

/// A member whose current server stops answering moves to the next address (here one where
/// nothing runs); when the first server answers after all, from the address that is no longer
/// current, the member accepts the bundle (authenticated by the protocol), follows that server
/// and acknowledges to it: the key server shows it settled.
#[test]
fn a_member_moves_on_when_unanswered_and_follows_the_server_that_answers() {
    let mut site = Site::new("failover-follow", &["state = \"ks.redb\"".to_string()], 0);
    site.servers[0].start(true);
    site.status(STEP_LIMIT);
    let live = site.member_servers[0];
    let dead: std::net::SocketAddr = ([127, 0, 0, 1], failover::free_udp_port()).into();
    let mut rt = site.runtime(7, &[live, dead]);
    drive(
        &mut rt,
        "joined through the first address",
        STEP_LIMIT,
        |rt| rt.member().is_joined(),
    );
    assert_eq!((rt.server(), rt.contact().failovers), (live, 0));
    let epoch = |rt: &group_std::member::MemberRuntime<_>| {
        rt.member()
            .group()
            .and_then(|g| g.current_epoch())
            .map_or(0, |e| e.0)
    };
    drive(&mut rt, "the join's epoch active", STEP_LIMIT, |rt| {
        epoch(rt) > 0
    });
    let before = epoch(&rt);

    // The key server stops answering (SIGSTOP); the member asks for a rekey.
    site.servers[0].signal("STOP");
    let now = rt.clock().now();
    rt.member_mut().request_rekey(now).unwrap();
    drive(&mut rt, "moved to the next address", STEP_LIMIT, |rt| {
        rt.contact().failovers == 1
    });
    assert_eq!(rt.server(), dead, "requests now go to the next address");

    // It answers after all (the queued reports): from the first address, no longer current.
    site.servers[0].signal("CONT");
    drive(&mut rt, "the rekey installed", STEP_LIMIT, |rt| {
        epoch(rt) > before
    });
    assert_eq!(rt.server(), live, "followed the server that answered");
    assert!(rt.contact().followed >= 1, "{:?}", rt.contact());
    // Its acknowledgement went to that server: it shows the member settled.
    let deadline = Instant::now() + STEP_LIMIT;
    loop {
        rt.poll().unwrap();
        let s = site.status(STEP_LIMIT);
        let g = &s["groups"][0];
        if g["staged"].is_null() && g["members"][0]["pending"] == false {
            assert_eq!(g["members"][0]["device"], 7);
            break;
        }
        assert!(Instant::now() < deadline, "never settled: {s}");
    }
}

/// `admin` with several control sockets: one nobody answers on and one of a standby are
/// skipped, the active server answers; with only the standby's (and the dead one), it fails
/// naming what each answered; with one socket, a standby's answer is printed as it is.
#[test]
fn admin_skips_unreachable_and_standby_control_sockets() {
    use std::io::{BufRead, BufReader, Write};
    let mut site = Site::new("failover-admin", &["state = \"ks.redb\"".to_string()], 0);
    site.servers[0].start(true);
    site.status(STEP_LIMIT);
    let dead = site.dir.join("nobody.sock");
    let standby = site.dir.join("standby.sock");
    let listener = std::os::unix::net::UnixListener::bind(&standby).unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().map_while(Result::ok) {
            let mut line = String::new();
            let _ = BufReader::new(&s).read_line(&mut line);
            let _ = writeln!(
                s,
                "{{\"error\":\"this key server is standby (not active): ask the active \
                 one (\\\"ks0\\\")\"}}"
            );
        }
    });
    let active = site.servers[0].control.clone();
    let v = failover::admin(&[dead.clone(), standby.clone(), active], &["rekey", "1"])
        .expect("the active server answers");
    assert_eq!(v["group"], GROUP, "{v}");
    let err = failover::admin(&[dead.clone(), standby.clone()], &["status"]).unwrap_err();
    assert!(
        err.contains("no active key server among 2")
            && err.contains("standby.sock: this key server is standby (not active)"),
        "{err}"
    );
    // One socket: exactly as before (its answer, exit 1 for an error answer).
    let err = failover::admin(&[standby], &["status"]).unwrap_err();
    assert!(err.contains("is standby (not active)"), "{err}");
}

/// Three key servers on one PostgreSQL (lease 1 s, renewed every 250 ms): the active one is
/// SIGKILLed ten times (joins, revocation, rekey) and started again as a standby.
#[cfg(feature = "postgres")]
#[test]
fn postgres_three_servers_active_one_killed_ten_times() {
    let Some(pg) = common::pg::Pg::start("failover") else {
        return;
    };
    pg.create_db("ks");
    let conninfo = pg.conninfo("ks");
    let stores: Vec<String> = (0..3)
        .map(|i| {
            format!(
                "state = \"ks{i}.hwm\"\n\n[store]\nkind = \"postgres\"\nconninfo = \"{conninfo}\"\n\
                 server_name = \"ks{i}\"\nlease_ms = 1000\nrenew_ms = 250"
            )
        })
        .collect();
    let mut site = Site::new("failover-pg", &stores, 0);
    scenario(&mut site, 10);
    // The database's own rows: the three revocations are there, and the lease's token and
    // generation are at least what the servers showed last (nothing went back).
    let mut db = postgres::Client::connect(&conninfo, postgres::NoTls).unwrap();
    let revoked: Vec<i64> = db
        .query("SELECT device FROM keyserver_revoked ORDER BY device", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(revoked, [3, 4, 5], "revocations in the database");
    let row = db
        .query_one("SELECT holder, token, generation FROM keyserver_lease", &[])
        .unwrap();
    let (holder, token, generation): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
    site.note(failover::ledger::Seen::Lease {
        holder: holder.clone(),
        token: token as u64,
        generation: generation as u64,
    });
    let sh = site.shared.lock().unwrap();
    sh.ledger
        .check()
        .unwrap_or_else(|bad| panic!("invariant violated (database rows):\n{}", bad.join("\n")));
    println!(
        "database: revoked {revoked:?}; lease held by {holder}, token {token}, generation {generation}"
    );
    drop(sh);
    drop(site);
    drop(pg);
}

/// A UDP relay between a member and the key server: the member's one key-server address is
/// `front`; requests go on to the server from a `back` socket. It drops the first key bundle
/// and then moves to a new `back` socket, so the server holds the join as done and sends the
/// bundle (and each retransmission of it) to an address nobody listens on any more.
struct Relay {
    front: SocketAddr,
    bundles_dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(server: SocketAddr) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        front
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let addr = front.local_addr().unwrap();
        let bundles_dropped = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (dropped, halt) = (bundles_dropped.clone(), stop.clone());
        std::thread::spawn(move || {
            let new_back = || {
                let b = UdpSocket::bind("127.0.0.1:0").unwrap();
                b.set_nonblocking(true).unwrap();
                b
            };
            let mut back = new_back();
            let mut member = None;
            let mut buf = [0u8; 4096];
            while !halt.load(Ordering::Relaxed) {
                if let Ok((n, from)) = front.recv_from(&mut buf) {
                    member = Some(from);
                    let _ = back.send_to(&buf[..n], server);
                }
                while let Ok((n, _)) = back.recv_from(&mut buf) {
                    let bundle = matches!(
                        group_core::keydist::parse(&buf[..n]).map(|p| p.message),
                        Ok(group_core::keydist::Message::KeyBundle(_))
                    );
                    if bundle && dropped.load(Ordering::Relaxed) == 0 {
                        dropped.store(1, Ordering::Relaxed);
                        back = new_back();
                        break;
                    }
                    if let Some(m) = member {
                        let _ = front.send_to(&buf[..n], m);
                    }
                }
            }
        });
        Relay {
            front: addr,
            bundles_dropped,
            stop,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One key-server address, and the join's bundle lost with the device's address gone stale at
/// the server (as when the daemon is killed between committing a join and saving the address):
/// the server answers every retransmission of the request by sending the bundle to the stale
/// address. The member starts the join over with a fresh nonce after 3 s without an answer,
/// and is joined as a rejoin. (Before, it retransmitted the same request forever.)
#[test]
fn a_join_whose_bundle_went_to_a_stale_address_completes_with_a_fresh_request() {
    let mut site = Site::new("failover-stale", &["state = \"ks.redb\"".to_string()], 0);
    site.servers[0].start(true);
    site.status(STEP_LIMIT);
    let relay = Relay::start(site.member_servers[0]);
    let start = Instant::now();
    let mut rt = site.runtime(9, &[relay.front]);
    drive(&mut rt, "joined through the relay", STEP_LIMIT, |rt| {
        rt.member().is_joined()
    });
    assert_eq!(
        relay.bundles_dropped.load(Ordering::Relaxed),
        1,
        "the first bundle was dropped"
    );
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "joined only after starting over ({:?})",
        start.elapsed()
    );
    assert_eq!(rt.contact().failovers, 0, "one address: no move");
}

/// `dtls-group member` with two `--server` addresses (comma-separated), the first one dead:
/// it says on stderr that it moves on, joins through the second, and mixing address families
/// is refused.
#[test]
fn member_cli_with_several_servers_moves_on_and_joins() {
    let mut site = Site::new("failover-cli", &["state = \"ks.redb\"".to_string()], 1);
    site.servers[0].start(true);
    site.status(STEP_LIMIT);
    let servers: Vec<String> = site.member_servers.iter().map(|s| s.to_string()).collect();
    let dir = site.dir.clone();
    let member = |servers: &str| {
        std::process::Command::new(failover::BIN)
            .args(["member", "--server", servers, "--server-key"])
            .arg(dir.join("server.pub"))
            .arg("--device-key")
            .arg(dir.join("dev5.key"))
            .args(["--device-id", "5", "--group-id", "1", "--group"])
            .arg(site.group.to_string())
            .args(["--iface", "127.0.0.1", "--timeout", "6"])
            .env("DTLS_GROUP_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = member(&servers.join(","));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("trying the next address") && stderr.contains(&servers[0]),
        "{stderr}"
    );
    assert!(
        stdout.contains("\"event\":\"bundle_installed\""),
        "{stdout}\n{stderr}"
    );
    let mixed = member(&format!("{},[::1]:9", servers[1]));
    assert!(!mixed.status.success());
    assert!(
        String::from_utf8_lossy(&mixed.stderr).contains("mix IPv4 and IPv6"),
        "{mixed:?}"
    );
}
