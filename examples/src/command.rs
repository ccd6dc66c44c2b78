//! The lighting application payload: what a switch puts inside a group record, and what a light
//! does with it.
//!
//! A [`LightingMessage`] is encoded with [postcard](https://docs.rs/postcard) (the same compact
//! serde format the key distribution uses): `version` (one byte, [`PAYLOAD_VERSION`]), `txn`
//! (a varint: the switch's own command counter, for logs and correlation only — replay
//! protection is the record layer's job), then the command (a varint variant index and its
//! fields). Every message is 3 to 8 bytes; the record layer adds 37 bytes with AES-128-CCM.
//!
//! | command | variant | fields | bytes for `txn` = 5 |
//! |---|---|---|---|
//! | [`LightCommand::On`] | 0 | — | `01 05 00` |
//! | [`LightCommand::Off`] | 1 | — | `01 05 01` |
//! | [`LightCommand::Dim`] | 2 | `level: u8` (0..=100 %) | `01 05 02 28` (level 40) |
//! | [`LightCommand::Scene`] | 3 | `id: u8` (1..=3, [`SCENES`]) | `01 05 03 02` (scene 2) |
//!
//! Decoding ([`LightingMessage::decode`]) refuses, without panicking, a payload that does not
//! decode, has bytes after the message, has another version, a level above 100 or an unknown
//! scene: a light ignores such a record and counts it as `invalid_command`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The payload version this code writes and accepts.
pub const PAYLOAD_VERSION: u8 = 1;

/// The largest encoded message (version, a 5-byte varint `txn`, variant, one field byte).
pub const MAX_ENCODED_LEN: usize = 8;

/// The scenes a light knows: `(id, name, level %)`.
pub const SCENES: [(u8, &str, u8); 3] = [(1, "reading", 100), (2, "evening", 30), (3, "night", 5)];

/// What a switch asks the lights to do.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum LightCommand {
    /// Switch on at the last level (100 % if it was dimmed to 0).
    On,
    /// Switch off (the level is kept for the next `On`).
    Off,
    /// Set the level, 0 to 100 %; 0 switches off, anything else on.
    Dim {
        /// Level in percent.
        level: u8,
    },
    /// Recall a scene ([`SCENES`]): on, at the scene's level.
    Scene {
        /// Scene number.
        id: u8,
    },
}

impl fmt::Display for LightCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LightCommand::On => f.write_str("On"),
            LightCommand::Off => f.write_str("Off"),
            LightCommand::Dim { level } => write!(f, "Dim {level}%"),
            LightCommand::Scene { id } => match scene(*id) {
                Some((name, level)) => write!(f, "Scene {id} ({name}, {level}%)"),
                None => write!(f, "Scene {id}"),
            },
        }
    }
}

/// A scene's name and level.
pub fn scene(id: u8) -> Option<(&'static str, u8)> {
    SCENES
        .iter()
        .find(|(i, _, _)| *i == id)
        .map(|(_, name, level)| (*name, *level))
}

/// One application message: the plaintext of one group record.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct LightingMessage {
    /// [`PAYLOAD_VERSION`].
    pub version: u8,
    /// The sending switch's command counter (informative).
    pub txn: u32,
    /// The command.
    pub command: LightCommand,
}

/// Why a payload was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PayloadError {
    /// Not a postcard-encoded message (or bytes after it).
    Malformed,
    /// Another payload version.
    Version(u8),
    /// A level above 100 or an unknown scene.
    OutOfRange,
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadError::Malformed => f.write_str("malformed payload"),
            PayloadError::Version(v) => write!(f, "payload version {v}"),
            PayloadError::OutOfRange => f.write_str("value out of range"),
        }
    }
}

impl std::error::Error for PayloadError {}

impl LightingMessage {
    /// A version-1 message.
    pub const fn new(txn: u32, command: LightCommand) -> Self {
        Self {
            version: PAYLOAD_VERSION,
            txn,
            command,
        }
    }

    /// The postcard encoding (at most [`MAX_ENCODED_LEN`] bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = [0u8; MAX_ENCODED_LEN];
        // Cannot fail: every message fits MAX_ENCODED_LEN bytes.
        postcard::to_slice(self, &mut buf)
            .map(|b| b.to_vec())
            .unwrap_or_default()
    }

    /// Decodes and checks a payload (never panics).
    pub fn decode(bytes: &[u8]) -> Result<Self, PayloadError> {
        let (m, rest): (Self, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|_| PayloadError::Malformed)?;
        if !rest.is_empty() {
            return Err(PayloadError::Malformed);
        }
        if m.version != PAYLOAD_VERSION {
            return Err(PayloadError::Version(m.version));
        }
        match m.command {
            LightCommand::Dim { level } if level > 100 => Err(PayloadError::OutOfRange),
            LightCommand::Scene { id } if scene(id).is_none() => Err(PayloadError::OutOfRange),
            _ => Ok(m),
        }
    }
}

