//! Unified Social Credit Code (统一社会信用代码, GB 32100-2015): validation and the canonical
//! typed identifier under which the ledger records a firm.
//!
//! A [`Uscc`] always holds the canonical form: exactly 18 ASCII characters from the 31-character
//! alphabet `0123456789ABCDEFGHJKLMNPQRTUWXY` (no I, O, Z, S or V) whose 18th character is the
//! GB 32100 check character. [`Uscc::parse`] is strict: it never trims, upper-cases or converts
//! full-width forms, and it reports exactly one [`UsccError`] saying why the input was refused.
//! The only normalisation this module performs is the one documented on [`Uscc::parse_lenient`],
//! meant for form front-ends; the ledger stores and compares only the canonical form.
//!
//! Positions 9–17 embed the GB 11714 organisation code, whose own check digit (position 17) some
//! issued codes do not satisfy. Enforcing it is therefore a policy ([`UsccPolicy`]): the default
//! ([`UsccPolicy::CheckCharOnly`]) accepts such codes, [`UsccPolicy::Strict`] refuses them.
//!
//! This module does not check that a code was ever issued, that the registration authority and
//! organisation type form a combination listed in the standard, or that positions 3–8 name an
//! existing administrative division (GB/T 2260); those need registries the ledger does not hold.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The 31 characters a code may contain, in value order (a character's value is its index).
pub const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// Number of characters in a code.
pub const LEN: usize = 18;

/// Check-character weights for positions 1–17: `3^(i−1) mod 31`.
const WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// GB 11714 weights for positions 9–16 (the organisation-code body).
const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

/// Why a string is not a valid code. `position` fields are 1-based character positions (the
/// standard's numbering: position 18 is the check character) in the string that was examined.
///
/// When an input has several defects, exactly one is reported, by this priority: [`Empty`],
/// [`Whitespace`], [`FullWidth`], [`Lowercase`], [`ForbiddenChar`] (each at the first offending
/// character), then [`Length`], then [`CheckChar`], then (under [`UsccPolicy::Strict`] only)
/// [`OrgCheckDigit`]. Character defects come before length so that e.g. a code with a leading
/// space is reported as whitespace rather than as 19 characters long.
///
/// [`Empty`]: UsccError::Empty
/// [`Whitespace`]: UsccError::Whitespace
/// [`FullWidth`]: UsccError::FullWidth
/// [`Lowercase`]: UsccError::Lowercase
/// [`ForbiddenChar`]: UsccError::ForbiddenChar
/// [`Length`]: UsccError::Length
/// [`CheckChar`]: UsccError::CheckChar
/// [`OrgCheckDigit`]: UsccError::OrgCheckDigit
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsccError {
    /// The input is the empty string.
    #[error("unified social credit code is empty")]
    Empty,
    /// The input does not have 18 characters (counted as characters, not bytes).
    #[error("unified social credit code must have 18 characters, got {got}")]
    Length {
        /// Number of characters in the input.
        got: usize,
    },
    /// A whitespace character (any Unicode whitespace, leading, trailing or inside).
    #[error("whitespace at position {position} of unified social credit code")]
    Whitespace {
        /// 1-based character position of the first whitespace character.
        position: usize,
    },
    /// An ASCII lower-case letter whose upper-case form is in the alphabet.
    #[error("lower-case letter at position {position} of unified social credit code")]
    Lowercase {
        /// 1-based character position of the first such letter.
        position: usize,
    },
    /// A full-width digit or letter (U+FF10–FF19, U+FF21–FF3A, U+FF41–FF5A) whose half-width,
    /// upper-cased form is in the alphabet.
    #[error("full-width character at position {position} of unified social credit code")]
    FullWidth {
        /// 1-based character position of the first such character.
        position: usize,
    },
    /// A character outside the alphabet that is not covered by the variants above (I, O, Z, S,
    /// V, punctuation, control characters, other scripts …).
    #[error(
        "character {ch:?} at position {position} is not allowed in a unified social credit code"
    )]
    ForbiddenChar {
        /// 1-based character position of the first such character.
        position: usize,
        /// The offending character (U+FFFD for a non-ASCII byte given to [`check_char`]).
        ch: char,
    },
    /// Position 18 is not the check character computed from positions 1–17.
    #[error("unified social credit code check character is {got:?}, expected {expected:?}")]
    CheckChar {
        /// The check character positions 1–17 call for.
        expected: char,
        /// The character found at position 18.
        got: char,
    },
    /// Position 17 is not the GB 11714 check digit of positions 9–16 (only reported under
    /// [`UsccPolicy::Strict`]).
    #[error("organisation code (GB 11714) check digit is {got:?}, expected {expected:?}")]
    OrgCheckDigit {
        /// The check digit positions 9–16 call for (`0`–`9` or `X`).
        expected: char,
        /// The character found at position 17.
        got: char,
    },
    /// A part given to [`Uscc::from_parts`] has the wrong number of characters.
    #[error("{part} must have {expected} characters, got {got}")]
    PartLength {
        /// Which part: `"division"` or `"org_code"`.
        part: &'static str,
        /// Required number of characters.
        expected: usize,
        /// Number of characters given.
        got: usize,
    },
}

