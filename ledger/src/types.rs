//! Small value types shared by entries, state and API: organisation ids, roles, categories,
//! grades, severities and time.
//!
//! Each type validates itself on construction and on deserialisation, so a decoded entry never
//! holds an out-of-range value. Not a place for rules that need ledger state (see `state`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Milliseconds since the Unix epoch, UTC. The only clock in the ledger is a block header's
/// time; state transitions never read the wall clock.
pub type TimeMs = u64;

/// One day in milliseconds.
pub const DAY_MS: u64 = 86_400_000;

/// Identifier of a registered organisation: 1–32 characters of `a-z`, `0-9`, `-`, starting with
/// a letter (e.g. `gz-credit`, `bank-a`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrgId(String);

/// A value outside its allowed form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {reason}")]
pub struct ValueError {
    /// Which value.
    pub what: &'static str,
    /// Why.
    pub reason: String,
}

impl OrgId {
    /// Maximum length in bytes.
    pub const MAX_LEN: usize = 32;

    /// Validates and wraps.
    pub fn new(s: &str) -> Result<OrgId, ValueError> {
        let bad = |reason: &str| ValueError {
            what: "organisation id",
            reason: format!("{reason} ({s:?})"),
        };
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(bad("must be 1-32 characters"));
        }
        if !s.as_bytes()[0].is_ascii_lowercase() {
            return Err(bad("must start with a-z"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad("only a-z, 0-9 and '-' are allowed"));
        }
        Ok(OrgId(s.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::str::FromStr for OrgId {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrgId::new(s)
    }
}

impl Serialize for OrgId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OrgId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OrgId, D::Error> {
        let s = String::deserialize(d)?;
        OrgId::new(&s).map_err(serde::de::Error::custom)
    }
}

/// What an organisation is allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Government agency: holds credit data, answers queries, publishes records, grades,
    /// decides repairs, registers firms.
    Agency,
    /// Bank: queries firms' data under their consent.
    Bank,
    /// The 信用中国 (Credit China) registry node.
    CreditChina,
    /// The 国家企业信用信息公示系统 (national enterprise credit publicity system) registry node.
    Gsxt,
    /// Auditor / regulator: reads everything, writes nothing but evidence and anchors.
    Auditor,
}

impl Role {
    /// Whether this role is one of the two national registries that apply repairs.
    pub fn is_registry(self) -> bool {
        matches!(self, Role::CreditChina | Role::Gsxt)
    }
}

/// A category of public credit data (DESIGN.md data model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Business registration (工商登记).
    Registration,
    /// Administrative licences (行政许可).
    Licences,
    /// Administrative penalties (行政处罚).
    Penalties,
    /// Abnormal-operation list (经营异常名录).
    AbnormalList,
    /// Serious-dishonesty list (严重失信主体名单).
    DishonestList,
    /// Court judgments, dishonest judgment debtors (司法判决).
    Judgments,
    /// Tax payment and rating (纳税).
    Tax,
    /// Social insurance contributions (社保).
    SocialInsurance,
    /// Housing provident fund (公积金).
    HousingFund,
    /// Water, electricity and gas payments (水电气).
    Utilities,
}

impl Category {
    /// Every category, in canonical order.
    pub const ALL: [Category; 10] = [
        Category::Registration,
        Category::Licences,
        Category::Penalties,
        Category::AbnormalList,
        Category::DishonestList,
        Category::Judgments,
        Category::Tax,
        Category::SocialInsurance,
        Category::HousingFund,
        Category::Utilities,
    ];

    /// The `snake_case` name used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Category::Registration => "registration",
            Category::Licences => "licences",
            Category::Penalties => "penalties",
            Category::AbnormalList => "abnormal_list",
            Category::DishonestList => "dishonest_list",
            Category::Judgments => "judgments",
            Category::Tax => "tax",
            Category::SocialInsurance => "social_insurance",
            Category::HousingFund => "housing_fund",
            Category::Utilities => "utilities",
        }
    }

    /// Parses [`Category::name`].
    pub fn parse(s: &str) -> Result<Category, ValueError> {
        Category::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| ValueError {
                what: "category",
                reason: format!(
                    "unknown category {s:?}; expected one of {}",
                    Category::ALL.map(Category::name).join(", ")
                ),
            })
    }
}

