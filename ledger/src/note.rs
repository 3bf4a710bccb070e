//! C2SP signed notes and tlog checkpoints: the text formats of
//! [c2sp.org/signed-note](https://c2sp.org/signed-note) (Ed25519 signature type `0x01`) and
//! [c2sp.org/tlog-checkpoint](https://c2sp.org/tlog-checkpoint). This module parses and
//! re-serialises notes byte-exactly, signs them, cosigns them (appends further signatures over the
//! same text, which is how a witness signature is attached to a checkpoint) and verifies them
//! against a set of trusted [`VerifierKey`]s; it also formats and parses checkpoint bodies.
//! It is pure text and cryptography: it does no networking and does not implement the
//! tlog-witness protocol or the timestamped tlog-cosignature/v1 and ML-DSA signature types
//! (signature lines of those types are kept and re-serialised but never verified).
//!
//! Verification follows the spec: signatures whose (key name, key ID) pair matches no trusted
//! key are ignored; a signature that does match a trusted key must verify (checked with
//! [`VerifyingKey::verify_strict`]) or the whole note is rejected
//! ([`NoteError::InvalidSignature`]); a note with no verified signature is rejected
//! ([`NoteError::NoVerifiedSignature`]). Repeated signatures by one key are each checked, and the
//! key is reported once. Limits: a note is at most [`MAX_NOTE_SIZE`] bytes with at most
//! [`MAX_SIGNATURES`] signature lines. Base64 must be canonical (padded, no stray bits), so that
//! every accepted note re-serialises to the same bytes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// Largest accepted note, in bytes (text plus signature block): 1 MiB.
pub const MAX_NOTE_SIZE: usize = 1 << 20;

/// Largest accepted number of signature lines in one note.
pub const MAX_SIGNATURES: usize = 100;

/// Signature type byte of Ed25519 note signatures (signed-note "Signature types").
pub const ED25519_SIGNATURE_TYPE: u8 = 0x01;

/// Start of every signature line: em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Errors of this module. [`NoteError::is_malformed`] separates format errors from signature
/// failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note does not follow the signed-note format.
    #[error("malformed note: {reason}")]
    MalformedNote {
        /// What is wrong.
        reason: String,
    },
    /// The note exceeds [`MAX_NOTE_SIZE`] bytes or [`MAX_SIGNATURES`] signature lines.
    #[error("note too large: {reason}")]
    TooLarge {
        /// Which limit was exceeded.
        reason: String,
    },
    /// A verifier key (or a key name given to a constructor) is not acceptable.
    #[error("malformed verifier key: {reason}")]
    MalformedKey {
        /// What is wrong.
        reason: String,
    },
    /// A signature whose key name and key ID match a trusted key failed to verify.
    #[error("invalid signature by key {name}")]
    InvalidSignature {
        /// Name of the key whose signature failed.
        name: String,
    },
    /// No signature of the note was made by a trusted key.
    #[error("no signature by a trusted key")]
    NoVerifiedSignature,
    /// The note text is not a well-formed tlog checkpoint.
    #[error("malformed checkpoint: {reason}")]
    MalformedCheckpoint {
        /// What is wrong.
        reason: String,
    },
}

impl NoteError {
    /// True for format errors (malformed note, key or checkpoint, size limits); false for
    /// signature failures ([`NoteError::InvalidSignature`], [`NoteError::NoVerifiedSignature`]).
    pub fn is_malformed(&self) -> bool {
        match self {
            NoteError::MalformedNote { .. }
            | NoteError::TooLarge { .. }
            | NoteError::MalformedKey { .. }
            | NoteError::MalformedCheckpoint { .. } => true,
            NoteError::InvalidSignature { .. } | NoteError::NoVerifiedSignature => false,
        }
    }
}

fn malformed_note(reason: impl Into<String>) -> NoteError {
    NoteError::MalformedNote {
        reason: reason.into(),
    }
}

fn malformed_key(reason: impl Into<String>) -> NoteError {
    NoteError::MalformedKey {
        reason: reason.into(),
    }
}

fn malformed_checkpoint(reason: impl Into<String>) -> NoteError {
    NoteError::MalformedCheckpoint {
        reason: reason.into(),
    }
}

/// A key name is non-empty and has no Unicode whitespace and no '+'.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// Checks a key name given to a constructor.
fn check_name(name: &str) -> Result<(), NoteError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(malformed_key(format!(
            "key name {name:?} must be non-empty without whitespace or '+'"
        )))
    }
}

/// Index of the first ASCII control character other than newline, if any.
fn find_control_char(s: &str) -> Option<usize> {
    s.bytes().position(|b| b < 0x20 && b != b'\n')
}

/// Checks that `text` can be the text of a note: non-empty, ends in a newline, no ASCII control
/// characters other than newline, within the size limit.
fn check_note_text(text: &str) -> Result<(), NoteError> {
    if text.len() > MAX_NOTE_SIZE {
        return Err(NoteError::TooLarge {
            reason: format!("text of {} bytes exceeds {MAX_NOTE_SIZE}", text.len()),
        });
    }
    if !text.ends_with('\n') {
        return Err(malformed_note("text must end with a newline"));
    }
    if let Some(i) = find_control_char(text) {
        return Err(malformed_note(format!("control character at byte {i}")));
    }
    Ok(())
}

fn hex4(bytes: &[u8; 4]) -> String {
    hex::encode(bytes)
}

/// Parses exactly 8 lower-case hex digits.
fn parse_hex4(s: &str) -> Option<[u8; 4]> {
    let b = s.as_bytes();
    if b.len() != 8 || !b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let nibble = |c: u8| {
        if c.is_ascii_digit() {
            c - b'0'
        } else {
            c - b'a' + 10
        }
    };
    let mut out = [0u8; 4];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
    }
    Some(out)
}