impl UsccError {
    /// Stable machine-readable code for this reason, e.g. `"uscc.check_char"`; suitable for API
    /// responses and logs (the `Display` text may change, these codes do not).
    pub fn code(&self) -> &'static str {
        match self {
            UsccError::Empty => "uscc.empty",
            UsccError::Length { .. } => "uscc.length",
            UsccError::Whitespace { .. } => "uscc.whitespace",
            UsccError::Lowercase { .. } => "uscc.lowercase",
            UsccError::FullWidth { .. } => "uscc.fullwidth",
            UsccError::ForbiddenChar { .. } => "uscc.forbidden_char",
            UsccError::CheckChar { .. } => "uscc.check_char",
            UsccError::OrgCheckDigit { .. } => "uscc.org_check_digit",
            UsccError::PartLength { .. } => "uscc.part_length",
        }
    }
}

/// Whether parsing enforces the GB 11714 organisation-code check digit (position 17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UsccPolicy {
    /// Enforce only the GB 32100 check character (position 18), the code's own integrity check.
    /// Positions 9–17 of some issued codes do not satisfy GB 11714, so this is what
    /// [`Uscc::parse`] uses.
    #[default]
    CheckCharOnly,
    /// Additionally require position 17 to be the GB 11714 check digit of positions 9–16.
    Strict,
}

/// A valid Unified Social Credit Code in canonical form (18 ASCII characters).
///
/// Ordering and hashing are those of the canonical string.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uscc([u8; LEN]);

impl Uscc {
    /// Parses the canonical (ledger) form with [`UsccPolicy::CheckCharOnly`]: exactly 18
    /// characters from [`ALPHABET`] with the correct check character at position 18. Nothing is
    /// trimmed or converted; see [`Uscc::parse_lenient`] for user input.
    pub fn parse(s: &str) -> Result<Uscc, UsccError> {
        Uscc::parse_with(s, UsccPolicy::CheckCharOnly)
    }

    /// Parses the canonical form like [`Uscc::parse`], enforcing the GB 11714 check digit when
    /// `policy` is [`UsccPolicy::Strict`]. The check character is verified first, so a code that
    /// fails both is reported as [`UsccError::CheckChar`].
    pub fn parse_with(s: &str, policy: UsccPolicy) -> Result<Uscc, UsccError> {
        if s.is_empty() {
            return Err(UsccError::Empty);
        }
        let (bytes, count) = scan::<LEN>(s.chars(), 1)?;
        if count != LEN {
            return Err(UsccError::Length { got: count });
        }
        let [first17 @ .., last] = bytes;
        let expected = check_byte(&first17);
        if last != expected {
            return Err(UsccError::CheckChar {
                expected: char::from(expected),
                got: char::from(last),
            });
        }
        let code = Uscc(bytes);
        if policy == UsccPolicy::Strict {
            code.verify_org_check_digit()?;
        }
        Ok(code)
    }

    /// Parses user input after front-end normalisation, then exactly as [`Uscc::parse`]:
    ///
    /// 1. leading and trailing Unicode whitespace (including U+3000) is trimmed;
    /// 2. full-width digits and letters (U+FF10–FF19, U+FF21–FF3A, U+FF41–FF5A) become their
    ///    ASCII forms;
    /// 3. ASCII letters are upper-cased.
    ///
    /// Nothing else is changed: whitespace inside the code, other full-width punctuation and
    /// letters outside the alphabet are still errors, whose positions refer to the trimmed input.
    pub fn parse_lenient(s: &str) -> Result<Uscc, UsccError> {
        let normalised: String = s
            .trim()
            .chars()
            .map(|ch| match fullwidth_to_ascii(ch) {
                Some(b) => char::from(b.to_ascii_uppercase()),
                None => ch.to_ascii_uppercase(),
            })
            .collect();
        Uscc::parse(&normalised)
    }

