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