/// Key ID of an Ed25519 key of signature type `typ`: SHA-256(name ‖ 0x0A ‖ typ ‖ key)[:4].
fn typed_key_id(name: &str, typ: u8, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', typ]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// Parses `<name>+<key ID>+<base64(typ ‖ key)>` for signature type `typ` (`wrong_type` words
/// the error for another type byte). Rejects a bad name, a key ID that is not 8 lower-case hex
/// digits or does not match, non-canonical base64, a length other than 33 bytes, and public
/// keys that are not valid or are of small order.
fn parse_typed_vkey(
    s: &str,
    typ: u8,
    wrong_type: impl FnOnce(u8) -> String,
) -> Result<(String, [u8; 4], VerifyingKey), NoteError> {
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed_key("expected <name>+<key ID>+<key>"));
    };
    check_name(name)?;
    let key_id = parse_hex4(id_hex)
        .ok_or_else(|| malformed_key("key ID must be 8 lower-case hex digits"))?;
    let raw = STANDARD
        .decode(b64)
        .map_err(|_| malformed_key("key is not canonical base64"))?;
    let (&alg, key_bytes) = raw
        .split_first()
        .ok_or_else(|| malformed_key("empty key"))?;
    if alg != typ {
        return Err(malformed_key(wrong_type(alg)));
    }
    let key_bytes: &[u8; 32] = key_bytes
        .try_into()
        .map_err(|_| malformed_key("Ed25519 public key must be 32 bytes"))?;
    let key = VerifyingKey::from_bytes(key_bytes)
        .map_err(|_| malformed_key("not a valid Ed25519 public key"))?;
    if key.is_weak() {
        return Err(malformed_key("Ed25519 public key of small order"));
    }
    if typed_key_id(name, typ, &key) != key_id {
        return Err(malformed_key("key ID does not match name and key"));
    }
    Ok((name.to_owned(), key_id, key))
}

/// Writes the vkey form of a key of signature type `typ`.
fn fmt_typed_vkey(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    key_id: &[u8; 4],
    typ: u8,
    key: &VerifyingKey,
) -> fmt::Result {
    let mut raw = Vec::with_capacity(33);
    raw.push(typ);
    raw.extend_from_slice(key.as_bytes());
    write!(f, "{name}+{}+{}", hex4(key_id), STANDARD.encode(raw))
}

/// A trusted Ed25519 verifier key ("vkey"): `<name>+<key ID hex>+<base64(0x01 ‖ public key)>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VerifierKey {
    /// Key name, as used in signature lines.
    pub name: String,
    /// Key ID: [`VerifierKey::key_id`] of the name and key.
    pub key_id: [u8; 4],
    /// The Ed25519 public key.
    pub key: VerifyingKey,
}

impl VerifierKey {
    /// Builds the verifier key for `name` and `key`, computing the key ID. Fails if the name is
    /// empty or contains whitespace or '+'.
    pub fn new(name: impl Into<String>, key: VerifyingKey) -> Result<Self, NoteError> {
        let name = name.into();
        check_name(&name)?;
        let key_id = Self::key_id(&name, &key);
        Ok(VerifierKey { name, key_id, key })
    }

    /// The Ed25519 key ID: first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key).
    pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
        typed_key_id(name, ED25519_SIGNATURE_TYPE, key)
    }

    /// Parses a vkey string. Rejects a bad name, a key ID that is not 8 lower-case hex digits or
    /// does not match the key, non-canonical base64, a type byte other than 0x01, a length other
    /// than 33 bytes, and public keys that are not valid or are of small order.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let (name, key_id, key) = parse_typed_vkey(s, ED25519_SIGNATURE_TYPE, |alg| {
            format!("unsupported signature type 0x{alg:02x}")
        })?;
        Ok(VerifierKey { name, key_id, key })
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_typed_vkey(
            f,
            &self.name,
            &self.key_id,
            ED25519_SIGNATURE_TYPE,
            &self.key,
        )
    }
}

/// An Ed25519 note signer: a key name and a signing key. `Debug` does not print the secret.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key_id: [u8; 4],
    signing_key: SigningKey,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &hex4(&self.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// Builds a signer for `name`. Fails if the name is empty or contains whitespace or '+'.
    pub fn new(name: impl Into<String>, signing_key: SigningKey) -> Result<Self, NoteError> {
        let name = name.into();
        check_name(&name)?;
        let key_id = VerifierKey::key_id(&name, &signing_key.verifying_key());
        Ok(NoteSigner {
            name,
            key_id,
            signing_key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The verifier key matching this signer.
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.signing_key.verifying_key(),
        }
    }

    /// Signs `text` (a note text: ends in a newline, no other control characters) and returns
    /// one signature line `— <name> <base64(key ID ‖ signature)>\n`.
    pub fn sign_line(&self, text: &str) -> Result<String, NoteError> {
        check_note_text(text)?;
        Ok(self.signature(text).to_string())
    }

    /// Signs `text`, which the caller has checked.
    fn signature(&self, text: &str) -> NoteSignature {
        NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature: self.signing_key.sign(text.as_bytes()).to_bytes(),
            foreign_payload: None,
        }
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key ID (first 4 bytes of the decoded signature).
    pub key_id: [u8; 4],
    /// The Ed25519 signature; all zeroes when `foreign_payload` is set.
    pub signature: [u8; 64],
    /// `None` for Ed25519-sized lines (64 bytes after the key ID, stored in `signature`).
    /// `Some(bytes)` holds the bytes after the key ID of a line of another length, e.g. a
    /// witness's timestamped tlog-cosignature or an ML-DSA signature: the spec requires such
    /// signatures from unknown keys to be ignored, so they are kept (and re-serialised) but can
    /// never verify as Ed25519.
    pub foreign_payload: Option<Vec<u8>>,
}

impl NoteSignature {
    /// Parses one signature line without its final newline.
    fn parse_line(line: &str) -> Result<Self, NoteError> {
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| malformed_note("signature line must start with \"\u{2014} \""))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| malformed_note("signature line needs a key name and a signature"))?;
        if !is_valid_name(name) {
            return Err(malformed_note(format!(
                "invalid key name {name:?} in signature line"
            )));
        }
        let raw = STANDARD
            .decode(b64)
            .map_err(|_| malformed_note("signature is not canonical base64"))?;
        if raw.len() < 5 {
            return Err(malformed_note("signature shorter than 5 bytes"));
        }
        let key_id = [raw[0], raw[1], raw[2], raw[3]];
        let (signature, foreign_payload) = match <[u8; 64]>::try_from(&raw[4..]) {
            Ok(sig) => (sig, None),
            Err(_) => ([0u8; 64], Some(raw[4..].to_vec())),
        };
        Ok(NoteSignature {
            name: name.to_owned(),
            key_id,
            signature,
            foreign_payload,
        })
    }

    /// The decoded signature bytes after the key ID.
    fn payload(&self) -> &[u8] {
        match &self.foreign_payload {
            Some(p) => p,
            None => &self.signature,
        }
    }
}

impl fmt::Display for NoteSignature {
    /// The signature line, including its final newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let payload = self.payload();
        let mut raw = Vec::with_capacity(4 + payload.len());
        raw.extend_from_slice(&self.key_id);
        raw.extend_from_slice(payload);
        writeln!(f, "{SIG_PREFIX}{} {}", self.name, STANDARD.encode(raw))
    }
}