    /// Builds a code from its parts, computing position 17 (the GB 11714 check digit of
    /// `org_code8`) and position 18 (the check character), so that the result satisfies
    /// [`UsccPolicy::Strict`]. Intended for generating sample and test data.
    ///
    /// `authority` is position 1, `org_type` position 2, `division` positions 3–8 (6 characters)
    /// and `org_code8` positions 9–16 (8 characters), all from [`ALPHABET`] with no normalisation;
    /// character errors report positions within the resulting code.
    pub fn from_parts(
        authority: char,
        org_type: char,
        division: &str,
        org_code8: &str,
    ) -> Result<Uscc, UsccError> {
        let division_len = division.chars().count();
        if division_len != 6 {
            return Err(UsccError::PartLength {
                part: "division",
                expected: 6,
                got: division_len,
            });
        }
        let org_len = org_code8.chars().count();
        if org_len != 8 {
            return Err(UsccError::PartLength {
                part: "org_code",
                expected: 8,
                got: org_len,
            });
        }
        let chars = [authority, org_type]
            .into_iter()
            .chain(division.chars())
            .chain(org_code8.chars());
        let (head, _) = scan::<16>(chars, 1)?;
        let [.., b9, b10, b11, b12, b13, b14, b15, b16] = head;
        let org_digit = org_check_byte(&[b9, b10, b11, b12, b13, b14, b15, b16]);
        let mut first17 = [0u8; 17];
        for (dst, src) in first17
            .iter_mut()
            .zip(head.iter().chain([org_digit].iter()))
        {
            *dst = *src;
        }
        let mut bytes = [0u8; LEN];
        for (dst, src) in bytes
            .iter_mut()
            .zip(first17.iter().chain([check_byte(&first17)].iter()))
        {
            *dst = *src;
        }
        Ok(Uscc(bytes))
    }

    /// The canonical 18-character form.
    pub fn as_str(&self) -> &str {
        // The bytes are ASCII by construction, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// Registration authority code (position 1), e.g. `9` for market regulation (工商).
    pub fn registration_authority(&self) -> char {
        let [b, ..] = self.0;
        char::from(b)
    }

    /// Organisation type code (position 2), whose meaning depends on the registration authority.
    pub fn org_type(&self) -> char {
        let [_, b, ..] = self.0;
        char::from(b)
    }

    /// Administrative division code of the registering authority (positions 3–8, GB/T 2260).
    pub fn division_code(&self) -> &str {
        self.as_str().get(2..8).unwrap_or("")
    }

    /// Organisation code (positions 9–17, GB 11714, including its check digit).
    pub fn org_code(&self) -> &str {
        self.as_str().get(8..17).unwrap_or("")
    }

    /// Whether position 17 is the GB 11714 check digit of positions 9–16, i.e. whether this code
    /// would also be accepted under [`UsccPolicy::Strict`].
    pub fn has_valid_org_check_digit(&self) -> bool {
        self.verify_org_check_digit().is_ok()
    }

    fn verify_org_check_digit(&self) -> Result<(), UsccError> {
        let [.., b9, b10, b11, b12, b13, b14, b15, b16, b17, _] = self.0;
        let expected = org_check_byte(&[b9, b10, b11, b12, b13, b14, b15, b16]);
        if b17 == expected {
            Ok(())
        } else {
            Err(UsccError::OrgCheckDigit {
                expected: char::from(expected),
                got: char::from(b17),
            })
        }
    }
}

/// Computes the check character (position 18, as an ASCII byte) of the first 17 characters of a
/// code, given as ASCII bytes: `c = (31 − Σ value_i · 3^(i−1) mod 31) mod 31`.
///
/// Errors name the first byte outside [`ALPHABET`] with its 1-based position, using the same
/// classification and priority as [`Uscc::parse`] (a non-ASCII byte is a
/// [`UsccError::ForbiddenChar`] with `ch` = U+FFFD).
pub fn check_char(first17: &[u8; 17]) -> Result<u8, UsccError> {
    let chars = first17.iter().map(|&b| {
        if b.is_ascii() {
            char::from(b)
        } else {
            char::REPLACEMENT_CHARACTER
        }
    });
    let (bytes, _) = scan::<17>(chars, 1)?;
    Ok(check_byte(&bytes))
}

/// Value (index in [`ALPHABET`]) of an ASCII byte, if it is in the alphabet.
fn value(b: u8) -> Option<u32> {
    ALPHABET
        .iter()
        .position(|&a| a == b)
        .and_then(|i| u32::try_from(i).ok())
}

/// Check character of 17 bytes already known to be in the alphabet.
fn check_byte(first17: &[u8; 17]) -> u8 {
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS.iter())
        .map(|(&b, &w)| value(b).unwrap_or(0) * w)
        .sum();
    let c = (31 - sum % 31) % 31;
    alphabet_char(c)
}

fn alphabet_char(v: u32) -> u8 {
    usize::try_from(v)
        .ok()
        .and_then(|i| ALPHABET.get(i))
        .copied()
        .unwrap_or(b'0')
}

