//! Key pair files and the operating system's random number generator.
//!
//! A private key file holds the 32-byte P-256 scalar as hex on one line and is created with
//! mode 0600; the public key file holds the SEC1 compressed point (33 bytes) as hex.
//!
//! Every secret read from a file goes through [`read_secret_file`]: a missing file is
//! "not found: PATH" (never taken for something else), and a file that its group or others
//! may read is refused, naming the file and its mode, as ssh does for private keys. What is
//! read is held in zeroizing buffers.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use p256::ecdsa::{SigningKey, VerifyingKey};
use rand_core::UnwrapErr;
use zeroize::Zeroizing;

/// The operating system's CSPRNG (getrandom), as the core's `CryptoRng`.
pub type OsRng = UnwrapErr<getrandom::SysRng>;

/// A new OS RNG.
pub fn os_rng() -> OsRng {
    UnwrapErr(getrandom::SysRng)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Generates a key pair and writes `PREFIX.key` (private, 0600, refusing to overwrite) and
/// `PREFIX.pub`. Returns the public key.
pub fn generate(prefix: &Path) -> io::Result<VerifyingKey> {
    let mut secret = Zeroizing::new([0u8; 32]);
    let key = loop {
        getrandom::fill(&mut *secret).map_err(|e| io::Error::other(e.to_string()))?;
        if let Ok(k) = SigningKey::from_slice(&*secret) {
            break k;
        }
    };
    let private = with_suffix(prefix, ".key");
    let public = with_suffix(prefix, ".pub");
    if public.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists", public.display()),
        ));
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&private)?;
    let hex_secret = Zeroizing::new(hex::encode(secret.as_slice()));
    writeln!(f, "{}", hex_secret.as_str())?;
    f.sync_all()?;
    let vk = *key.verifying_key();
    let mut p = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&public)?;
    writeln!(p, "{}", public_hex(&vk))?;
    p.sync_all()?;
    Ok(vk)
}

/// `PREFIX.key` / `PREFIX.pub`: the suffix is appended (`light.kitchen` → `light.kitchen.key`).
pub fn with_suffix(prefix: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

/// The SEC1 compressed public key as hex.
pub fn public_hex(key: &VerifyingKey) -> String {
    hex::encode(key.to_sec1_point(true).as_bytes())
}

/// The largest secret file read (a hex key is far smaller).
pub const MAX_SECRET_FILE: u64 = 4096;

/// Reads at most [`MAX_SECRET_FILE`] bytes into a zeroizing buffer allocated once (no
/// reallocation leaves copies behind).
fn read_bounded(mut r: impl Read, what: &dyn std::fmt::Display) -> io::Result<Zeroizing<Vec<u8>>> {
    let cap = usize::try_from(MAX_SECRET_FILE)
        .unwrap_or(4096)
        .saturating_add(1);
    let mut buf = Zeroizing::new(Vec::with_capacity(cap));
    r.by_ref()
        .take(MAX_SECRET_FILE.saturating_add(1))
        .read_to_end(&mut buf)?;
    if buf.len() > usize::try_from(MAX_SECRET_FILE).unwrap_or(usize::MAX) {
        return Err(invalid(format!(
            "{what}: larger than {MAX_SECRET_FILE} bytes, not a key"
        )));
    }
    Ok(buf)
}

/// Reads a secret file: "not found: PATH" if it is missing; refused if it is not a regular
/// file or if its group or others may read or write it (mode & 077), with the file and its
/// mode in the error.
pub fn read_secret_file(path: &Path) -> io::Result<Zeroizing<Vec<u8>>> {
    let f = fs::File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            io::Error::new(e.kind(), format!("not found: {}", path.display()))
        }
        _ => io::Error::new(e.kind(), format!("{}: {e}", path.display())),
    })?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(invalid(format!("{}: not a regular file", path.display())));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{}: mode {mode:04o} lets group or others access a secret; refusing it \
                 (chmod 600 {})",
                path.display(),
                path.display()
            ),
        ));
    }
    read_bounded(f, &path.display())
}

/// Reads a secret from standard input (at most [`MAX_SECRET_FILE`] bytes, until EOF).
pub fn read_secret_stdin() -> io::Result<Zeroizing<Vec<u8>>> {
    read_bounded(io::stdin().lock(), &"standard input")
}

/// Decodes the hex text of a secret (surrounding whitespace ignored) into a zeroizing buffer.
/// The error names `what`, never the content.
pub fn decode_secret_hex(what: &str, text: &[u8]) -> io::Result<Zeroizing<Vec<u8>>> {
    let trimmed = text.trim_ascii();
    let len = trimmed.len() / 2;
    let mut out = Zeroizing::new(vec![0u8; len]);
    if !trimmed.len().is_multiple_of(2) || hex::decode_to_slice(trimmed, &mut out).is_err() {
        return Err(invalid(format!("{what}: not hex")));
    }
    if out.is_empty() {
        return Err(invalid(format!("{what}: empty")));
    }
    Ok(out)
}