/// A signed note: text (ending in a newline) and its signature lines, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, including its final newline but not the blank separator line.
    pub text: String,
    /// The signature lines, in note order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a note as bytes: the bytes must be valid UTF-8, then as [`Note::parse`].
    pub fn parse_bytes(bytes: &[u8]) -> Result<Note, NoteError> {
        if bytes.len() > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                reason: format!("note of {} bytes exceeds {MAX_NOTE_SIZE}", bytes.len()),
            });
        }
        let s = std::str::from_utf8(bytes).map_err(|_| malformed_note("not valid UTF-8"))?;
        Note::parse(s)
    }

    /// Parses a note: text ending in a newline, a blank line, then one or more signature lines
    /// each ending in a newline. The text is everything up to the last blank line. Enforces the
    /// size limits and rejects ASCII control characters other than newline, bad key names and
    /// non-canonical or too short signatures. Does not verify anything.
    pub fn parse(s: &str) -> Result<Note, NoteError> {
        if s.len() > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                reason: format!("note of {} bytes exceeds {MAX_NOTE_SIZE}", s.len()),
            });
        }
        if let Some(i) = find_control_char(s) {
            return Err(malformed_note(format!("control character at byte {i}")));
        }
        let split = s
            .rfind("\n\n")
            .ok_or_else(|| malformed_note("no blank line before the signatures"))?;
        let (text, sigs) = (&s[..=split], &s[split + 2..]);
        let sig_lines = sigs
            .strip_suffix('\n')
            .ok_or_else(|| malformed_note("no signature line ending in a newline"))?;
        let count = sig_lines.split('\n').count();
        if count > MAX_SIGNATURES {
            return Err(NoteError::TooLarge {
                reason: format!("{count} signature lines exceed {MAX_SIGNATURES}"),
            });
        }
        let signatures = sig_lines
            .split('\n')
            .map(NoteSignature::parse_line)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// Signs `text` with every signer, in order, and returns the whole note. Needs at least one
    /// and at most [`MAX_SIGNATURES`] signers; `text` must end in a newline and contain no other
    /// ASCII control characters.
    pub fn sign(text: &str, signers: &[&NoteSigner]) -> Result<String, NoteError> {
        check_note_text(text)?;
        if signers.is_empty() {
            return Err(malformed_note("a note needs at least one signature"));
        }
        let mut note = Note {
            text: text.to_owned(),
            signatures: Vec::with_capacity(signers.len()),
        };
        for signer in signers {
            note.add_signature(signer)?;
        }
        Ok(note.to_string())
    }

    /// Cosigns: appends `signer`'s signature over the same text. Adding a signature identical to
    /// one already present does nothing (Ed25519 signatures are deterministic). Fails if the text
    /// is not a valid note text or the note would exceed the size limits.
    pub fn add_signature(&mut self, signer: &NoteSigner) -> Result<(), NoteError> {
        check_note_text(&self.text)?;
        let sig = signer.signature(&self.text);
        if self.signatures.contains(&sig) {
            return Ok(());
        }
        if self.signatures.len() >= MAX_SIGNATURES {
            return Err(NoteError::TooLarge {
                reason: format!("a note holds at most {MAX_SIGNATURES} signatures"),
            });
        }
        let size = self.encoded_len() + sig.to_string().len();
        if size > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                reason: format!("signed note of {size} bytes would exceed {MAX_NOTE_SIZE}"),
            });
        }
        self.signatures.push(sig);
        Ok(())
    }

    /// Length in bytes of [`Note::to_string`].
    fn encoded_len(&self) -> usize {
        self.text.len()
            + 1
            + self
                .signatures
                .iter()
                .map(|s| s.to_string().len())
                .sum::<usize>()
    }

    /// Verifies the note against the trusted `keys` and returns the keys that signed it, in
    /// signature-line order, each once. Signatures whose (name, key ID) match no key are
    /// ignored; one that matches a key but does not verify (strict Ed25519) is
    /// [`NoteError::InvalidSignature`]; if no signature matched a key,
    /// [`NoteError::NoVerifiedSignature`]. Every repeated signature by a key is checked too.
    pub fn verify(&self, keys: &[VerifierKey]) -> Result<Vec<VerifierKey>, NoteError> {
        let mut verified: Vec<VerifierKey> = Vec::new();
        for sig in &self.signatures {
            let mut candidates = keys
                .iter()
                .filter(|k| k.name == sig.name && k.key_id == sig.key_id)
                .peekable();
            if candidates.peek().is_none() {
                continue;
            }
            let ok = if sig.foreign_payload.is_some() {
                None
            } else {
                let s = Signature::from_bytes(&sig.signature);
                candidates.find(|k| k.key.verify_strict(self.text.as_bytes(), &s).is_ok())
            };
            let key = ok.ok_or_else(|| NoteError::InvalidSignature {
                name: sig.name.clone(),
            })?;
            if !verified.contains(key) {
                verified.push(key.clone());
            }
        }
        if verified.is_empty() {
            return Err(NoteError::NoVerifiedSignature);
        }
        Ok(verified)
    }
}

impl fmt::Display for Note {
    /// The note bytes: text, blank line, signature lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        f.write_str("\n")?;
        for sig in &self.signatures {
            write!(f, "{sig}")?;
        }
        Ok(())
    }
}

/// The body of a tlog checkpoint: origin, tree size, root hash and optional extension lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    /// Log identity (first line); non-empty.
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// RFC 6962 Merkle root hash at `size`.
    pub root: [u8; 32],
    /// Opaque extension lines (without newlines); each non-empty.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The checkpoint text: origin, decimal size, base64 root, then the extension lines, each
    /// followed by a newline. [`sign_checkpoint`] checks that the result parses back to `self`.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for ext in &self.extensions {
            s.push_str(ext);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint text (a note's text). Rules: ends in a newline; at least three lines;
    /// no empty line; no ASCII control characters; no line ends in whitespace; the size is
    /// decimal digits without leading zeroes (except `0`) fitting in a u64; the root is the
    /// canonical base64 of exactly 32 bytes.
    pub fn parse_text(text: &str) -> Result<Checkpoint, NoteError> {
        if text.len() > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                reason: format!("checkpoint of {} bytes exceeds {MAX_NOTE_SIZE}", text.len()),
            });
        }
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| malformed_checkpoint("text must end with a newline"))?;
        if let Some(i) = find_control_char(body) {
            return Err(malformed_checkpoint(format!(
                "control character at byte {i}"
            )));
        }
        let lines: Vec<&str> = body.split('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            if line.is_empty() {
                return Err(malformed_checkpoint(format!("line {} is empty", i + 1)));
            }
            if line.ends_with(char::is_whitespace) {
                return Err(malformed_checkpoint(format!(
                    "line {} ends with whitespace",
                    i + 1
                )));
            }
        }
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(malformed_checkpoint(
                "needs origin, size and root hash lines",
            ));
        };
        let size_ok =
            size.bytes().all(|b| b.is_ascii_digit()) && (*size == "0" || !size.starts_with('0'));
        if !size_ok {
            return Err(malformed_checkpoint(
                "tree size must be decimal without leading zeroes",
            ));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| malformed_checkpoint("tree size does not fit in 64 bits"))?;
        let root: [u8; 32] = STANDARD
            .decode(root)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| malformed_checkpoint("root hash must be base64 of 32 bytes"))?;
        Ok(Checkpoint {
            origin: (*origin).to_owned(),
            size,
            root,
            extensions: extensions.iter().map(|e| (*e).to_owned()).collect(),
        })
    }
}