/// GB 11714 check digit (`0`–`9` or `X`) of an 8-character organisation-code body already known
/// to be in the alphabet: digits are worth 0–9 and letters A=10 … Z=35.
fn org_check_byte(body: &[u8; 8]) -> u8 {
    let sum: u32 = body
        .iter()
        .zip(ORG_WEIGHTS.iter())
        .map(|(&b, &w)| {
            let v = match b {
                b'0'..=b'9' => u32::from(b - b'0'),
                b'A'..=b'Z' => u32::from(b - b'A') + 10,
                _ => 0,
            };
            v * w
        })
        .sum();
    match 11 - sum % 11 {
        10 => b'X',
        11 => b'0',
        // 1..=9
        d => b'0' + u8::try_from(d).unwrap_or(0),
    }
}

/// ASCII form of a full-width digit or letter (U+FF10–FF19, U+FF21–FF3A, U+FF41–FF5A).
fn fullwidth_to_ascii(ch: char) -> Option<u8> {
    match u32::from(ch) {
        u @ (0xFF10..=0xFF19 | 0xFF21..=0xFF3A | 0xFF41..=0xFF5A) => u8::try_from(u - 0xFEE0).ok(),
        _ => None,
    }
}

enum Class {
    Valid(u8),
    Whitespace,
    FullWidth,
    Lowercase,
    Forbidden,
}

fn classify(ch: char) -> Class {
    if let Some(b) = u8::try_from(ch).ok().filter(|&b| value(b).is_some()) {
        return Class::Valid(b);
    }
    if ch.is_whitespace() {
        return Class::Whitespace;
    }
    if let Some(b) = fullwidth_to_ascii(ch) {
        return if value(b.to_ascii_uppercase()).is_some() {
            Class::FullWidth
        } else {
            Class::Forbidden
        };
    }
    if let Some(b) = u8::try_from(ch).ok().filter(u8::is_ascii_lowercase) {
        return if value(b.to_ascii_uppercase()).is_some() {
            Class::Lowercase
        } else {
            Class::Forbidden
        };
    }
    Class::Forbidden
}

/// Classifies every character, returning the first `N` bytes and the character count, or the
/// highest-priority character error (whitespace, full-width, lower-case, forbidden; each at its
/// first occurrence). Positions are 1-based, starting at `first_position`.
fn scan<const N: usize>(
    chars: impl Iterator<Item = char>,
    first_position: usize,
) -> Result<([u8; N], usize), UsccError> {
    let mut bytes = [0u8; N];
    let mut count = 0usize;
    let mut full_width: Option<usize> = None;
    let mut lowercase: Option<usize> = None;
    let mut forbidden: Option<(usize, char)> = None;
    for (i, ch) in chars.enumerate() {
        let position = first_position + i;
        match classify(ch) {
            Class::Valid(b) => {
                if let Some(slot) = bytes.get_mut(i) {
                    *slot = b;
                }
            }
            // Highest priority: no need to look further.
            Class::Whitespace => return Err(UsccError::Whitespace { position }),
            Class::FullWidth => {
                full_width.get_or_insert(position);
            }
            Class::Lowercase => {
                lowercase.get_or_insert(position);
            }
            Class::Forbidden => {
                forbidden.get_or_insert((position, ch));
            }
        }
        count = i + 1;
    }
    if let Some(position) = full_width {
        return Err(UsccError::FullWidth { position });
    }
    if let Some(position) = lowercase {
        return Err(UsccError::Lowercase { position });
    }
    if let Some((position, ch)) = forbidden {
        return Err(UsccError::ForbiddenChar { position, ch });
    }
    Ok((bytes, count))
}

impl fmt::Display for Uscc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Uscc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Uscc").field(&self.as_str()).finish()
    }
}

impl FromStr for Uscc {
    type Err = UsccError;

    /// Same as [`Uscc::parse`] (strict, no normalisation).
    fn from_str(s: &str) -> Result<Uscc, UsccError> {
        Uscc::parse(s)
    }
}

impl AsRef<str> for Uscc {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Serialize for Uscc {
    /// Serialises as the 18-character canonical string.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Uscc {
    /// Deserialises from a string with the strict [`Uscc::parse`]; an invalid code is a
    /// deserialisation error carrying the [`UsccError`] reason.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Uscc, D::Error> {
        deserializer.deserialize_str(UsccVisitor)
    }
}

struct UsccVisitor;

