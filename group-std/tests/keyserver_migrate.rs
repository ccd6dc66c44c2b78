//! Issue 16: a redb state of record format 2 (each device's groups and memberships inside its
//! row, as main wrote it before the (device, group) records) is converted on open to format 3
//! and opens as the same state; a second open converts nothing; a state of a newer format is
//! refused. (The same on PostgreSQL: keyserver_pg.rs.)

mod common;

use common::v2;
use group_core::keydist::{KeyServer, Row, ServerCredentials, ServerStore, state_format};
use group_std::keyserver::{RedbServerStore, ServerType};

fn write(path: &std::path::Path, format: u8) {
    let mut st = RedbServerStore::create_new(path).unwrap();
    let rows = v2::rows(format);
    let rows: Vec<Row<'_>> = rows
        .iter()
        .map(|(t, k, v)| Row {
            table: *t,
            key: *k,
            value: Some(v),
        })
        .collect();
    st.commit(&rows).unwrap();
}

fn counters_format(st: &mut RedbServerStore) -> Option<u8> {
    let mut f = None;
    st.load(&mut |t, _, v| {
        if t == group_core::keydist::Table::Counters {
            f = state_format(v);
        }
        Ok(())
    })
    .unwrap();
    f
}

#[test]
fn a_format_2_redb_state_is_migrated_on_first_start() {
    let dir = common::fresh_dir("migrate-v2");
    let p = dir.join("ks.redb");
    write(&p, 2);
    let creds = || ServerCredentials::new(v2::server_key());
    let mut st = RedbServerStore::open(&p).unwrap();
    assert_eq!(counters_format(&mut st), Some(3));
    let s: ServerType = KeyServer::open(creds(), st).unwrap();
    v2::check(&s);
    drop(s);
    // Already format 3: opened as it is.
    let s: ServerType = KeyServer::open(creds(), RedbServerStore::open(&p).unwrap()).unwrap();
    v2::check(&s);
    drop(s);

    // A newer format is refused by the store, by name.
    let newer = dir.join("newer.redb");
    write(&newer, 4);
    let e = RedbServerStore::open(&newer).unwrap_err();
    assert!(e.to_string().contains("newer"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
