//! A subscription, its status, the changes its owner makes, and what renewing it means.

use busline::canonical::CURRENCIES;
use busline::error::{Classify, ErrorClass};
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::period::Period;

/// The longest subscription id: the dunning run is named `dunning-<id>-<YYYY-MM>`, and a Step
/// Functions execution name holds at most 80 characters.
pub const MAX_ID_LEN: usize = 48;

/// The most a subscription may cost per period, in minor units: a typo guard, not a business rule.
const MAX_PRICE_CENTS: i64 = 100_000_000;

/// Where a subscription stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Paid up; renewed on its next renewal date.
    Active,
    /// A renewal's charge was declined; dunning is retrying it.
    PastDue,
    /// Dunning gave up; not renewed until the customer pays.
    Suspended,
    /// Ended by its owner; never charged again.
    Cancelled,
}

impl Status {
    /// The status as stored and published (`PAST_DUE`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::PastDue => "PAST_DUE",
            Self::Suspended => "SUSPENDED",
            Self::Cancelled => "CANCELLED",
        }
    }
}

/// A new subscription, as the subscriptions system creates it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSubscription {
    /// The subscriptions system's id: letters, digits, `-` and `_`, at most [`MAX_ID_LEN`].
    pub subscription_id: String,
    /// Whose it is.
    pub customer_id: String,
    /// The plan's name, which decides the loyalty points and the shipment.
    pub plan: String,
    /// What one period costs, in the currency's minor unit (cents).
    pub price_cents: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The payment provider's reference for the card (`pm_…`), never a card number.
    pub payment_method: String,
    /// The first renewal; its day of the month is the subscription's anchor day.
    pub starts_on: NaiveDate,
}

/// A subscription, as the subscription store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The subscriptions system's id.
    pub subscription_id: String,
    /// Whose it is.
    pub customer_id: String,
    /// The plan's name.
    pub plan: String,
    /// What one period costs, in the currency's minor unit (cents).
    pub price_cents: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The payment provider's reference for the card.
    pub payment_method: String,
    /// The day of the month it renews on (1 to 31; a shorter month renews on its last day).
    pub anchor_day: u32,
    /// The date of the next renewal.
    pub next_renewal: NaiveDate,
    /// Where it stands.
    pub status: Status,
    /// The last period paid for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed_through: Option<Period>,
    /// While `PAST_DUE` or `SUSPENDED`: the period whose charge was declined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpaid: Option<Period>,
}

/// What the owner changes; `None` leaves a field as it is. A change applies from the next renewal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Another plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Another price, in minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_cents: Option<i64>,
    /// Another currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Another card: resumes a dunning run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
}

/// What the renewal run does with a subscription for a period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Renewal {
    /// Charge it.
    Charge(Charge),
    /// Leave it, and why.
    Skip(Skip),
}

/// One charge of a subscription for a period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// Whose charge.
    pub subscription_id: String,
    /// The customer charged.
    pub customer_id: String,
    /// The period paid for.
    pub period: Period,
    /// 0 for the renewal run's charge, 1 and on for dunning's retries.
    pub attempt: u32,
    /// The payment gateway's `Idempotency-Key`: `<subscription>:<period>` for the renewal run,
    /// `<subscription>:<period>:<attempt>` for a retry. A repeat of the same attempt (the run
    /// started twice, a redriven item, a crash after the charge) gets the gateway's first answer.
    pub idempotency_key: String,
    /// The amount, in minor units.
    pub amount_cents: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The card's reference.
    pub payment_method: String,
}

/// Why the renewal run leaves a subscription alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Skip {
    /// Ended by its owner.
    Cancelled,
    /// Dunning gave up on it.
    Suspended,
    /// Dunning is retrying an earlier period's charge.
    PastDue {
        /// The unpaid period.
        unpaid: Period,
    },
    /// Its next renewal is after the period.
    NotDue {
        /// When it is due.
        next_renewal: NaiveDate,
    },
    /// The period is paid for already (a second run, or a redriven item after the charge).
    AlreadyRenewed {
        /// The last period paid for.
        through: Period,
    },
}

