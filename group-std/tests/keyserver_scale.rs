//! The key server at building scale (issue 16): a daemon with 10,000 devices in 1,000 groups
//! (no capacity a site can hit) admits them all, members join through it over real UDP on
//! loopback, and it restarts from that state; a state database in the single-blob format of
//! before issue 16 is converted on first start and keeps everything it held. Loopback only;
//! every process and wait is bounded.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use group_core::keydist::{DeviceCredential, DeviceId, KeyServer, Role, ServerCredentials};
use group_core::time::Instant as Now;
use group_std::keyserver::{RedbServerStore, ServerType};
use p256::ecdsa::SigningKey;
use serde_json::Value;

use common::{BIN, Proc, free_udp_port, fresh_dir, path_in};

/// The fixture's device keys (keyserver_v1.gen.rs.txt).
fn fixture_key(id: u32) -> SigningKey {
    let mut b = [0u8; 32];
    b[0] = 0x01;
    b[28..].copy_from_slice(&id.to_be_bytes());
    b[1] = 0x5a;
    SigningKey::from_slice(&b).unwrap()
}

#[test]
fn a_single_blob_state_is_converted_on_first_start() {
    let dir = fresh_dir("migrate");
    let p = dir.join("ks.redb");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keyserver_v1.redb");
    std::fs::copy(&fixture, &p).unwrap();
    let creds = || ServerCredentials::new(SigningKey::from_slice(&[0x33; 32]).unwrap());
    for round in 0..2 {
        // Round 0 converts; round 1 opens the converted records as they are.
        let store = RedbServerStore::open(&p).unwrap();
        let mut s: ServerType = KeyServer::open(creds(), store).unwrap();
        assert_eq!((s.group_count(), s.device_count()), (2, 3), "round {round}");
        assert_eq!(s.epochs(21), Some((Some(1), None)));
        if round == 0 {
            assert_eq!(s.epochs(22), Some((Some(1), Some(2))));
            assert_eq!(s.latest_epoch(22), Some(2));
        }
        let mut members: Vec<_> = s.members(21).collect();
        members.sort();
        assert_eq!(members, [(DeviceId(1), Some(1)), (DeviceId(2), None)]);
        assert_eq!(s.members(22).count(), 0);
        let (cred, role) = s.device(DeviceId(3)).unwrap();
        let mut groups: Vec<u32> = s.device_groups(DeviceId(3)).collect();
        groups.sort_unstable();
        assert_eq!(
            *cred,
            DeviceCredential::public_key(fixture_key(3).verifying_key())
        );
        assert_eq!((role, &groups[..]), (Role::Sender, &[21, 22][..]));
        assert!(s.group_spec(22).unwrap().policy.signatures_required);
        // The tables the daemon kept beside the state are untouched.
        assert!(s.store().is_revoked(9).unwrap());
        assert!(!s.store().is_revoked(3).unwrap());
        assert_eq!(
            s.store().addresses().unwrap(),
            [(1, "127.0.0.1:4000".parse().unwrap())]
        );
        if round == 0 {
            // Epochs go on from where the old state was (never 2 again in group 22).
            let mut rng = group_std::keyfile::os_rng();
            assert_eq!(s.rekey(22, Now(10_000), &mut rng), Ok(3));
            assert_eq!(s.rekey(22, Now(10_000), &mut rng), Ok(4));
        } else {
            assert_eq!(s.latest_epoch(22), Some(4));
        }
    }
    // The old table is gone; a second conversion can't happen.
    let db = redb::Database::open(&p).unwrap();
    let tx = redb::ReadableDatabase::begin_read(&db).unwrap();
    let old: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("keyserver_state");
    assert!(matches!(
        tx.open_table(old),
        Err(redb::TableError::TableDoesNotExist(_))
    ));
    drop(tx);
    drop(db);
    // A blob that does not decode is refused, not taken for an empty state.
    let bad = dir.join("bad.redb");
    {
        let db = redb::Database::create(&bad).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(old).unwrap();
            t.insert("state", &[1u8, 0xff, 0xff, 0xff][..]).unwrap();
        }
        tx.commit().unwrap();
    }
    let e = RedbServerStore::open(&bad).unwrap_err();
    assert!(e.to_string().contains("does not decode"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn installed(v: &Value) -> bool {
    v["event"] == "bundle_installed"
}

const DEVICES: u32 = 10_000;
const GROUPS: u32 = 1_000;

/// Device `id`'s group: ten devices per group.
fn group_of(id: u32) -> u32 {
    (id - 1) % GROUPS + 1
}

#[test]
fn ten_thousand_devices_in_a_thousand_groups_join_through_the_daemon() {
    let dir = fresh_dir("scale");
    let p = |n: &str| path_in(&dir, n);
    let port = free_udp_port();
    let mcast_port = 30_000 + std::process::id() % 20_000;
    let keygen = |n: &str| {
        let out = Command::new(BIN)
            .args(["keygen", "--out", &p(n)])
            .output()
            .unwrap();
        assert!(out.status.success());
        std::fs::read_to_string(p(&format!("{n}.pub")))
            .unwrap()
            .trim()
            .to_owned()
    };
    keygen("server");
    // The sample that joins: devices spread over the groups, two in group 1.
    let sample = [1u32, 1_001, 500, 7_777, 10_000];
    let mut toml = format!(
        "listen = \"127.0.0.1:{port}\"\nstate = \"ks.redb\"\nserver_key = \"server.key\"\n"
    );
    for g in 1..=GROUPS {
        toml.push_str(&format!(
            "\n[[group]]\nid = {g}\nsuite = \"ccm\"\nmulticast = \"239.255.{}.{}:{mcast_port}\"\n\
             activation_delay_ms = 200\n",
            60 + g / 256,
            g % 256
        ));
    }
    for id in 1..=DEVICES {
        let public = if sample.contains(&id) {
            keygen(&format!("dev-{id}"))
        } else {
            let mut b = [0u8; 32];
            b[0] = 0x02;
            b[28..].copy_from_slice(&id.to_be_bytes());
            let k = SigningKey::from_slice(&b).unwrap();
            group_std::keyfile::public_hex(k.verifying_key())
        };
        toml.push_str(&format!(
            "\n[[device]]\nid = {id}\nname = \"dev-{id}\"\npublic_key = \"{public}\"\n\
             role = \"sender\"\ngroups = [{}]\n",
            group_of(id)
        ));
    }
    std::fs::write(dir.join("ks.toml"), toml).unwrap();
    let ctrl = dir.join("ks.sock");
    let ks_args = |init: bool| common::keyserver_args(&p("ks.toml"), &ctrl, 240, init);
    let start_ks = |init: bool| -> (Proc, Duration) {
        let _ = std::fs::remove_file(&ctrl);
        let t = Instant::now();
        let ks = Proc::spawn("keyserver", &ks_args(init), false);
        let deadline = t + Duration::from_secs(120);
        // The control socket is bound before the state is opened: wait for an answer.
        loop {
            let out = Command::new(BIN)
                .arg("admin")
                .arg(&ctrl)
                .arg("status")
                .output()
                .unwrap();
            if out.status.success() {
                let s: Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(s["groups"].as_array().map(Vec::len), Some(GROUPS as usize));
                break;
            }
            assert!(Instant::now() < deadline, "key server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        (ks, t.elapsed())
    };
    let member = |id: u32| -> Proc {
        let g = group_of(id);
        let a: Vec<String> = vec![
            "member".into(),
            "--server".into(),
            format!("127.0.0.1:{port}"),
            "--server-key".into(),
            p("server.pub"),
            "--device-key".into(),
            p(&format!("dev-{id}.key")),
            "--device-id".into(),
            id.to_string(),
            "--group-id".into(),
            g.to_string(),
            "--group".into(),
            format!("239.255.{}.{}:{mcast_port}", 60 + g / 256, g % 256),
            "--role".into(),
            "listener".into(),
            "--timeout".into(),
            "60".into(),
        ];
        Proc::spawn(&format!("dev-{id}"), &a, false)
    };
    let (ks, took) = start_ks(true);
    eprintln!("admitted {DEVICES} devices into {GROUPS} groups and serving after {took:?}");
    let members: Vec<Proc> = sample.iter().map(|id| member(*id)).collect();
    for m in &members {
        m.wait_for("its key bundle", installed, Duration::from_secs(60));
    }
    drop(members);
    // The state holds every device: a restart from it serves the next join.
    drop(ks);
    let (ks, took) = start_ks(false);
    let t = Instant::now();
    let late = member(10_000);
    late.wait_for(
        "its key bundle after the restart",
        installed,
        Duration::from_secs(60),
    );
    eprintln!(
        "restart from {DEVICES} devices' state: serving after {took:?}, first join answered {:?} later (debug build)",
        t.elapsed()
    );
    let out = Command::new(BIN)
        .arg("admin")
        .arg(&ctrl)
        .arg("status")
        .output()
        .unwrap();
    assert!(out.status.success());
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        s["devices"].as_array().map(Vec::len),
        Some(DEVICES as usize),
        "every device is on file"
    );
    drop(late);
    drop(ks);
    std::fs::remove_dir_all(&dir).unwrap();
}
