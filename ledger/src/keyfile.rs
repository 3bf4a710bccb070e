//! Optional passphrase encryption of key files (docs/reliability.md §6): the one home of the
//! format, used by the node (`dev::read_key`, `write_secret`) and the client (`signer::read_key`).
//! It is text in, text out: it neither reads nor writes files itself; the passphrase comes from
//! the environment.
//!
//! An encrypted key file is one line of text:
//!
//! ```text
//! xinyi-encrypted-key/v1 argon2id <m_kib> <t> <p> <salt hex 16 B> <nonce hex 12 B> <ciphertext hex>
//! ```
//!
//! The key is Argon2id(passphrase, salt, m_kib, t, p) → 32 bytes; the ciphertext is
//! ChaCha20-Poly1305(key, nonce, plaintext, associated data = the line's prefix up to and
//! including the nonce, so the parameters cannot be changed); the plaintext is the ordinary key
//! file text (`KeyPair::to_file_text`). The passphrase comes from `XINYI_KEY_PASSPHRASE`.
//! Plain key files keep working; a file is encrypted on write only when the variable is set.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// Environment variable holding the passphrase.
pub const PASSPHRASE_ENV: &str = "XINYI_KEY_PASSPHRASE";
/// First word of an encrypted key file.
pub const MAGIC: &str = "xinyi-encrypted-key/v1";
/// Argon2id memory in KiB (OWASP's minimum recommendation: 19 MiB), passes, lanes.
const M_KIB: u32 = 19 * 1024;
const T: u32 = 2;
const P: u32 = 1;

/// Key-file encryption failures.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Not in the format above.
    #[error("encrypted key file is malformed: {0}")]
    Malformed(&'static str),
    /// The file is encrypted and no passphrase is set.
    #[error("the key file is encrypted: set {PASSPHRASE_ENV}")]
    NoPassphrase,
    /// Wrong passphrase or a changed file.
    #[error("cannot decrypt the key file: wrong passphrase or damaged file")]
    Decrypt,
    /// Argon2 parameters refused.
    #[error("key derivation: {0}")]
    Kdf(String),
}

/// Whether `text` is an encrypted key file.
pub fn is_encrypted(text: &str) -> bool {
    text.trim_start().starts_with(MAGIC)
}

fn derive(pass: &str, salt: &[u8], m: u32, t: u32, p: u32) -> Result<[u8; 32], KeyFileError> {
    // Bounds so a crafted file cannot make the node allocate gigabytes or spin for minutes.
    if !(8..=1024 * 1024).contains(&m) || !(1..=16).contains(&t) || !(1..=8).contains(&p) {
        return Err(KeyFileError::Malformed("argon2 parameters out of range"));
    }
    let params = Params::new(m, t, p, Some(32)).map_err(|e| KeyFileError::Kdf(e.to_string()))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(pass.as_bytes(), salt, &mut out)
        .map_err(|e| KeyFileError::Kdf(e.to_string()))?;
    Ok(out)
}

/// Encrypts key-file text under `pass`.
pub fn encrypt(plain: &str, pass: &str) -> Result<String, KeyFileError> {
    let salt: [u8; 16] = rand::random();
    let nonce: [u8; 12] = rand::random();
    let key = derive(pass, &salt, M_KIB, T, P)?;
    let head = format!(
        "{MAGIC} argon2id {M_KIB} {T} {P} {} {}",
        hex::encode(salt),
        hex::encode(nonce)
    );
    let ct = ChaCha20Poly1305::new(Key::from_slice(&key))
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plain.as_bytes(),
                aad: head.as_bytes(),
            },
        )
        .map_err(|_| KeyFileError::Decrypt)?;
    Ok(format!("{head} {}\n", hex::encode(ct)))
}

/// Decrypts an encrypted key file's text under `pass`.
pub fn decrypt(text: &str, pass: &str) -> Result<String, KeyFileError> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [magic, kdf, m, t, p, salt, nonce, ct] = parts.as_slice() else {
        return Err(KeyFileError::Malformed("expected 8 fields"));
    };
    if *magic != MAGIC || *kdf != "argon2id" {
        return Err(KeyFileError::Malformed("unknown format"));
    }
    let num = |s: &str| {
        s.parse::<u32>()
            .map_err(|_| KeyFileError::Malformed("number"))
    };
    let (m, t, p) = (num(m)?, num(t)?, num(p)?);
    let salt = hex::decode(salt).map_err(|_| KeyFileError::Malformed("salt"))?;
    let nonce: [u8; 12] = hex::decode(nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or(KeyFileError::Malformed("nonce"))?;
    let ct = hex::decode(ct).map_err(|_| KeyFileError::Malformed("ciphertext"))?;
    if salt.len() < 8 || ct.len() > 64 * 1024 {
        return Err(KeyFileError::Malformed("salt or ciphertext length"));
    }
    let head = parts[..7].join(" ");
    let key = derive(pass, &salt, m, t, p)?;
    let plain = ChaCha20Poly1305::new(Key::from_slice(&key))
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &ct,
                aad: head.as_bytes(),
            },
        )
        .map_err(|_| KeyFileError::Decrypt)?;
    String::from_utf8(plain).map_err(|_| KeyFileError::Decrypt)
}

/// The plain key-file text of `text`: decrypted with the passphrase from the environment if it
/// is encrypted, unchanged otherwise.
pub fn open_text(text: &str) -> Result<String, KeyFileError> {
    if !is_encrypted(text) {
        return Ok(text.to_string());
    }
    let pass = std::env::var(PASSPHRASE_ENV).map_err(|_| KeyFileError::NoPassphrase)?;
    decrypt(text, &pass)
}

/// The text to write for a key file: encrypted when the passphrase variable is set.
pub fn seal_text(plain: &str) -> Result<String, KeyFileError> {
    match std::env::var(PASSPHRASE_ENV) {
        Ok(pass) if !pass.is_empty() && !is_encrypted(plain) => encrypt(plain, &pass),
        _ => Ok(plain.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_wrong_passphrase_and_tampering() {
        let plain = crate::KeyPair::generate().to_file_text();
        let enc = encrypt(&plain, "correct horse").unwrap();
        assert!(is_encrypted(&enc));
        assert!(!enc.contains(plain.trim()));
        assert_eq!(decrypt(&enc, "correct horse").unwrap(), plain);
        assert!(matches!(
            decrypt(&enc, "wrong").unwrap_err(),
            KeyFileError::Decrypt
        ));
        // Any changed parameter or ciphertext byte is refused.
        let weaker = enc.replacen(&format!(" {T} {P} "), &format!(" 1 {P} "), 1);
        assert!(decrypt(&weaker, "correct horse").is_err());
        let mut bytes = enc.clone().into_bytes();
        let n = bytes.len() - 5;
        bytes[n] = if bytes[n] == b'0' { b'1' } else { b'0' };
        assert!(decrypt(&String::from_utf8(bytes).unwrap(), "correct horse").is_err());
        // Crafted parameters cannot make derivation huge.
        let huge = enc.replacen(&format!(" {M_KIB} "), " 4000000000 ", 1);
        assert!(matches!(
            decrypt(&huge, "correct horse").unwrap_err(),
            KeyFileError::Malformed(_)
        ));
        assert!(decrypt("garbage", "x").is_err());
        assert_eq!(open_text(&plain).unwrap(), plain);
    }
}