/// Why a subscription cannot be made or changed so. Permanent: the input or the order of events
/// must change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// The subscription's fields are not acceptable; every problem is listed.
    #[error("subscription {subscription_id:?} is invalid: {}", problems.join("; "))]
    Invalid {
        /// The id as given.
        subscription_id: String,
        /// What is wrong, each a sentence.
        problems: Vec<String>,
    },
    /// The change is not possible in the subscription's status.
    #[error("subscription {subscription_id} is {}: it cannot be {action}", status.as_str())]
    Refused {
        /// Whose change.
        subscription_id: String,
        /// Where it stands.
        status: Status,
        /// What was asked, as a past participle (`changed`).
        action: &'static str,
    },
}

impl Classify for SubscriptionError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "InvalidSubscription",
            Self::Refused { .. } => "SubscriptionChangeRefused",
        }
    }
}

impl Subscription {
    /// A new subscription, `ACTIVE`, first renewing on `starts_on`, or every problem with it.
    pub fn create(new: NewSubscription) -> Result<Self, SubscriptionError> {
        let mut problems = Vec::new();
        check_id(&new.subscription_id, &mut problems);
        check_text("customer_id", &new.customer_id, 128, &mut problems);
        check_text("plan", &new.plan, 64, &mut problems);
        check_price(new.price_cents, &mut problems);
        check_currency(&new.currency, &mut problems);
        check_payment_method(&new.payment_method, &mut problems);
        if !problems.is_empty() {
            return Err(SubscriptionError::Invalid {
                subscription_id: new.subscription_id,
                problems,
            });
        }
        Ok(Self {
            anchor_day: new.starts_on.day(),
            next_renewal: new.starts_on,
            subscription_id: new.subscription_id,
            customer_id: new.customer_id,
            plan: new.plan,
            price_cents: new.price_cents,
            currency: new.currency,
            payment_method: new.payment_method,
            status: Status::Active,
            renewed_through: None,
            unpaid: None,
        })
    }

    /// Applies the owner's change, from the next renewal on. A cancelled subscription takes none.
    pub fn change(&mut self, change: Change) -> Result<(), SubscriptionError> {
        self.refuse_if_cancelled("changed")?;
        let mut problems = Vec::new();
        if let Some(plan) = &change.plan {
            check_text("plan", plan, 64, &mut problems);
        }
        if let Some(price) = change.price_cents {
            check_price(price, &mut problems);
        }
        if let Some(currency) = &change.currency {
            check_currency(currency, &mut problems);
        }
        if let Some(method) = &change.payment_method {
            check_payment_method(method, &mut problems);
        }
        if !problems.is_empty() {
            return Err(SubscriptionError::Invalid {
                subscription_id: self.subscription_id.clone(),
                problems,
            });
        }
        let Change {
            plan,
            price_cents,
            currency,
            payment_method,
        } = change;
        if let Some(plan) = plan {
            self.plan = plan;
        }
        if let Some(price_cents) = price_cents {
            self.price_cents = price_cents;
        }
        if let Some(currency) = currency {
            self.currency = currency;
        }
        if let Some(payment_method) = payment_method {
            self.payment_method = payment_method;
        }
        Ok(())
    }

    /// Ends it: never charged again. Cancelling twice changes nothing.
    pub fn cancel(&mut self) {
        self.status = Status::Cancelled;
    }

    /// What the renewal run for `period` does with it.
    pub fn renewal(&self, period: Period) -> Renewal {
        let skip = match self.status {
            Status::Cancelled => Some(Skip::Cancelled),
            Status::Suspended => Some(Skip::Suspended),
            Status::PastDue => Some(Skip::PastDue {
                unpaid: self.unpaid.unwrap_or(period),
            }),
            Status::Active => match self.renewed_through {
                Some(through) if through >= period => Some(Skip::AlreadyRenewed { through }),
                _ if self.next_renewal > period.last_day() => Some(Skip::NotDue {
                    next_renewal: self.next_renewal,
                }),
                _ => None,
            },
        };
        match skip {
            Some(skip) => Renewal::Skip(skip),
            None => Renewal::Charge(self.charge(period, 0)),
        }
    }