/// Signs a checkpoint with every signer, in order, and returns the whole signed note. Fails with
/// [`NoteError::MalformedCheckpoint`] if `cp` would not parse back to itself (empty origin,
/// newline or control character in a line, empty extension, trailing whitespace).
pub fn sign_checkpoint(cp: &Checkpoint, signers: &[&NoteSigner]) -> Result<String, NoteError> {
    let text = cp.to_text();
    if Checkpoint::parse_text(&text)? != *cp {
        return Err(malformed_checkpoint(
            "checkpoint does not re-parse to itself",
        ));
    }
    Note::sign(&text, signers)
}

/// Parses a signed checkpoint, verifies it against `keys` (see [`Note::verify`]) and parses its
/// text. Returns the checkpoint and the keys that signed it. Whether the origin matches a key
/// name is left to the caller.
pub fn open_checkpoint(
    note_text: &str,
    keys: &[VerifierKey],
) -> Result<(Checkpoint, Vec<VerifierKey>), NoteError> {
    let note = Note::parse(note_text)?;
    let verified = note.verify(keys)?;
    let cp = Checkpoint::parse_text(&note.text)?;
    Ok((cp, verified))
}

/// Signature type byte of Ed25519 timestamped cosignatures
/// ([tlog-cosignature](https://c2sp.org/tlog-cosignature), `cosignature/v1`), used by witnesses.
pub const COSIGNATURE_V1_TYPE: u8 = 0x04;

/// The message an Ed25519 `cosignature/v1` signs: `"cosignature/v1\ntime <timestamp>\n"` followed
/// by the whole checkpoint text (note text).
pub fn cosignature_v1_message(text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{text}")
}

/// A trusted witness (cosigner) key: name and Ed25519 key with the `cosignature/v1` key ID
/// (SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4]); vkey form `<name>+<key ID>+<base64(0x04 ‖ key)>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CosignerKey {
    /// Cosigner name (key name of its signature lines).
    pub name: String,
    /// Key ID.
    pub key_id: [u8; 4],
    /// Ed25519 public key.
    pub key: VerifyingKey,
}

impl CosignerKey {
    /// The cosigner key for `name` and `key`. Fails on an invalid name.
    pub fn new(name: impl Into<String>, key: VerifyingKey) -> Result<Self, NoteError> {
        let name = name.into();
        check_name(&name)?;
        let key_id = Self::key_id(&name, &key);
        Ok(CosignerKey { name, key_id, key })
    }

    /// SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4].
    pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
        typed_key_id(name, COSIGNATURE_V1_TYPE, key)
    }

    /// Parses a vkey of type 0x04 (same rules as [`VerifierKey::parse`] otherwise).
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let (name, key_id, key) = parse_typed_vkey(s, COSIGNATURE_V1_TYPE, |alg| {
            format!("cosigner key type must be 0x04, got 0x{alg:02x}")
        })?;
        Ok(CosignerKey { name, key_id, key })
    }
}

impl fmt::Display for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_typed_vkey(f, &self.name, &self.key_id, COSIGNATURE_V1_TYPE, &self.key)
    }
}

/// An Ed25519 `cosignature/v1` signer (a witness key). `Debug` does not print the secret.
#[derive(Clone)]
pub struct Cosigner {
    key: CosignerKey,
    signing_key: SigningKey,
}

impl fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cosigner")
            .field("name", &self.key.name)
            .finish_non_exhaustive()
    }
}

impl Cosigner {
    /// A cosigner named `name`.
    pub fn new(name: impl Into<String>, signing_key: SigningKey) -> Result<Self, NoteError> {
        let key = CosignerKey::new(name, signing_key.verifying_key())?;
        Ok(Cosigner { key, signing_key })
    }

    /// Its public key.
    pub fn key(&self) -> &CosignerKey {
        &self.key
    }

    /// The timestamped cosignature of note text `text` at `timestamp` (POSIX seconds, < 2^63):
    /// a signature line whose payload is `BE64(timestamp) ‖ Ed25519 signature`.
    pub fn cosign(&self, text: &str, timestamp: u64) -> Result<NoteSignature, NoteError> {
        check_note_text(text)?;
        if timestamp > i64::MAX as u64 {
            return Err(malformed_note("cosignature timestamp exceeds 2^63 - 1"));
        }
        let msg = cosignature_v1_message(text, timestamp);
        let mut payload = Vec::with_capacity(72);
        payload.extend_from_slice(&timestamp.to_be_bytes());
        payload.extend_from_slice(&self.signing_key.sign(msg.as_bytes()).to_bytes());
        Ok(NoteSignature {
            name: self.key.name.clone(),
            key_id: self.key.key_id,
            signature: [0u8; 64],
            foreign_payload: Some(payload),
        })
    }
}

impl Note {
    /// Verifies the `cosignature/v1` signatures of trusted cosigners and returns each cosigner
    /// that signed, once, with the timestamp of its first valid cosignature. Lines matching no
    /// key are ignored; a line that matches a key (name and key ID) but is not 72 bytes or does
    /// not verify (strict Ed25519) is [`NoteError::InvalidSignature`]. Unlike [`Note::verify`]
    /// an empty result is not an error.
    pub fn verify_cosignatures(
        &self,
        keys: &[CosignerKey],
    ) -> Result<Vec<(CosignerKey, u64)>, NoteError> {
        let mut out: Vec<(CosignerKey, u64)> = Vec::new();
        for sig in &self.signatures {
            let Some(key) = keys
                .iter()
                .find(|k| k.name == sig.name && k.key_id == sig.key_id)
            else {
                continue;
            };
            let bad = || NoteError::InvalidSignature {
                name: sig.name.clone(),
            };
            let payload = sig.foreign_payload.as_deref().ok_or_else(bad)?;
            let (ts, raw) = payload.split_at_checked(8).ok_or_else(bad)?;
            let ts: [u8; 8] = ts.try_into().map_err(|_| bad())?;
            let raw: [u8; 64] = raw.try_into().map_err(|_| bad())?;
            let ts = u64::from_be_bytes(ts);
            if ts > i64::MAX as u64 {
                return Err(bad());
            }
            let msg = cosignature_v1_message(&self.text, ts);
            key.key
                .verify_strict(msg.as_bytes(), &Signature::from_bytes(&raw))
                .map_err(|_| bad())?;
            if !out.iter().any(|(k, _)| k == key) {
                out.push((key.clone(), ts));
            }
        }
        Ok(out)
    }

