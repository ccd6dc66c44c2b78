//! Key pair files and the operating system's random number generator.
//!
//! A private key file holds the 32-byte P-256 scalar as hex on one line and is created with
//! mode 0600; the public key file holds the SEC1 compressed point (33 bytes) as hex.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
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

/// Reads a private key file.
pub fn read_private(path: &Path) -> io::Result<SigningKey> {
    let text = Zeroizing::new(fs::read_to_string(path)?);
    let bytes = Zeroizing::new(
        hex::decode(text.trim())
            .map_err(|_| invalid(format!("{}: not a hex private key", path.display())))?,
    );
    SigningKey::from_slice(&bytes)
        .map_err(|_| invalid(format!("{}: not a P-256 private key", path.display())))
}

/// Parses a public key given as hex (SEC1, compressed or not).
pub fn parse_public(hex_text: &str) -> io::Result<VerifyingKey> {
    let bytes = hex::decode(hex_text.trim()).map_err(|_| invalid("public key: not hex".into()))?;
    VerifyingKey::from_sec1_bytes(&bytes)
        .map_err(|_| invalid("public key: not a P-256 point".into()))
}

/// Reads a public key file (or, if `text` is not a file, parses it as hex).
pub fn read_public(path_or_hex: &str) -> io::Result<VerifyingKey> {
    match fs::read_to_string(path_or_hex) {
        Ok(text) => parse_public(&text),
        Err(_) => parse_public(path_or_hex),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        fs::remove_dir_all(&dir).unwrap();
    }
}
