//! `dtls-group keygen` and `keyserver` configuration errors: one clear line, exit 2, no panic.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_dtls-group");

#[test]
fn bad_key_server_configs_give_one_line_errors() {
    let dir = std::env::temp_dir().join(format!("dtls-group-badcfg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(BIN)
        .args(["keygen", "--out"])
        .arg(dir.join("dev"))
        .output()
        .unwrap();
    assert!(out.status.success());
    // keygen refuses to overwrite a key.
    let again = Command::new(BIN)
        .args(["keygen", "--out"])
        .arg(dir.join("dev"))
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    let base = "listen = \"127.0.0.1:47999\"\nstate = \"ks.redb\"\nserver_key = \"dev.key\"\n";
    let group = "[[group]]\nid = 1\nsuite = \"ccm\"\n";
    let device = |id: u32, groups: &str| {
        format!(
            "[[device]]\nid = {id}\npublic_key = \"dev.pub\"\nrole = \"sender\"\ngroups = {groups}\n"
        )
    };
    let cases = [
        ("syntax", "listen = ".to_string(), "config"),
        (
            "unknown suite",
            format!("{base}[[group]]\nid = 1\nsuite = \"rot13\"\n"),
            "suite",
        ),
        (
            "unknown field",
            format!("{base}colour = \"red\"\n"),
            "colour",
        ),
        (
            "unknown group",
            format!("{base}{group}{}", device(1, "[2]")),
            "unknown group 2",
        ),
        (
            "duplicate device",
            format!("{base}{group}{}{}", device(1, "[1]"), device(1, "[1]")),
            "same id",
        ),
        (
            "bad role",
            format!(
                "{base}{group}[[device]]\nid = 1\npublic_key = \"dev.pub\"\nrole = \"boss\"\ngroups = [1]\n"
            ),
            "role",
        ),
        (
            "bad admission",
            format!("{base}[[group]]\nid = 1\nsuite = \"ccm\"\nadmission = \"open\"\n"),
            "admission",
        ),
    ];
    for (name, text, needle) in cases {
        let cfg = dir.join("ks.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = Command::new(BIN)
            .args(["keyserver", "--init", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(err.contains(needle), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    let out = Command::new(BIN)
        .args(["keyserver", "--config"])
        .arg(dir.join("nope.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_changes_to_existing_entries_are_warned_about_not_silently_ignored() {
    let dir = std::env::temp_dir().join(format!("dtls-group-cfgwarn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for n in ["server", "dev"] {
        let out = Command::new(BIN)
            .args(["keygen", "--out"])
            .arg(dir.join(n))
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let port = 46_000 + std::process::id() % 1000;
    let cfg = |grace: u32, role: &str| {
        format!(
            "listen = \"127.0.0.1:{port}\"\nstate = \"ks.redb\"\nserver_key = \"server.key\"\n\
             [[group]]\nid = 1\nsuite = \"ccm\"\ngrace_ms = {grace}\n\
             [[device]]\nid = 1\npublic_key = \"dev.pub\"\nrole = \"{role}\"\ngroups = [1]\n"
        )
    };
    let run = |text: String, init: bool| -> String {
        let path = dir.join("ks.toml");
        std::fs::write(&path, text).unwrap();
        let mut c = Command::new(BIN);
        c.args(["keyserver", "--timeout", "1", "--config"])
            .arg(&path);
        if init {
            c.arg("--init");
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let first = run(cfg(5000, "sender"), true);
    assert!(first.contains("group created") && first.contains("device admitted"));
    let same = run(cfg(5000, "sender"), false);
    assert!(!same.contains("differ"), "{same}");
    let changed = run(cfg(9000, "listener"), false);
    assert!(changed.contains("group=1") && changed.contains("differ from the running state"));
    assert!(changed.contains("device=1"), "{changed}");
    assert_eq!(
        changed.matches("differ from the running").count(),
        2,
        "{changed}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
