//! Post-loan monitoring (贷后监测): the consent's monitoring scope and the alert batch an agency
//! logs before it releases alerts to a bank.
//!
//! A consent may carry a [`Monitoring`] scope: the kinds of record change ([`MonitorCategory`])
//! the bank may be alerted about while the consent is in force. Which committed entries are
//! *triggers* (credit records, grades, broken commitments, repair steps) and of which category is
//! [`trigger_category`]; the alert id binding one trigger to one consent is [`alert_id`]. An
//! [`AlertBatch`] (entry kind `alerts_delivered`) records the delivery of alerts about one firm
//! to one bank; the rules that check it against the consent and the trigger are in
//! `state` (`specs/state.md` §4.19). Not here: computing or delivering alerts (the node).

use crate::firmtag::FirmTag;
use crate::hash::{self, Digest, Domain};
use crate::types::{Category, OrgId, ValueError};
use serde::{Deserialize, Serialize};

/// Most alerts in one [`AlertBatch`].
pub const MAX_ALERTS: usize = 64;

/// A kind of record change a bank may be alerted about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorCategory {
    /// A credit record in category `penalties` (行政处罚).
    Penalties,
    /// A credit record in category `abnormal_list` (经营异常名录).
    AbnormalList,
    /// A credit record in category `dishonest_list` (严重失信主体名单).
    DishonestList,
    /// A credit record in category `judgments` (司法判决).
    Judgments,
    /// A credit record in any other category.
    OtherRecords,
    /// A supervision grade assigned (`grade_assigned`).
    Grades,
    /// A credit commitment recorded as broken (`commitment_broken`).
    CommitmentsBroken,
    /// A repair step (`repair_requested`, `repair_decided`, `repair_applied`).
    Repairs,
}

impl MonitorCategory {
    /// Every category, in canonical order.
    pub const ALL: [MonitorCategory; 8] = [
        MonitorCategory::Penalties,
        MonitorCategory::AbnormalList,
        MonitorCategory::DishonestList,
        MonitorCategory::Judgments,
        MonitorCategory::OtherRecords,
        MonitorCategory::Grades,
        MonitorCategory::CommitmentsBroken,
        MonitorCategory::Repairs,
    ];

    /// The `snake_case` name used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            MonitorCategory::Penalties => "penalties",
            MonitorCategory::AbnormalList => "abnormal_list",
            MonitorCategory::DishonestList => "dishonest_list",
            MonitorCategory::Judgments => "judgments",
            MonitorCategory::OtherRecords => "other_records",
            MonitorCategory::Grades => "grades",
            MonitorCategory::CommitmentsBroken => "commitments_broken",
            MonitorCategory::Repairs => "repairs",
        }
    }

    /// Parses [`MonitorCategory::name`].
    pub fn parse(s: &str) -> Result<MonitorCategory, ValueError> {
        MonitorCategory::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| ValueError {
                what: "monitoring category",
                reason: format!(
                    "unknown {s:?}; one of {}",
                    MonitorCategory::ALL.map(MonitorCategory::name).join(", ")
                ),
            })
    }

    /// The monitoring category of a credit record of data category `c`.
    pub fn of_record(c: Category) -> MonitorCategory {
        match c {
            Category::Penalties => MonitorCategory::Penalties,
            Category::AbnormalList => MonitorCategory::AbnormalList,
            Category::DishonestList => MonitorCategory::DishonestList,
            Category::Judgments => MonitorCategory::Judgments,
            _ => MonitorCategory::OtherRecords,
        }
    }
}

/// A consent's monitoring scope: the bank may be alerted about these changes of the firm's
/// record while the consent is in force (not revoked, inside its validity window).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Monitoring {
    /// Categories watched (non-empty, canonical order, no duplicates).
    pub categories: Vec<MonitorCategory>,
}

impl Monitoring {
    /// Static validation: non-empty, strictly ascending.
    pub fn check(&self) -> Result<(), ValueError> {
        if self.categories.is_empty() {
            return Err(ValueError {
                what: "monitoring categories",
                reason: "at least one category is required".into(),
            });
        }
        if self.categories.windows(2).any(|w| w[0] >= w[1]) {
            return Err(ValueError {
                what: "monitoring categories",
                reason: "must be sorted in canonical order without duplicates".into(),
            });
        }
        Ok(())
    }

    /// Whether `c` is watched.
    pub fn covers(&self, c: MonitorCategory) -> bool {
        self.categories.binary_search(&c).is_ok()
    }
}

/// One alert: the trigger entry, the consent that allows it, and the salted digest of what the
/// bank is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// [`alert_id`]`(consent, trigger)`: also the webhook idempotency key.
    pub alert: Digest,
    /// The consent (id of its `consent_granted` entry).
    pub consent: Digest,
    /// Entry id of the trigger.
    pub trigger: Digest,
    /// Log position of the trigger.
    pub position: u64,
    /// The trigger's category.
    pub category: MonitorCategory,
    /// Salted digest of the alert content released to the bank (`hash::salted`).
    pub content: Digest,
}