/// Checks that a category list is non-empty, strictly ascending (so canonical, no duplicates).
pub fn check_categories(cats: &[Category]) -> Result<(), ValueError> {
    if cats.is_empty() {
        return Err(ValueError {
            what: "categories",
            reason: "at least one category is required".into(),
        });
    }
    if cats.windows(2).any(|w| w[0] >= w[1]) {
        return Err(ValueError {
            what: "categories",
            reason: "must be sorted in canonical order without duplicates".into(),
        });
    }
    Ok(())
}

/// Severity of a penalty record; fixes the allowed minimum publicity period before repair
/// (NDRC Order No. 36 of 2025).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Minor: minimum publicity at most 3 months (0–90 days).
    Minor,
    /// General: 3 months to 1 year (90–365 days).
    General,
    /// Serious: 1 to 3 years (365–1095 days).
    Serious,
}

impl Severity {
    /// Inclusive range of the minimum publicity period in days.
    pub fn publicity_days(self) -> (u16, u16) {
        match self {
            Severity::Minor => (0, 90),
            Severity::General => (90, 365),
            Severity::Serious => (365, 1095),
        }
    }
}

/// A supervision grade: food/drug style A–D or environmental colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    /// Grade A (best).
    A,
    /// Grade B.
    B,
    /// Grade C.
    C,
    /// Grade D (worst).
    D,
    /// Environmental green (best).
    Green,
    /// Environmental blue.
    Blue,
    /// Environmental yellow.
    Yellow,
    /// Environmental red (worst).
    Red,
}

/// Checks a bounded, printable UTF-8 text field.
pub fn check_text(
    what: &'static str,
    s: &str,
    max: usize,
    allow_empty: bool,
) -> Result<(), ValueError> {
    if !allow_empty && s.trim().is_empty() {
        return Err(ValueError {
            what,
            reason: "must not be empty".into(),
        });
    }
    if s.len() > max {
        return Err(ValueError {
            what,
            reason: format!("{} bytes exceeds {max}", s.len()),
        });
    }
    if s.chars().any(char::is_control) {
        return Err(ValueError {
            what,
            reason: "control characters are not allowed".into(),
        });
    }
    Ok(())
}

/// Working-day arithmetic in China Standard Time (UTC+8), Monday–Friday, without a holiday
/// calendar. Returns the instant at which `n` full working days after the day containing `t`
/// have passed (midnight CST after the n-th working day).
pub fn working_days_deadline(t: TimeMs, n: u32) -> TimeMs {
    const CST_OFFSET_MS: u64 = 8 * 3_600_000;
    let local_day = t.saturating_add(CST_OFFSET_MS) / DAY_MS;
    // 1970-01-01 was a Thursday: weekday index 0 = Monday.
    let weekday = |day: u64| (day + 3) % 7;
    let mut day = local_day;
    let mut left = n;
    while left > 0 {
        day += 1;
        if weekday(day) < 5 {
            left -= 1;
        }
    }
    // Midnight CST at the start of the day after `day`.
    (day + 1)
        .saturating_mul(DAY_MS)
        .saturating_sub(CST_OFFSET_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_id_rules() {
        assert!(OrgId::new("gz-credit").is_ok());
        assert!(OrgId::new("").is_err());
        assert!(OrgId::new("Bank").is_err());
        assert!(OrgId::new("1bank").is_err());
        assert!(OrgId::new("bank a").is_err());
        assert!(OrgId::new(&"a".repeat(33)).is_err());
    }

    #[test]
    fn categories_must_be_canonical() {
        use Category::*;
        assert!(check_categories(&[Registration, Tax]).is_ok());
        assert!(check_categories(&[Tax, Registration]).is_err());
        assert!(check_categories(&[Tax, Tax]).is_err());
        assert!(check_categories(&[]).is_err());
        for c in Category::ALL {
            assert_eq!(Category::parse(c.name()).unwrap(), c);
        }
        assert!(Category::parse("salary").is_err());
    }

    #[test]
    fn working_days_skip_weekends() {
        // 2026-11-27 is a Friday; 10:00 CST = 02:00 UTC.
        let fri_10_cst = 1_795_744_800_000; // 2026-11-27T02:00:00Z
                                            // Three working days: Mon 30, Tue 1, Wed 2 → deadline Thu 2026-12-03 00:00 CST
                                            // = 2026-12-02T16:00:00Z.
        assert_eq!(working_days_deadline(fri_10_cst, 3), 1_796_227_200_000);
        // From a Monday, 3 working days end Thursday midnight CST.
        let mon = fri_10_cst + 3 * DAY_MS;
        assert_eq!(working_days_deadline(mon, 3), 1_796_227_200_000 + DAY_MS);
    }
}