/// Reads a private key file (checked by [`read_secret_file`]).
pub fn read_private(path: &Path) -> io::Result<SigningKey> {
    let text = read_secret_file(path)?;
    let what = format!("{}: not a hex private key", path.display());
    let bytes = decode_secret_hex(&path.display().to_string(), &text).map_err(|_| invalid(what))?;
    SigningKey::from_slice(&bytes)
        .map_err(|_| invalid(format!("{}: not a P-256 private key", path.display())))
}

/// Parses a public key given as hex (SEC1, compressed or not).
pub fn parse_public(hex_text: &str) -> io::Result<VerifyingKey> {
    let bytes = hex::decode(hex_text.trim()).map_err(|_| invalid("public key: not hex".into()))?;
    // Only the two SEC1 encodings this project writes: compressed (02/03, 33 bytes) and
    // uncompressed (04, 65 bytes). p256 also takes the "compact" 05 form and the identity 00;
    // one key then has several spellings (found by the cli_parsers fuzz target).
    match (bytes.first(), bytes.len()) {
        (Some(2 | 3), 33) | (Some(4), 65) => {}
        _ => return Err(invalid("public key: not a P-256 point".into())),
    }
    VerifyingKey::from_sec1_bytes(&bytes)
        .map_err(|_| invalid("public key: not a P-256 point".into()))
}

/// Whether a public-key setting is the key itself (hex of a SEC1 point: 33 or 65 bytes) rather
/// than a file name. Anything else is a file name, so a mistyped path is "not found", never
/// parsed as hex.
pub fn is_public_hex(text: &str) -> bool {
    let t = text.trim();
    (t.len() == 66 || t.len() == 130) && t.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads a public key file.
pub fn read_public_file(path: &Path) -> io::Result<VerifyingKey> {
    let text = fs::read_to_string(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            io::Error::new(e.kind(), format!("not found: {}", path.display()))
        }
        _ => io::Error::new(e.kind(), format!("{}: {e}", path.display())),
    })?;
    parse_public(&text).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

/// A public key given as its hex (see [`is_public_hex`]) or as a file name.
pub fn read_public(path_or_hex: &str) -> io::Result<VerifyingKey> {
    if is_public_hex(path_or_hex) {
        parse_public(path_or_hex)
    } else {
        read_public_file(Path::new(path_or_hex))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key has one spelling per SEC1 form this project writes: the compact `05 || x` form
    /// that p256 also accepts is refused (the cli_parsers fuzz target found it re-encoding
    /// differently).
    #[test]
    fn public_keys_are_compressed_or_uncompressed_sec1_only() {
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let vk = *sk.verifying_key();
        let compressed = vk.to_sec1_point(true);
        let uncompressed = vk.to_sec1_point(false);
        assert_eq!(
            parse_public(&hex::encode(compressed.as_bytes())).unwrap(),
            vk
        );
        assert_eq!(
            parse_public(&hex::encode(uncompressed.as_bytes())).unwrap(),
            vk
        );
        let mut compact = compressed.as_bytes().to_vec();
        compact[0] = 5;
        let e = parse_public(&hex::encode(&compact)).unwrap_err();
        assert!(e.to_string().contains("not a P-256 point"), "{e}");
    }

    #[test]
    fn generate_read_and_refuse_overwrite() {
        let dir = std::env::temp_dir().join(format!("dtls-group-keyfile-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let prefix = dir.join("switch.kitchen");
        let vk = generate(&prefix).unwrap();
        let sk = read_private(&with_suffix(&prefix, ".key")).unwrap();
        assert_eq!(*sk.verifying_key(), vk);
        let pubtext = fs::read_to_string(with_suffix(&prefix, ".pub")).unwrap();
        assert_eq!(parse_public(&pubtext).unwrap(), vk);
        assert_eq!(
            read_public(with_suffix(&prefix, ".pub").to_str().unwrap()).unwrap(),
            vk
        );
        let mode = fs::metadata(with_suffix(&prefix, ".key"))
            .unwrap()
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
        assert!(generate(&prefix).is_err(), "must not overwrite a key");
        assert!(parse_public("00ff").is_err());
        // The hex itself is accepted where a public key file is.
        assert_eq!(read_public(&public_hex(&vk)).unwrap(), vk);
        // A missing file is "not found", never parsed as hex (even if its name is hex).
        let e = read_public(dir.join("dead.pub").to_str().unwrap()).unwrap_err();
        assert!(e.to_string().starts_with("not found: "), "{e}");
        assert!(
            read_public("deadbeef")
                .unwrap_err()
                .to_string()
                .contains("not found")
        );
        // A private key that others may read is refused, naming the file and its mode.
        let key = with_suffix(&prefix, ".key");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
        let e = read_private(&key).unwrap_err().to_string();
        assert!(
            e.contains("0640") && e.contains("switch.kitchen.key"),
            "{e}"
        );
        let e = read_private(&dir.join("nope.key")).unwrap_err().to_string();
        assert!(e.starts_with("not found: "), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