impl Visitor<'_> for UsccVisitor {
    type Value = Uscc;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a unified social credit code (18-character string)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Uscc, E> {
        Uscc::parse(v).map_err(|e| {
            E::custom(format_args!(
                "invalid unified social credit code ({}): {e}",
                e.code()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashSet};
    use std::path::PathBuf;
    use std::sync::OnceLock;

    fn vectors_dir() -> PathBuf {
        match std::env::var_os("XINYI_VECTORS") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors")),
        }
    }

    fn load(name: &str) -> serde_json::Value {
        let path = vectors_dir().join("uscc").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "USCC vectors missing at {} ({e}); set XINYI_VECTORS to the vectors folder",
                path.display()
            )
        });
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
    }

    fn valid_codes() -> &'static [String] {
        static CODES: OnceLock<Vec<String>> = OnceLock::new();
        CODES.get_or_init(|| {
            load("valid.json")["codes"]
                .as_array()
                .expect("valid.json: codes array")
                .iter()
                .map(|c| {
                    c["code"]
                        .as_str()
                        .expect("valid.json: code string")
                        .to_owned()
                })
                .collect()
        })
    }

    fn invalid_cases() -> &'static [(String, String)] {
        static CASES: OnceLock<Vec<(String, String)>> = OnceLock::new();
        CASES.get_or_init(|| {
            load("invalid.json")["cases"]
                .as_array()
                .expect("invalid.json: cases array")
                .iter()
                .map(|c| {
                    (
                        c["code"].as_str().expect("invalid.json: code").to_owned(),
                        c["reason"]
                            .as_str()
                            .expect("invalid.json: reason")
                            .to_owned(),
                    )
                })
                .collect()
        })
    }

    fn in_alphabet(ch: char) -> bool {
        ALPHABET.iter().any(|&a| char::from(a) == ch)
    }

    /// 1-based position of the first character satisfying `pred`.
    fn first_pos(s: &str, pred: impl Fn(char) -> bool) -> Option<usize> {
        s.chars().position(pred).map(|i| i + 1)
    }

    fn replace_char(s: &str, index: usize, ch: char) -> String {
        s.chars()
            .enumerate()
            .map(|(i, c)| if i == index { ch } else { c })
            .collect()
    }

    #[test]
    fn vector_files_match_this_implementation() {
        let valid = load("valid.json");
        assert_eq!(
            valid["alphabet"].as_str(),
            std::str::from_utf8(ALPHABET).ok()
        );
        let weights: Vec<u64> = valid["weights"]
            .as_array()
            .expect("weights")
            .iter()
            .map(|w| w.as_u64().expect("weight"))
            .collect();
        let ours: Vec<u64> = WEIGHTS.iter().map(|&w| u64::from(w)).collect();
        assert_eq!(weights, ours);
        let mut w = 1u32;
        for &ours in &WEIGHTS {
            assert_eq!(ours, w, "weights must be 3^(i-1) mod 31");
            w = w * 3 % 31;
        }
        assert_eq!(valid_codes().len(), 201);
        assert_eq!(invalid_cases().len(), 103);
        assert!(valid_codes().iter().any(|c| c == "91350100M000100Y43"));
    }

    #[test]
    fn valid_codes_parse_and_round_trip() {
        for code in valid_codes() {
            let u = Uscc::parse(code).unwrap_or_else(|e| panic!("{code}: {e:?}"));
            assert_eq!(u.as_str(), code);
            assert_eq!(u.to_string(), *code);
            assert_eq!(format!("{u:?}"), format!("Uscc({code:?})"));
            assert_eq!(code.parse::<Uscc>(), Ok(u));
            assert_eq!(Uscc::parse_with(code, UsccPolicy::Strict), Ok(u), "{code}");
            assert!(u.has_valid_org_check_digit(), "{code}");

            // Accessors cover the code, and from_parts rebuilds it.
            let rebuilt = format!(
                "{}{}{}{}{}",
                u.registration_authority(),
                u.org_type(),
                u.division_code(),
                u.org_code(),
                &code[17..]
            );
            assert_eq!(rebuilt, *code);
            let org8 = &u.org_code()[..8];
            let from_parts = Uscc::from_parts(
                u.registration_authority(),
                u.org_type(),
                u.division_code(),
                org8,
            );
            assert_eq!(from_parts, Ok(u), "{code}");

            let first17: [u8; 17] = code.as_bytes()[..17].try_into().expect("17 bytes");
            assert_eq!(check_char(&first17), Ok(code.as_bytes()[17]), "{code}");

            let json = serde_json::to_string(&u).expect("json");
            assert_eq!(json, format!("\"{code}\""));
            assert_eq!(serde_json::from_str::<Uscc>(&json).expect("json back"), u);

            let cbor = serde_cbor::to_vec(&u).expect("cbor");
            assert_eq!(cbor, serde_cbor::to_vec(code).expect("cbor of string"));
            assert_eq!(serde_cbor::from_slice::<Uscc>(&cbor).expect("cbor back"), u);
        }
    }

    /// Checks one invalid vector; returns a description of the mismatch, if any.
    fn check_invalid(code: &str, reason: &str) -> Result<(), String> {
        let got = Uscc::parse(code);
        let strict = Uscc::parse_with(code, UsccPolicy::Strict);
        let expected: UsccError = match reason {
            "empty" => UsccError::Empty,
            "length" => UsccError::Length {
                got: code.chars().count(),
            },
            "whitespace" => UsccError::Whitespace {
                position: first_pos(code, char::is_whitespace).ok_or("no whitespace")?,
            },
            "lowercase" => UsccError::Lowercase {
                position: first_pos(code, |c| c.is_ascii_lowercase()).ok_or("no lowercase")?,
            },
            "fullwidth" => UsccError::FullWidth {
                position: first_pos(code, |c| ('\u{FF10}'..='\u{FF5A}').contains(&c))
                    .ok_or("no full-width char")?,
            },
            "forbidden_char" => {
                let position = first_pos(code, |c| !in_alphabet(c)).ok_or("no forbidden char")?;
                let ch = code.chars().nth(position - 1).ok_or("position")?;
                UsccError::ForbiddenChar { position, ch }
            }
            "check_char" | "transposition" => {
                let e = got.clone().err().ok_or("accepted by parse")?;
                let UsccError::CheckChar {
                    expected,
                    got: found,
                } = e
                else {
                    return Err(format!("parse gave {e:?}, want CheckChar"));
                };
                if Some(found) != code.chars().nth(17) || expected == found {
                    return Err(format!("bad CheckChar fields {e:?}"));
                }
                // The expected character really is the right one.
                Uscc::parse(&replace_char(code, 17, expected))
                    .map_err(|e2| format!("fixing with {expected:?} still fails: {e2:?}"))?;
                e
            }
            "org_check_digit" => {
                let u = got
                    .clone()
                    .map_err(|e| format!("parse rejected it: {e:?}"))?;
                if u.as_str() != code || u.has_valid_org_check_digit() {
                    return Err("parse result wrong".into());
                }
                let e = strict.clone().err().ok_or("accepted by Strict")?;
                let UsccError::OrgCheckDigit {
                    expected,
                    got: found,
                } = e
                else {
                    return Err(format!("Strict gave {e:?}, want OrgCheckDigit"));
                };
                if Some(found) != code.chars().nth(16) || expected == found {
                    return Err(format!("bad OrgCheckDigit fields {e:?}"));
                }
                // Putting the expected digit back (and recomputing position 18) is Strict-valid.
                let c = code.as_bytes();
                let fixed = Uscc::from_parts(
                    char::from(c[0]),
                    char::from(c[1]),
                    &code[2..8],
                    &code[8..16],
                )
                .map_err(|e2| format!("{e2:?}"))?;
                if fixed.as_str().chars().nth(16) != Some(expected) {
                    return Err(format!("expected digit {expected:?} is not GB 11714's"));
                }
                return Ok(());
            }
            other => return Err(format!("unknown reason {other:?}")),
        };
        if got.as_ref() != Err(&expected) {
            return Err(format!("parse gave {got:?}, want Err({expected:?})"));
        }
        if strict.as_ref() != Err(&expected) {
            return Err(format!("Strict gave {strict:?}, want Err({expected:?})"));
        }
        let want_code = match reason {
            "transposition" => "uscc.check_char".to_owned(),
            r => format!("uscc.{r}"),
        };
        if expected.code() != want_code {
            return Err(format!("code() is {}, want {want_code}", expected.code()));
        }
        Ok(())
    }

    #[test]
    fn invalid_cases_report_their_reason() {
        let mut failures = Vec::new();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (code, reason) in invalid_cases() {
            *seen.entry(reason.as_str()).or_default() += 1;
            if let Err(why) = check_invalid(code, reason) {
                failures.push(format!("{code:?} ({reason}): {why}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{} failing cases:\n{}",
            failures.len(),
            failures.join("\n")
        );
        let reasons: Vec<&str> = seen.keys().copied().collect();
        assert_eq!(
            reasons,
            [
                "check_char",
                "empty",
                "forbidden_char",
                "fullwidth",
                "length",
                "lowercase",
                "org_check_digit",
                "transposition",
                "whitespace"
            ]
        );
    }

    #[test]
    fn invalid_strings_are_serde_errors_with_reason() {
        for (code, _) in invalid_cases() {
            let Err(e) = Uscc::parse(code) else { continue };
            let json = serde_json::to_string(code).expect("json");
            let err = serde_json::from_str::<Uscc>(&json).expect_err(code);
            let msg = err.to_string();
            assert!(
                msg.contains(&e.to_string()) && msg.contains(e.code()),
                "{code}: {msg}"
            );
            let cbor = serde_cbor::to_vec(code).expect("cbor");
            let err = serde_cbor::from_slice::<Uscc>(&cbor).expect_err(code);
            assert!(err.to_string().contains(e.code()), "{code}: {err}");
        }
        // Not a string at all.
        assert!(serde_json::from_str::<Uscc>("915").is_err());
    }

    #[test]
    fn check_order_and_fields() {
        use UsccError::*;
        let cases: &[(&str, UsccError)] = &[
            ("", Empty),
            (" ", Whitespace { position: 1 }),
            ("91350100M000100Y43 ", Whitespace { position: 19 }),
            ("9ab\u{3000}", Whitespace { position: 4 }),
            ("ａI９", FullWidth { position: 1 }),
            ("I９", FullWidth { position: 2 }),
            ("ab９", FullWidth { position: 3 }),
            ("１２３", FullWidth { position: 1 }),
            ("Iab", Lowercase { position: 2 }),
            (
                "913i",
                ForbiddenChar {
                    position: 4,
                    ch: 'i',
                },
            ),
            (
                "ＩＯ",
                ForbiddenChar {
                    position: 1,
                    ch: 'Ｉ',
                },
            ),
            (
                "91-",
                ForbiddenChar {
                    position: 3,
                    ch: '-',
                },
            ),
            (
                "统一",
                ForbiddenChar {
                    position: 1,
                    ch: '统',
                },
            ),
            ("9135", Length { got: 4 }),
            ("91350100M000100Y4300000", Length { got: 23 }),
            (
                "91350100M000100Y40",
                CheckChar {
                    expected: '3',
                    got: '0',
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(Uscc::parse(input).as_ref(), Err(want), "{input:?}");
        }
        let all = [
            Empty,
            Length { got: 1 },
            Whitespace { position: 1 },
            Lowercase { position: 1 },
            FullWidth { position: 1 },
            ForbiddenChar {
                position: 1,
                ch: 'I',
            },
            CheckChar {
                expected: '1',
                got: '2',
            },
            OrgCheckDigit {
                expected: '1',
                got: '2',
            },
            PartLength {
                part: "division",
                expected: 6,
                got: 5,
            },
        ];
        let codes: HashSet<&str> = all.iter().map(UsccError::code).collect();
        assert_eq!(codes.len(), all.len());
        assert!(codes.iter().all(|c| c.starts_with("uscc.")));
        let texts: HashSet<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(texts.len(), all.len());
    }

    #[test]
    fn check_char_function_validates_bytes() {
        let mut first17: [u8; 17] = *b"91350100M000100Y4";
        assert_eq!(check_char(&first17), Ok(b'3'));
        first17[8] = b'O';
        assert_eq!(
            check_char(&first17),
            Err(UsccError::ForbiddenChar {
                position: 9,
                ch: 'O'
            })
        );
        first17[3] = 0xFF;
        assert_eq!(
            check_char(&first17),
            Err(UsccError::ForbiddenChar {
                position: 4,
                ch: char::REPLACEMENT_CHARACTER
            })
        );
        first17[10] = b'm';
        assert_eq!(
            check_char(&first17),
            Err(UsccError::Lowercase { position: 11 }),
            "lower-case outranks forbidden, even after a non-ASCII byte"
        );
        first17[16] = b' ';
        assert_eq!(
            check_char(&first17),
            Err(UsccError::Whitespace { position: 17 })
        );
    }

    #[test]
    fn lenient_normalises_only_what_it_documents() {
        for code in valid_codes() {
            let want = Uscc::parse(code).expect("valid");
            let lower = code.to_ascii_lowercase();
            let full: String = code
                .chars()
                .map(|c| char::from_u32(u32::from(c) + 0xFEE0).expect("full-width"))
                .collect();
            let full_lower: String = lower
                .chars()
                .map(|c| char::from_u32(u32::from(c) + 0xFEE0).expect("full-width"))
                .collect();
            let padded = format!(" \t\u{3000}{lower}\r\n ");
            for input in [code.as_str(), &lower, &full, &full_lower, &padded] {
                assert_eq!(Uscc::parse_lenient(input), Ok(want), "{input:?}");
            }
            // Whitespace inside is not removed.
            let spaced = format!("{} {}", &code[..9], &code[9..]);
            assert_eq!(
                Uscc::parse_lenient(&spaced),
                Err(UsccError::Whitespace { position: 10 })
            );
        }
        let valid: HashSet<&str> = valid_codes().iter().map(String::as_str).collect();
        for (code, reason) in invalid_cases() {
            let lenient = Uscc::parse_lenient(code);
            match reason.as_str() {
                "lowercase" | "fullwidth" => {
                    let u = lenient.unwrap_or_else(|e| panic!("{code:?}: {e:?}"));
                    assert!(valid.contains(u.as_str()), "{code:?} -> {u}");
                }
                "whitespace" if code.starts_with(' ') => {
                    let u = lenient.unwrap_or_else(|e| panic!("{code:?}: {e:?}"));
                    assert!(valid.contains(u.as_str()), "{code:?} -> {u}");
                }
                "whitespace" => assert!(
                    matches!(lenient, Err(UsccError::Whitespace { .. })),
                    "{code:?}: {lenient:?}"
                ),
                "org_check_digit" => assert!(lenient.is_ok(), "{code:?}"),
                _ => assert_eq!(lenient, Uscc::parse(code), "{code:?}"),
            }
        }
        assert_eq!(Uscc::parse_lenient("   "), Err(UsccError::Empty));
        assert_eq!(
            Uscc::parse_lenient(" 9135ｉ"),
            Err(UsccError::ForbiddenChar {
                position: 5,
                ch: 'I'
            })
        );
    }

    #[test]
    fn every_substitution_and_adjacent_swap_is_a_check_char_error() {
        for code in valid_codes() {
            let chars: Vec<char> = code.chars().collect();
            for (i, &orig) in chars.iter().enumerate() {
                for &b in ALPHABET {
                    let ch = char::from(b);
                    if ch == orig {
                        continue;
                    }
                    let changed = replace_char(code, i, ch);
                    assert!(
                        matches!(Uscc::parse(&changed), Err(UsccError::CheckChar { .. })),
                        "{changed} accepted"
                    );
                }
                if i + 1 < chars.len() && chars[i + 1] != orig {
                    let mut swapped = chars.clone();
                    swapped.swap(i, i + 1);
                    let swapped: String = swapped.into_iter().collect();
                    assert!(
                        matches!(Uscc::parse(&swapped), Err(UsccError::CheckChar { .. })),
                        "{swapped} accepted"
                    );
                }
            }
        }
    }

    #[test]
    fn from_parts_errors() {
        assert_eq!(
            Uscc::from_parts('9', '1', "44010", "ABCDEFGH"),
            Err(UsccError::PartLength {
                part: "division",
                expected: 6,
                got: 5
            })
        );
        assert_eq!(
            Uscc::from_parts('9', '1', "440100", "ABCDEFGHJ"),
            Err(UsccError::PartLength {
                part: "org_code",
                expected: 8,
                got: 9
            })
        );
        assert_eq!(
            Uscc::from_parts('9', '1', "440100", "ABCDEFGI"),
            Err(UsccError::ForbiddenChar {
                position: 16,
                ch: 'I'
            })
        );
        assert_eq!(
            Uscc::from_parts('y', '1', "440100", "ABCDEFGH"),
            Err(UsccError::Lowercase { position: 1 })
        );
        assert_eq!(
            Uscc::from_parts('9', '1', "440 00", "ABCDEFGH"),
            Err(UsccError::Whitespace { position: 6 })
        );
        assert_eq!(
            Uscc::from_parts('9', '1', "350100", "M000100Y").map(|u| u.to_string()),
            Ok("91350100M000100Y43".to_owned())
        );
    }

    fn alphabet_char_strategy() -> impl Strategy<Value = char> {
        (0..ALPHABET.len()).prop_map(|i| char::from(ALPHABET[i]))
    }

    fn alphabet_string(n: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(alphabet_char_strategy(), n).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #[test]
        fn from_parts_output_parses_strictly(
            authority in alphabet_char_strategy(),
            org_type in alphabet_char_strategy(),
            division in alphabet_string(6),
            org8 in alphabet_string(8),
        ) {
            let u = Uscc::from_parts(authority, org_type, &division, &org8).expect("from_parts");
            prop_assert_eq!(Uscc::parse_with(u.as_str(), UsccPolicy::Strict), Ok(u));
            prop_assert_eq!(u.registration_authority(), authority);
            prop_assert_eq!(u.org_type(), org_type);
            prop_assert_eq!(u.division_code(), division.as_str());
            prop_assert_eq!(&u.org_code()[..8], org8.as_str());
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let strict = Uscc::parse(&s);
            let _ = Uscc::parse_with(&s, UsccPolicy::Strict);
            let _ = Uscc::parse_lenient(&s);
            if let Ok(u) = strict {
                prop_assert_eq!(u.as_str(), s.as_str());
            }
        }

        #[test]
        fn parse_never_panics_on_near_codes(
            s in "[0-9A-Za-z \t\u{3000}\u{FF10}-\u{FF5A}统-]{0,22}"
        ) {
            let strict = Uscc::parse(&s);
            let lenient = Uscc::parse_lenient(&s);
            let _ = Uscc::parse_with(&s, UsccPolicy::Strict);
            if let Ok(u) = strict {
                prop_assert_eq!(u.as_str(), s.as_str());
                prop_assert_eq!(lenient, Ok(u));
            }
        }

        #[test]
        fn any_single_substitution_is_rejected(
            index in 0usize..201,
            position in 0usize..18,
            ch in any::<char>(),
        ) {
            let code = &valid_codes()[index];
            prop_assume!(code.chars().nth(position) != Some(ch));
            let changed = replace_char(code, position, ch);
            prop_assert!(Uscc::parse(&changed).is_err(), "{} accepted", changed);
        }
    }
}
