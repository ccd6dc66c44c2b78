//! `include/dtls_group.h` is what cbindgen generates from this crate today: regenerating it
//! changes nothing. `DG_BLESS=1 cargo test -p group-ffi --test header` rewrites it.

use std::path::Path;

#[test]
fn header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut fresh = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut fresh);
    let path = crate_dir.join("../include/dtls_group.h");
    if std::env::var_os("DG_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write the header");
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "include/dtls_group.h differs from what cbindgen generates: regenerate it with \
         `DG_BLESS=1 cargo test -p group-ffi --test header` and commit it"
    );
}
