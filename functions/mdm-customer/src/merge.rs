//! The merge: per-field survivorship, order-independent.
//!
//! Every field of the master keeps the value that wins among all the values any source ever sent
//! for it, and where it came from (its provenance: source and the source's own timestamp). Which
//! value wins is decided by a total order on candidates, so merging is a per-field maximum: merging
//! the same set of updates in any order, with any duplicates, gives the same master.
//!
//! The order, by rule:
//! - `latest`: the later source timestamp (never arrival time) wins;
//! - `{"priority": ["crm", "erp"]}`: a listed source beats one listed after it, and any listed
//!   source beats an unlisted one (the fallback: an unlisted source's value stands until a listed
//!   one sends any); within one rank, the later timestamp wins.
//!
//! Ties (the same source and timestamp with different values) are broken by the source's name,
//! then by the value's JSON, so even conflicting duplicates converge.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How one field's winner is chosen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Rule {
    /// `"latest"`: the latest source timestamp wins.
    Latest(LatestTag),
    /// `{"priority": [...]}`: source priority, then the latest timestamp.
    Priority {
        /// Sources, most trusted first.
        priority: Vec<String>,
    },
}

/// The word `latest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatestTag {
    /// Last writer wins, on the source's timestamp.
    Latest,
}

/// The survivorship rules: one per field, and a default for the rest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// The rule for fields not named in `fields`.
    pub default: Rule,
    /// Per-field rules.
    #[serde(default)]
    pub fields: BTreeMap<String, Rule>,
}

impl Default for Rules {
    /// The CRM owns phone numbers and tiers, the ERP owns addresses and credit limits (then the
    /// web shop, then the CRM); everything else is the latest value.
    fn default() -> Self {
        let priority = |sources: &[&str]| Rule::Priority {
            priority: sources.iter().map(|s| (*s).to_owned()).collect(),
        };
        Self {
            default: Rule::Latest(LatestTag::Latest),
            fields: BTreeMap::from([
                ("phone".to_owned(), priority(&["crm", "erp", "shop"])),
                ("tier".to_owned(), priority(&["crm"])),
                ("address".to_owned(), priority(&["erp", "shop", "crm"])),
                ("credit_limit".to_owned(), priority(&["erp"])),
            ]),
        }
    }
}

impl Rules {
    fn rule(&self, field: &str) -> &Rule {
        self.fields.get(field).unwrap_or(&self.default)
    }

    /// Compares two candidates for `field`: `Greater` when `a` wins.
    pub fn compare(&self, field: &str, a: &FieldValue, b: &FieldValue) -> Ordering {
        let rank = |source: &str, priority: &[String]| {
            priority
                .iter()
                .position(|s| s == source)
                .map_or(0, |i| priority.len() - i)
        };
        let by_rule = match self.rule(field) {
            Rule::Latest(_) => a.ts_ms.cmp(&b.ts_ms),
            Rule::Priority { priority } => rank(&a.source, priority)
                .cmp(&rank(&b.source, priority))
                .then(a.ts_ms.cmp(&b.ts_ms)),
        };
        by_rule
            .then_with(|| a.source.cmp(&b.source))
            .then_with(|| a.value.to_string().cmp(&b.value.to_string()))
    }
}

/// A field's value with its provenance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldValue {
    /// The value as JSON, as the source sent it; a tie is broken on its JSON text.
    pub value: Value,
    /// The source that sent it.
    pub source: String,
    /// The source's own timestamp for it, ms since the epoch.
    pub ts_ms: i64,
}

/// The golden record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Master {
    /// The customer's id (the CRM's): the key of its item in the master table.
    pub customer_id: String,
    /// Every field, with its provenance.
    pub fields: BTreeMap<String, FieldValue>,
}

impl Master {
    /// The values alone.
    pub fn values(&self) -> BTreeMap<String, Value> {
        self.fields
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect()
    }
}

/// A change to a customer from one source, in canonical fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerUpdate {
    /// The customer's id (the CRM's): which master the update merges into.
    pub customer_id: String,
    /// `crm`, `helpdesk`, `shop` or `erp`.
    pub source: String,
    /// The source's own timestamp, ms since the epoch.
    pub ts_ms: i64,
    /// The fields it sets.
    pub fields: BTreeMap<String, Value>,
}

/// An incoming value the merge did not keep, and what it kept instead: an audit entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Discarded {
    /// The field's name, such as `phone`.
    pub field: String,
    /// What came in.
    pub incoming: FieldValue,
    /// The master's value, which beat `incoming` under the field's rule.
    pub kept: FieldValue,
}