/// What a light shows.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct LightState {
    /// Lit.
    pub on: bool,
    /// Level in percent (kept while off).
    pub level: u8,
}

impl Default for LightState {
    /// Off, at 100 %.
    fn default() -> Self {
        Self {
            on: false,
            level: 100,
        }
    }
}

impl LightState {
    /// The state after `command` (a checked command: see [`LightingMessage::decode`]).
    pub fn apply(self, command: LightCommand) -> Self {
        match command {
            LightCommand::On => Self {
                on: true,
                level: if self.level == 0 { 100 } else { self.level },
            },
            LightCommand::Off => Self { on: false, ..self },
            LightCommand::Dim { level } => Self {
                on: level > 0,
                level: level.min(100),
            },
            LightCommand::Scene { id } => match scene(id) {
                Some((_, level)) => Self { on: true, level },
                None => self,
            },
        }
    }
}

impl fmt::Display for LightState {
    /// Six characters: `ON 100`, `ON  40`, `off   `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.on {
            write!(f, "ON {:>3}", self.level)
        } else {
            f.write_str("off   ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_the_documented_bytes() {
        let cases = [
            (LightCommand::On, "010500"),
            (LightCommand::Off, "010501"),
            (LightCommand::Dim { level: 40 }, "01050228"),
            (LightCommand::Scene { id: 2 }, "01050302"),
        ];
        for (c, want) in cases {
            let m = LightingMessage::new(5, c);
            assert_eq!(hex::encode(m.encode()), want, "{c}");
            assert_eq!(LightingMessage::decode(&m.encode()), Ok(m));
        }
        let big = LightingMessage::new(u32::MAX, LightCommand::Dim { level: 100 });
        assert_eq!(big.encode().len(), MAX_ENCODED_LEN);
        assert_eq!(LightingMessage::decode(&big.encode()), Ok(big));
    }

    #[test]
    fn bad_payloads_are_refused() {
        assert_eq!(LightingMessage::decode(&[]), Err(PayloadError::Malformed));
        assert_eq!(
            LightingMessage::decode(&[1, 5, 9]),
            Err(PayloadError::Malformed)
        );
        assert_eq!(
            LightingMessage::decode(&[1, 5, 0, 0]),
            Err(PayloadError::Malformed)
        );
        assert_eq!(
            LightingMessage::decode(&[2, 5, 0]),
            Err(PayloadError::Version(2))
        );
        assert_eq!(
            LightingMessage::decode(&[1, 5, 2, 101]),
            Err(PayloadError::OutOfRange)
        );
        assert_eq!(
            LightingMessage::decode(&[1, 5, 3, 9]),
            Err(PayloadError::OutOfRange)
        );
        // Every truncation and every single-byte value of each position: no panic.
        let m = LightingMessage::new(300, LightCommand::Dim { level: 40 }).encode();
        for n in 0..m.len() {
            let _ = LightingMessage::decode(&m[..n]);
        }
        for i in 0..m.len() {
            for v in 0..=255u8 {
                let mut b = m.clone();
                b[i] = v;
                let _ = LightingMessage::decode(&b);
            }
        }
    }

    #[test]
    fn state_changes() {
        let s = LightState::default();
        assert_eq!(
            s.apply(LightCommand::On),
            LightState {
                on: true,
                level: 100
            }
        );
        let d = s.apply(LightCommand::Dim { level: 40 });
        assert_eq!(
            d,
            LightState {
                on: true,
                level: 40
            }
        );
        let o = d.apply(LightCommand::Off);
        assert_eq!(
            o,
            LightState {
                on: false,
                level: 40
            }
        );
        assert_eq!(o.apply(LightCommand::On), d);
        let z = d.apply(LightCommand::Dim { level: 0 });
        assert!(!z.on);
        assert_eq!(z.apply(LightCommand::On).level, 100);
        assert_eq!(
            s.apply(LightCommand::Scene { id: 2 }),
            LightState {
                on: true,
                level: 30
            }
        );
        assert_eq!(o.to_string(), "off   ");
        assert_eq!(d.to_string(), "ON  40");
    }
}