    /// Adds signature lines not already present (by exact line), keeping the size limits.
    pub fn merge_signatures(
        &mut self,
        sigs: impl IntoIterator<Item = NoteSignature>,
    ) -> Result<(), NoteError> {
        for sig in sigs {
            if self.signatures.contains(&sig) {
                continue;
            }
            if self.signatures.len() >= MAX_SIGNATURES
                || self.encoded_len() + sig.to_string().len() > MAX_NOTE_SIZE
            {
                return Err(NoteError::TooLarge {
                    reason: format!("a note holds at most {MAX_SIGNATURES} signatures"),
                });
            }
            self.signatures.push(sig);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;
    use std::path::PathBuf;

    fn vectors() -> Value {
        let dir = match std::env::var_os("XINYI_VECTORS") {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors")),
        };
        let path = dir.join("signed-note").join("vectors.json");
        let data = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("signed-note vectors missing at {}: {e}", path.display()));
        serde_json::from_str(&data)
            .unwrap_or_else(|e| panic!("bad JSON in {}: {e}", path.display()))
    }

    fn strs(v: &Value) -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|s| s.as_str().expect("string").to_owned())
            .collect()
    }

    fn signer(name: &str, seed: u8) -> NoteSigner {
        NoteSigner::new(name, SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    fn names(keys: &[VerifierKey]) -> Vec<&str> {
        keys.iter().map(|k| k.name.as_str()).collect()
    }

    fn sample_checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "xinyi.example/log/1".into(),
            size: 1234,
            root: [7u8; 32],
            extensions: vec!["ext one".into()],
        }
    }

    #[test]
    fn vector_notes() {
        let v = vectors();
        let cases = v["notes"].as_array().expect("notes");
        assert!(!cases.is_empty());
        let (mut positive, mut malformed, mut invalid) = (0, 0, 0);
        for c in cases {
            let name = c["name"].as_str().expect("name");
            let note_text = c["note"].as_str().expect("note");
            let keys: Vec<VerifierKey> = strs(&c["vkeys"])
                .iter()
                .map(|k| VerifierKey::parse(k).unwrap_or_else(|e| panic!("{name}: {k}: {e}")))
                .collect();
            let parsed = Note::parse(note_text);
            if let Ok(n) = &parsed {
                assert_eq!(n.to_string(), note_text, "{name}: round trip");
                assert_eq!(
                    Note::parse_bytes(note_text.as_bytes()).as_ref(),
                    Ok(n),
                    "{name}: parse_bytes"
                );
            }
            let result = parsed.and_then(|n| n.verify(&keys));
            if let Some(want) = c.get("want_verified") {
                let want = strs(want);
                if want.is_empty() {
                    // The spec: a note with no verified signature MUST be rejected.
                    assert_eq!(result, Err(NoteError::NoVerifiedSignature), "{name}");
                } else {
                    let got = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(names(&got), want, "{name}");
                }
                positive += 1;
            } else {
                let want = c["want_error"].as_str().expect("want_error");
                let err = result.expect_err(name);
                match want {
                    "malformed" => {
                        assert!(err.is_malformed(), "{name}: {err:?}");
                        malformed += 1;
                    }
                    "invalid signature" => {
                        assert!(
                            matches!(err, NoteError::InvalidSignature { .. }),
                            "{name}: {err:?}"
                        );
                        invalid += 1;
                    }
                    other => panic!("{name}: unknown want_error {other}"),
                }
            }
        }
        assert!(positive > 0 && malformed > 0 && invalid > 0);
    }

    #[test]
    fn vector_verifier_keys() {
        let v = vectors();
        let cases = v["verifier_keys"].as_array().expect("verifier_keys");
        assert!(!cases.is_empty());
        for c in cases {
            let s = c["vkey"].as_str().expect("vkey");
            let valid = c["valid"].as_bool().expect("valid");
            match VerifierKey::parse(s) {
                Ok(k) => {
                    assert!(valid, "accepted invalid key {s} ({})", c["why"]);
                    assert_eq!(k.to_string(), s);
                    assert_eq!(k.key_id, VerifierKey::key_id(&k.name, &k.key));
                    assert_eq!(VerifierKey::new(k.name.clone(), k.key).as_ref(), Ok(&k));
                }
                Err(e) => {
                    assert!(!valid, "refused valid key {s}: {e}");
                    assert!(e.is_malformed());
                }
            }
        }
    }

    #[test]
    fn vector_checkpoint_format() {
        let v = vectors();
        let c = &v["checkpoint_format"];
        let note_text = c["note"].as_str().expect("note");
        let note = Note::parse(note_text).unwrap();
        assert_eq!(note.to_string(), note_text);
        let cp = Checkpoint::parse_text(&note.text).unwrap();
        assert_eq!(cp.origin, c["origin"].as_str().expect("origin"));
        assert_eq!(cp.size, c["size"].as_u64().expect("size"));
        assert_eq!(
            STANDARD.encode(cp.root),
            c["root_b64"].as_str().expect("root")
        );
        assert!(cp.extensions.is_empty());
        assert_eq!(cp.to_text(), note.text);
        // Its signer's key is unpublished: no trusted key signed it.
        assert_eq!(
            open_checkpoint(note_text, &[signer(&cp.origin, 1).verifier_key()]),
            Err(NoteError::NoVerifiedSignature)
        );
    }

    /// The golang/mod test signing key for `PeterNeumann` reproduces the vector's signature line.
    #[test]
    fn golang_test_key_reproduces_vector_signature() {
        let v = vectors();
        let case = v["notes"]
            .as_array()
            .expect("notes")
            .iter()
            .find(|c| c["name"] == "two-signers-one-known")
            .expect("case two-signers-one-known");
        let note = Note::parse(case["note"].as_str().expect("note")).unwrap();
        // From golang/mod sumdb/note/note_test.go: PRIVATE+KEY+PeterNeumann+c74f20a3+<this>.
        let raw = STANDARD
            .decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
            .unwrap();
        assert_eq!(raw[0], ED25519_SIGNATURE_TYPE);
        let seed: [u8; 32] = raw[1..].try_into().unwrap();
        let s = NoteSigner::new("PeterNeumann", SigningKey::from_bytes(&seed)).unwrap();
        assert_eq!(s.verifier_key().to_string(), strs(&case["vkeys"])[0]);
        assert_eq!(
            s.sign_line(&note.text).unwrap(),
            note.signatures[0].to_string()
        );
    }

    #[test]
    fn sign_line_format() {
        let s = signer("example.com/a", 3);
        let line = s.sign_line("hello\n").unwrap();
        let rest = line.strip_prefix("\u{2014} example.com/a ").unwrap();
        let b64 = rest.strip_suffix('\n').unwrap();
        let raw = STANDARD.decode(b64).unwrap();
        assert_eq!(raw.len(), 68);
        assert_eq!(raw[..4], s.key_id());
        let sig = Signature::from_bytes(&raw[4..].try_into().unwrap());
        s.verifier_key()
            .key
            .verify_strict(b"hello\n", &sig)
            .unwrap();
        assert!(s.sign_line("no newline").unwrap_err().is_malformed());
        assert!(s.sign_line("tab\there\n").unwrap_err().is_malformed());
        assert!(s.sign_line("").unwrap_err().is_malformed());
        assert!(NoteSigner::new("bad name", SigningKey::from_bytes(&[1; 32])).is_err());
        assert!(NoteSigner::new("", SigningKey::from_bytes(&[1; 32])).is_err());
        assert!(!format!("{s:?}").contains("signing_key"));
    }

    #[test]
    fn checkpoint_three_signers() {
        let (a, b, c) = (
            signer("a.example", 1),
            signer("b.example", 2),
            signer("c.example", 3),
        );
        let (ka, kb, kc) = (a.verifier_key(), b.verifier_key(), c.verifier_key());
        let cp = sample_checkpoint();
        let signed = sign_checkpoint(&cp, &[&a, &b, &c]).unwrap();
        assert!(signed.starts_with(&cp.to_text()));

        let (got, by) = open_checkpoint(&signed, &[ka.clone(), kb.clone(), kc.clone()]).unwrap();
        assert_eq!(got, cp);
        assert_eq!(by, vec![ka.clone(), kb.clone(), kc.clone()]);
        // Subsets; the result follows signature-line order, not key order.
        assert_eq!(
            open_checkpoint(&signed, std::slice::from_ref(&kc))
                .unwrap()
                .1,
            vec![kc.clone()]
        );
        assert_eq!(
            open_checkpoint(&signed, &[kc.clone(), ka.clone()])
                .unwrap()
                .1,
            vec![ka.clone(), kc.clone()]
        );

        // Flip one bit of b's signature.
        let mut note = Note::parse(&signed).unwrap();
        note.signatures[1].signature[10] ^= 0x04;
        let tampered = note.to_string();
        assert_eq!(
            open_checkpoint(&tampered, &[ka.clone(), kb.clone()]),
            Err(NoteError::InvalidSignature {
                name: "b.example".into()
            })
        );
        // b is not trusted: its line is ignored.
        assert_eq!(
            open_checkpoint(&tampered, std::slice::from_ref(&ka))
                .unwrap()
                .1,
            vec![ka.clone()]
        );

        // Change the size in the text.
        let changed = signed.replacen("\n1234\n", "\n1235\n", 1);
        assert_ne!(changed, signed);
        assert_eq!(
            open_checkpoint(&changed, std::slice::from_ref(&kb)),
            Err(NoteError::InvalidSignature {
                name: "b.example".into()
            })
        );

        // Only unknown keys: a different key, and a known name with another key (ID differs).
        let other = signer("d.example", 4).verifier_key();
        let same_name = signer("a.example", 9).verifier_key();
        assert_ne!(same_name.key_id, ka.key_id);
        assert_eq!(
            open_checkpoint(&signed, &[other, same_name]),
            Err(NoteError::NoVerifiedSignature)
        );
        assert_eq!(
            open_checkpoint(&signed, &[]),
            Err(NoteError::NoVerifiedSignature)
        );

        // Same name and ID but a different public key: the signature is checked and fails.
        let impostor = VerifierKey {
            key: signer("x", 5).verifier_key().key,
            ..ka.clone()
        };
        assert_eq!(
            open_checkpoint(&signed, &[impostor]),
            Err(NoteError::InvalidSignature {
                name: "a.example".into()
            })
        );
    }

    #[test]
    fn cosign_with_add_signature() {
        let (a, b) = (signer("log.example", 1), signer("witness.example/w1", 2));
        let text = sample_checkpoint().to_text();
        let mut note = Note::parse(&Note::sign(&text, &[&a]).unwrap()).unwrap();
        note.add_signature(&b).unwrap();
        assert_eq!(note.to_string(), Note::sign(&text, &[&a, &b]).unwrap());
        note.add_signature(&b).unwrap();
        assert_eq!(
            note.signatures.len(),
            2,
            "re-adding the same signature is a no-op"
        );
        let by = note.verify(&[b.verifier_key(), a.verifier_key()]).unwrap();
        assert_eq!(names(&by), ["log.example", "witness.example/w1"]);
        assert!(Note::sign(&text, &[]).unwrap_err().is_malformed());
        let mut bad = Note {
            text: "no newline".into(),
            signatures: vec![],
        };
        assert!(bad.add_signature(&a).unwrap_err().is_malformed());
    }

    #[test]
    fn duplicate_signatures() {
        let a = signer("a.example", 1);
        let ka = a.verifier_key();
        let signed = Note::sign("text\n", &[&a]).unwrap();
        let line = a.sign_line("text\n").unwrap();
        let twice = format!("{signed}{line}");
        assert_eq!(
            Note::parse(&twice)
                .unwrap()
                .verify(std::slice::from_ref(&ka))
                .unwrap(),
            vec![ka.clone()]
        );
        // A corrupted repeat by a known key is still checked.
        let mut note = Note::parse(&twice).unwrap();
        note.signatures[1].signature[0] ^= 1;
        assert_eq!(
            note.verify(std::slice::from_ref(&ka)),
            Err(NoteError::InvalidSignature {
                name: "a.example".into()
            })
        );
        // Duplicate trusted keys in the list do not duplicate the result.
        let n = Note::parse(&signed).unwrap();
        assert_eq!(n.verify(&[ka.clone(), ka.clone()]).unwrap(), vec![ka]);
    }

    #[test]
    fn foreign_signature_types_are_kept_and_ignored() {
        // The witness line of the C2SP tlog-cosignature example (timestamp ‖ signature).
        let witness = "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
        let a = signer("example.com/behind-the-sofa", 1);
        let cp = sample_checkpoint();
        let signed = format!("{}{witness}", sign_checkpoint(&cp, &[&a]).unwrap());
        let note = Note::parse(&signed).unwrap();
        assert_eq!(note.to_string(), signed);
        assert_eq!(
            note.signatures[1].foreign_payload.as_ref().map(Vec::len),
            Some(72)
        );
        assert_eq!(open_checkpoint(&signed, &[a.verifier_key()]).unwrap().0, cp);
        // A known key whose line has a non-Ed25519 length fails verification.
        let mut n = Note::parse(&signed).unwrap();
        n.signatures[1].name = a.name().into();
        n.signatures[1].key_id = a.key_id();
        assert_eq!(
            n.verify(&[a.verifier_key()]),
            Err(NoteError::InvalidSignature {
                name: a.name().into()
            })
        );
    }

    #[test]
    fn note_parse_rules() {
        let a = signer("a.example", 1);
        let ka = a.verifier_key();
        // Text with blank lines, and the minimal text "\n".
        for text in ["one\n\ntwo\n\n", "\n", "caf\u{e9} \u{2014} ok\n"] {
            let signed = Note::sign(text, &[&a]).unwrap();
            let n = Note::parse(&signed).unwrap();
            assert_eq!(n.text, text);
            assert_eq!(n.to_string(), signed);
            assert_eq!(
                n.verify(std::slice::from_ref(&ka)).unwrap(),
                vec![ka.clone()]
            );
        }
        let good = Note::sign("text\n", &[&a]).unwrap();
        let sig_b64 = good.rsplit(' ').next().unwrap().trim_end().to_owned();
        let bad = [
            "text\n\u{2014} a.example AAAA\n".to_owned(), // no blank line
            format!("text\n\n\u{2014} a.example {sig_b64}"), // no final newline
            format!("text\n\n\u{2014} a.example {sig_b64}\n\n"), // empty signature block
            format!("text\n\n- a.example {sig_b64}\n"),   // wrong dash
            format!("text\n\n\u{2014}a.example {sig_b64}\n"), // no space after dash
            format!("text\n\n\u{2014} a.example  {sig_b64}\n"), // two spaces
            format!("text\n\n\u{2014} a+b {sig_b64}\n"),  // '+' in name
            format!("text\n\n\u{2014} a\u{a0}b {sig_b64}\n"), // Unicode space in name
            format!("text\n\n\u{2014}  {sig_b64}\n"),     // empty name
            format!("text\n\n\u{2014} a.example {sig_b64} \n"), // trailing space
            "text\n\n\u{2014} a.example AAAAAA==\n".to_owned(), // 4-byte signature
            "text\n\n\u{2014} a.example AAAAAAB=\n".to_owned(), // non-canonical base64
            "text\n\n\u{2014} a.example AAAAAAA\n".to_owned(), // missing padding
            "text\n\n\u{2014} a.example\n".to_owned(),    // no signature
            format!("te\rxt\n\n\u{2014} a.example {sig_b64}\n"), // control char
            format!("text\n\n\u{2014} a.example {sig_b64}\r\n"), // CRLF
        ];
        for b in &bad {
            let e = Note::parse(b).expect_err(b);
            assert!(matches!(e, NoteError::MalformedNote { .. }), "{b:?}: {e:?}");
        }
        // Limits: 100 signature lines are fine, 101 are not; more than 1 MiB is not.
        let line = a.sign_line("text\n").unwrap();
        let hundred = format!("text\n\n{}", line.repeat(MAX_SIGNATURES));
        assert_eq!(
            Note::parse(&hundred).unwrap().signatures.len(),
            MAX_SIGNATURES
        );
        let e = Note::parse(&format!("{hundred}{line}")).unwrap_err();
        assert!(matches!(e, NoteError::TooLarge { .. }) && e.is_malformed());
        let huge = format!("{}\n\n{line}", "x".repeat(MAX_NOTE_SIZE));
        assert!(matches!(
            Note::parse(&huge),
            Err(NoteError::TooLarge { .. })
        ));
        assert!(matches!(
            Note::parse_bytes(huge.as_bytes()),
            Err(NoteError::TooLarge { .. })
        ));
        let just_fits = format!("{}\n\n{line}", "x".repeat(MAX_NOTE_SIZE - 2 - line.len()));
        assert_eq!(just_fits.len(), MAX_NOTE_SIZE);
        assert!(Note::parse(&just_fits).is_ok());
        // Signing cannot produce an unparseable note.
        let big_text = format!("{}\n", "x".repeat(MAX_NOTE_SIZE - 1));
        assert!(matches!(
            Note::sign(&big_text, &[&a]),
            Err(NoteError::TooLarge { .. })
        ));
        let mut bytes = good.clone().into_bytes();
        bytes[1] = 0xff;
        assert!(Note::parse_bytes(&bytes).unwrap_err().is_malformed());
        assert!(Note::parse_bytes(good.as_bytes()).is_ok());
    }

    #[test]
    fn verifier_key_rules() {
        let k = signer("a.example", 1).verifier_key();
        let s = k.to_string();
        assert_eq!(VerifierKey::parse(&s).unwrap(), k);
        let (name, rest) = s.split_once('+').unwrap();
        let (id, b64) = rest.split_once('+').unwrap();
        let mut noncanon = b64.to_owned();
        noncanon.push('=');
        let small_order = {
            let mut raw = vec![ED25519_SIGNATURE_TYPE];
            raw.extend_from_slice(&[0u8; 32]);
            raw[1] = 1; // the identity point
            let key = VerifyingKey::from_bytes(&raw[1..].try_into().unwrap()).unwrap();
            format!(
                "{name}+{}+{}",
                hex4(&VerifierKey::key_id(name, &key)),
                STANDARD.encode(raw)
            )
        };
        let bad = [
            format!("{name}+{}+{b64}", id.to_uppercase()),
            format!("{name}+{}+{b64}", &id[..6]),
            format!("{name}+{id}"),
            format!("{name}+{id}+{b64}+x"),
            format!("+{id}+{b64}"),
            format!("a b+{id}+{b64}"),
            format!("{name}+{id}+{noncanon}"),
            format!("{name}+{id}+"),
            small_order,
        ];
        for b in &bad {
            let e = VerifierKey::parse(b).expect_err(b);
            assert!(matches!(e, NoteError::MalformedKey { .. }), "{b}: {e:?}");
        }
        assert!(VerifierKey::new("a\u{3000}b", k.key).is_err());
        assert!(VerifierKey::new("a+b", k.key).is_err());
    }

    #[test]
    fn checkpoint_text_rules() {
        let root = STANDARD.encode([7u8; 32]);
        let ok = [
            (format!("o\n0\n{root}\n"), 0u64, 0usize),
            (format!("o\n18446744073709551615\n{root}\n"), u64::MAX, 0),
            (format!("o\n5\n{root}\ne1\ne 2\n"), 5, 2),
        ];
        for (text, size, n_ext) in &ok {
            let cp = Checkpoint::parse_text(text).unwrap();
            assert_eq!((cp.size, cp.extensions.len()), (*size, *n_ext));
            assert_eq!(&cp.to_text(), text);
        }
        let short = STANDARD.encode([7u8; 31]);
        let bad = [
            format!("o\n01\n{root}\n"),
            format!("o\n00\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n1 \n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            format!("\n1\n{root}\n"),
            format!("o \n1\n{root}\n"),
            format!("o\n1\n{root}"),
            format!("o\n1\n{short}\n"),
            format!("o\n1\n{}\n", root.trim_end_matches('=')),
            format!("o\n1\n{root}\n\n"),
            format!("o\n1\n{root}\next \n"),
            format!("o\t\n1\n{root}\n"),
            "o\n1\n".to_owned(),
            String::new(),
        ];
        for b in &bad {
            let e = Checkpoint::parse_text(b).expect_err(b);
            assert!(
                matches!(e, NoteError::MalformedCheckpoint { .. }),
                "{b:?}: {e:?}"
            );
        }
        let a = signer("o", 1);
        let mut cp = sample_checkpoint();
        cp.origin = "two\nlines".into();
        assert!(matches!(
            sign_checkpoint(&cp, &[&a]),
            Err(NoteError::MalformedCheckpoint { .. })
        ));
        let mut cp = sample_checkpoint();
        cp.extensions.push(String::new());
        assert!(matches!(
            sign_checkpoint(&cp, &[&a]),
            Err(NoteError::MalformedCheckpoint { .. })
        ));
        let mut cp = sample_checkpoint();
        cp.extensions = vec!["x\ny".into()];
        assert!(matches!(
            sign_checkpoint(&cp, &[&a]),
            Err(NoteError::MalformedCheckpoint { .. })
        ));
        // A verified note whose text is not a checkpoint.
        let signed = Note::sign("hello\n", &[&a]).unwrap();
        assert!(matches!(
            open_checkpoint(&signed, &[a.verifier_key()]),
            Err(NoteError::MalformedCheckpoint { .. })
        ));
    }

    fn note_fragments() -> impl Strategy<Value = String> {
        let sig = signer("a.example", 1).sign_line("t\n").unwrap();
        let b64 = sig.rsplit(' ').next().unwrap().trim_end().to_owned();
        prop::collection::vec(
            prop_oneof![
                Just("\n".to_owned()),
                Just("\n\n".to_owned()),
                Just("\u{2014} ".to_owned()),
                Just(" ".to_owned()),
                Just("+".to_owned()),
                Just("=".to_owned()),
                Just("a.example".to_owned()),
                Just("0".to_owned()),
                Just("AAAA".to_owned()),
                Just(b64),
                Just(sig),
                "[ -~\u{a0}\u{2014}\r\t]{0,4}",
            ],
            0..24,
        )
        .prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_strings(s in any::<String>()) {
            if let Ok(n) = Note::parse(&s) {
                prop_assert_eq!(n.to_string(), s.clone());
            }
            if let Ok(cp) = Checkpoint::parse_text(&s) {
                prop_assert_eq!(cp.to_text(), s.clone());
            }
            if let Ok(k) = VerifierKey::parse(&s) {
                prop_assert_eq!(k.to_string(), s);
            }
        }

        #[test]
        fn parsers_never_panic_on_bytes(b in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(n) = Note::parse_bytes(&b) {
                prop_assert_eq!(n.to_string().into_bytes(), b.clone());
            }
            if let Ok(s) = std::str::from_utf8(&b) {
                let _ = Checkpoint::parse_text(s);
            }
        }

        #[test]
        fn parsers_round_trip_structured(s in note_fragments()) {
            let key = signer("a.example", 1).verifier_key();
            if let Ok(n) = Note::parse(&s) {
                prop_assert_eq!(n.to_string(), s.clone());
                let _ = n.verify(&[key]);
            }
            if let Ok(cp) = Checkpoint::parse_text(&s) {
                prop_assert_eq!(cp.to_text(), s);
            }
        }

        #[test]
        fn mutated_checkpoints_never_verify_wrongly(
            idx in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let a = signer("a.example", 1);
            let cp = sample_checkpoint();
            let signed = sign_checkpoint(&cp, &[&a]).unwrap();
            let mut bytes = signed.clone().into_bytes();
            let i = idx.index(bytes.len());
            bytes[i] = byte;
            let res = Note::parse_bytes(&bytes).and_then(|n| {
                let by = n.verify(&[a.verifier_key()])?;
                Ok((Checkpoint::parse_text(&n.text)?, by))
            });
            if let Ok((got, _)) = res {
                // Only changes outside the signed text (e.g. in the key name) can survive,
                // and then the checkpoint is unchanged.
                prop_assert_eq!(got, cp);
            }
        }
    }

    #[test]
    fn cosignature_v1_round_trip_and_tamper() {
        let log = signer("example.com/log", 1);
        let w = Cosigner::new("witness.example/w1", SigningKey::from_bytes(&[9; 32])).unwrap();
        let text = "example.com/log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let mut note = Note::parse(&Note::sign(text, &[&log]).unwrap()).unwrap();
        note.merge_signatures([w.cosign(text, 1_700_000_000).unwrap()])
            .unwrap();
        let reparsed = Note::parse(&note.to_string()).unwrap();
        assert_eq!(reparsed, note);
        let key = CosignerKey::parse(&w.key().to_string()).unwrap();
        assert_eq!(&key, w.key());
        let got = reparsed
            .verify_cosignatures(std::slice::from_ref(&key))
            .unwrap();
        assert_eq!(got, vec![(key.clone(), 1_700_000_000)]);
        // The log key still verifies; the witness line is ignored by Ed25519 verification.
        assert_eq!(reparsed.verify(&[log.verifier_key()]).unwrap().len(), 1);
        // A cosignature over another text (or another time) does not verify.
        let mut bad = note.clone();
        bad.text = "example.com/log\n6\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n".into();
        assert!(matches!(
            bad.verify_cosignatures(std::slice::from_ref(&key)),
            Err(NoteError::InvalidSignature { .. })
        ));
        let mut late = note.clone();
        if let Some(p) = late.signatures[1].foreign_payload.as_mut() {
            p[7] ^= 1;
        }
        assert!(late
            .verify_cosignatures(std::slice::from_ref(&key))
            .is_err());
        // Unknown cosigners are ignored; vkeys of the wrong type are refused.
        assert!(note.verify_cosignatures(&[]).unwrap().is_empty());
        assert!(CosignerKey::parse(&log.verifier_key().to_string()).is_err());
        assert!(VerifierKey::parse(&key.to_string()).is_err());
    }
}