/// What merging one update did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// Fields whose value changed, with the new value.
    pub changed: BTreeMap<String, Value>,
    /// Whether any provenance changed (a value re-sent later, or by a stronger source).
    pub provenance_changed: bool,
    /// Incoming values that lost.
    pub discarded: Vec<Discarded>,
}

/// Merges `update` into `master` under `rules`.
pub fn merge(master: &mut Master, update: &CustomerUpdate, rules: &Rules) -> Merged {
    let mut merged = Merged::default();
    for (field, value) in &update.fields {
        let incoming = FieldValue {
            value: value.clone(),
            source: update.source.clone(),
            ts_ms: update.ts_ms,
        };
        match master.fields.get(field) {
            Some(current) if rules.compare(field, &incoming, current) != Ordering::Greater => {
                if incoming != *current {
                    merged.discarded.push(Discarded {
                        field: field.clone(),
                        incoming,
                        kept: current.clone(),
                    });
                }
            }
            current => {
                if current.is_none_or(|c| c.value != incoming.value) {
                    merged.changed.insert(field.clone(), incoming.value.clone());
                }
                merged.provenance_changed = true;
                master.fields.insert(field.clone(), incoming);
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn update(source: &str, ts_ms: i64, fields: Value) -> CustomerUpdate {
        CustomerUpdate {
            customer_id: "C-1".to_owned(),
            source: source.to_owned(),
            ts_ms,
            fields: serde_json::from_value(fields).unwrap(),
        }
    }

    #[test]
    fn the_crm_always_wins_the_phone_and_the_latest_wins_the_email() {
        let rules = Rules::default();
        let mut master = Master::default();
        merge(
            &mut master,
            &update("crm", 100, json!({"phone": "+1 crm", "email": "old@x"})),
            &rules,
        );
        let later = merge(
            &mut master,
            &update("shop", 200, json!({"phone": "+1 shop", "email": "new@x"})),
            &rules,
        );
        assert_eq!(
            master.values()["phone"],
            "+1 crm",
            "the CRM wins the phone even when older"
        );
        assert_eq!(
            master.values()["email"],
            "new@x",
            "the latest wins the email"
        );
        assert_eq!(
            later.changed,
            BTreeMap::from([("email".to_owned(), json!("new@x"))])
        );
        assert_eq!(later.discarded.len(), 1);
        assert_eq!(later.discarded[0].field, "phone");
        assert_eq!(later.discarded[0].kept.source, "crm");
        assert_eq!(master.fields["email"].source, "shop");
        assert_eq!(master.fields["email"].ts_ms, 200);
    }

    #[test]
    fn an_unlisted_source_is_the_fallback_until_a_listed_one_speaks() {
        let rules = Rules::default();
        let mut master = Master::default();
        merge(
            &mut master,
            &update("shop", 300, json!({"tier": "silver"})),
            &rules,
        );
        assert_eq!(master.values()["tier"], "silver");
        merge(
            &mut master,
            &update("crm", 100, json!({"tier": "gold"})),
            &rules,
        );
        assert_eq!(master.values()["tier"], "gold");
    }

    #[test]
    fn a_duplicate_changes_nothing_and_discards_nothing() {
        let rules = Rules::default();
        let mut master = Master::default();
        let u = update("erp", 5, json!({"address": {"city": "Cork"}}));
        merge(&mut master, &u, &rules);
        let again = merge(&mut master, &u, &rules);
        assert_eq!(again, Merged::default());
    }

    #[test]
    fn the_same_value_sent_later_moves_provenance_but_is_no_change() {
        let rules = Rules::default();
        let mut master = Master::default();
        merge(
            &mut master,
            &update("crm", 1, json!({"email": "a@x"})),
            &rules,
        );
        let later = merge(
            &mut master,
            &update("shop", 2, json!({"email": "a@x"})),
            &rules,
        );
        assert!(later.changed.is_empty());
        assert!(later.provenance_changed);
        assert_eq!(master.fields["email"].source, "shop");
    }

    #[test]
    fn rules_read_from_json() {
        let rules: Rules = serde_json::from_value(json!({
            "default": "latest",
            "fields": {"phone": {"priority": ["crm"]}}
        }))
        .unwrap();
        assert_eq!(
            rules.fields["phone"],
            Rule::Priority {
                priority: vec!["crm".to_owned()]
            }
        );
        assert!(serde_json::from_value::<Rules>(json!({"default": "newest"})).is_err());
    }
}