/// The alerts about one firm delivered to one bank (entry kind `alerts_delivered`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertBatch {
    /// The bank alerted.
    pub bank: OrgId,
    /// The firm the alerts are about.
    pub firm: FirmTag,
    /// 1-64 alerts, sorted by alert id strictly ascending.
    pub alerts: Vec<Alert>,
}

impl AlertBatch {
    /// Static validation.
    pub fn check(&self) -> Result<(), ValueError> {
        if self.alerts.is_empty() || self.alerts.len() > MAX_ALERTS {
            return Err(ValueError {
                what: "alerts",
                reason: format!("must hold 1-{MAX_ALERTS} alerts"),
            });
        }
        if self.alerts.windows(2).any(|w| w[0].alert >= w[1].alert) {
            return Err(ValueError {
                what: "alerts",
                reason: "must be sorted by alert id without duplicates".into(),
            });
        }
        Ok(())
    }
}

/// `tagged(Entry, "alert" ‖ consent ‖ trigger)`: one alert per consent and trigger.
pub fn alert_id(consent: &Digest, trigger: &Digest) -> Digest {
    hash::tagged(
        Domain::Entry,
        &[b"alert", consent.as_bytes(), trigger.as_bytes()],
    )
}

/// Why an alert is refused by the rules (`specs/state.md` §4.19); the first failing check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertRefusal {
    /// No consent with that id.
    ConsentUnknown,
    /// The consent is another firm's.
    WrongFirm,
    /// The consent names another bank.
    WrongBank,
    /// The firm revoked the consent.
    ConsentRevoked,
    /// Before the consent's validity window.
    ConsentNotYetValid,
    /// After the consent's validity window.
    ConsentExpired,
    /// The consent has no monitoring scope, or it does not cover the category.
    NotMonitored,
    /// No monitored trigger with that entry id (or not about this firm, or another category or
    /// position).
    TriggerMismatch,
    /// The trigger was committed before the consent (or before its window).
    TriggerBeforeConsent,
    /// The alert id is not `alert_id(consent, trigger)`.
    BadAlertId,
    /// This alert was already delivered.
    AlreadyDelivered,
}

impl AlertRefusal {
    /// Stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            AlertRefusal::ConsentUnknown => "monitor.consent_unknown",
            AlertRefusal::WrongFirm => "monitor.wrong_firm",
            AlertRefusal::WrongBank => "monitor.wrong_bank",
            AlertRefusal::ConsentRevoked => "monitor.revoked",
            AlertRefusal::ConsentNotYetValid => "monitor.not_yet_valid",
            AlertRefusal::ConsentExpired => "monitor.expired",
            AlertRefusal::NotMonitored => "monitor.not_monitored",
            AlertRefusal::TriggerMismatch => "monitor.trigger_mismatch",
            AlertRefusal::TriggerBeforeConsent => "monitor.trigger_before_consent",
            AlertRefusal::BadAlertId => "monitor.bad_alert_id",
            AlertRefusal::AlreadyDelivered => "monitor.already_delivered",
        }
    }
}

/// A monitored trigger as the state records it (`T ‖ entry id`), for firms with a monitoring
/// consent at the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerRecord {
    /// The firm concerned.
    pub firm: FirmTag,
    /// Its category.
    pub category: MonitorCategory,
    /// Log position of the trigger entry.
    pub position: u64,
    /// Block time it was committed.
    pub time: crate::types::TimeMs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_records_map_to_their_category() {
        for c in MonitorCategory::ALL {
            assert_eq!(MonitorCategory::parse(c.name()).unwrap(), c);
        }
        assert!(MonitorCategory::parse("tax").is_err());
        assert_eq!(
            MonitorCategory::of_record(Category::Judgments),
            MonitorCategory::Judgments
        );
        assert_eq!(
            MonitorCategory::of_record(Category::Tax),
            MonitorCategory::OtherRecords
        );
    }

    #[test]
    fn scope_must_be_sorted_and_non_empty() {
        use MonitorCategory::*;
        assert!(Monitoring {
            categories: vec![Penalties, Repairs]
        }
        .check()
        .is_ok());
        assert!(Monitoring { categories: vec![] }.check().is_err());
        assert!(Monitoring {
            categories: vec![Repairs, Penalties]
        }
        .check()
        .is_err());
    }

    #[test]
    fn alert_ids_bind_consent_and_trigger() {
        let a = Digest([1; 32]);
        let b = Digest([2; 32]);
        assert_ne!(alert_id(&a, &b), alert_id(&b, &a));
        assert_eq!(alert_id(&a, &b), alert_id(&a, &b));
    }
}