    /// The charge for `period`'s `attempt` (0: the renewal run's; 1 and on: dunning's retries).
    pub fn charge(&self, period: Period, attempt: u32) -> Charge {
        let idempotency_key = match attempt {
            0 => format!("{}:{period}", self.subscription_id),
            n => format!("{}:{period}:{n}", self.subscription_id),
        };
        Charge {
            subscription_id: self.subscription_id.clone(),
            customer_id: self.customer_id.clone(),
            period,
            attempt,
            idempotency_key,
            amount_cents: self.price_cents,
            currency: self.currency.clone(),
            payment_method: self.payment_method.clone(),
        }
    }

    /// Records that `period` was paid for: `ACTIVE` again (a cancelled subscription stays
    /// cancelled), renewing next in the month after `period`. False when it already was: a repeat
    /// changes nothing.
    pub fn renewed(&mut self, period: Period) -> bool {
        if self
            .renewed_through
            .is_some_and(|through| through >= period)
        {
            return false;
        }
        self.renewed_through = Some(period);
        self.next_renewal = period.next().day(self.anchor_day);
        self.unpaid = None;
        if self.status != Status::Cancelled {
            self.status = Status::Active;
        }
        true
    }

    /// Records that `period`'s charge was declined: `PAST_DUE`, and dunning starts. False when
    /// that changes nothing (the period is paid for, it is already past due, suspended or
    /// cancelled): only a change starts dunning.
    pub fn declined(&mut self, period: Period) -> bool {
        let paid = self
            .renewed_through
            .is_some_and(|through| through >= period);
        if paid || self.status != Status::Active {
            return false;
        }
        self.status = Status::PastDue;
        self.unpaid = Some(period);
        true
    }

    /// Records that dunning gave up on `period`: `SUSPENDED`. False when the subscription is no
    /// longer past due for that period (it recovered, or was cancelled meanwhile).
    pub fn suspend(&mut self, period: Period) -> bool {
        if self.status != Status::PastDue || self.unpaid != Some(period) {
            return false;
        }
        self.status = Status::Suspended;
        true
    }

    fn refuse_if_cancelled(&self, action: &'static str) -> Result<(), SubscriptionError> {
        if self.status == Status::Cancelled {
            return Err(SubscriptionError::Refused {
                subscription_id: self.subscription_id.clone(),
                status: self.status,
                action,
            });
        }
        Ok(())
    }
}

fn check_id(id: &str, problems: &mut Vec<String>) {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.chars().all(allowed) {
        problems.push(format!(
            "the subscription id must be 1 to {MAX_ID_LEN} letters, digits, '-' or '_'"
        ));
    }
}

fn check_text(field: &str, value: &str, max: usize, problems: &mut Vec<String>) {
    if value.trim().is_empty() || value.len() > max {
        problems.push(format!("{field} must be 1 to {max} characters"));
    }
}

fn check_price(price_cents: i64, problems: &mut Vec<String>) {
    if !(0..=MAX_PRICE_CENTS).contains(&price_cents) {
        problems.push(format!(
            "the price must be 0 to {MAX_PRICE_CENTS} minor units, not {price_cents}"
        ));
    }
}

fn check_currency(currency: &str, problems: &mut Vec<String>) {
    if !CURRENCIES.contains(&currency) {
        problems.push(format!(
            "currency {currency:?} is not one of {}",
            CURRENCIES.join(", ")
        ));
    }
}

/// A payment method is the provider's reference to a card. Something that looks like a card
/// number (12 to 19 digits, spaces or dashes between) is refused, so none is ever stored.
fn check_payment_method(method: &str, problems: &mut Vec<String>) {
    check_text("payment_method", method, 128, problems);
    let digits = method.chars().filter(char::is_ascii_digit).count();
    let card_like = method
        .chars()
        .all(|c| c.is_ascii_digit() || c == ' ' || c == '-');
    if card_like && (12..=19).contains(&digits) {
        problems.push(
            "payment_method looks like a card number: send the payment provider's reference (such \
             as pm_…); busline never stores card numbers"
                .to_owned(),
        );
    }
}
