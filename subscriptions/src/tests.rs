use std::time::Duration;

use busline::error::{Classify, ErrorClass};
use chrono::NaiveDate;
use proptest::prelude::*;
use serde_json::json;

use super::*;

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn period(text: &str) -> Period {
    text.parse().unwrap()
}

fn new_subscription(starts_on: NaiveDate) -> NewSubscription {
    NewSubscription {
        subscription_id: "sub-1".to_owned(),
        customer_id: "cust-1".to_owned(),
        plan: "espresso-monthly".to_owned(),
        price_cents: 1_950,
        currency: "EUR".to_owned(),
        payment_method: "pm_card_visa".to_owned(),
        starts_on,
    }
}

fn subscription(starts_on: NaiveDate) -> Subscription {
    Subscription::create(new_subscription(starts_on)).unwrap()
}

#[test]
fn a_period_is_written_year_dash_month_and_names_its_run() {
    let december = period("2026-12");
    assert_eq!(december.to_string(), "2026-12");
    assert_eq!(december.run_name(), "renewal-2026-12");
    assert_eq!(december.next(), period("2027-01"));
    assert_eq!(december.first_day(), date(2026, 12, 1));
    assert_eq!(december.last_day(), date(2026, 12, 31));
    assert_eq!(Period::of(date(2026, 12, 24)), december);
    assert_eq!(
        serde_json::to_value(december).unwrap(),
        json!("2026-12"),
        "stored and published as its text"
    );
    for bad in [
        "2026-13",
        "2026-00",
        "2026-1",
        "26-12",
        "2026/12",
        "1999-12",
        "",
        "2026-12-01",
    ] {
        let error = bad.parse::<Period>().unwrap_err();
        assert!(error.to_string().contains("YYYY-MM"), "{bad}: {error}");
    }
}

#[test]
fn the_anchor_day_holds_through_short_months() {
    assert_eq!(period("2027-02").day(31), date(2027, 2, 28));
    assert_eq!(period("2028-02").day(31), date(2028, 2, 29), "a leap year");
    assert_eq!(
        period("2027-03").day(31),
        date(2027, 3, 31),
        "back to the 31st"
    );
    assert_eq!(period("2027-04").day(31), date(2027, 4, 30));
    assert_eq!(period("2027-04").day(1), date(2027, 4, 1));

    let mut sub = subscription(date(2027, 1, 31));
    assert!(sub.renewed(period("2027-01")));
    assert_eq!(sub.next_renewal, date(2027, 2, 28));
    assert!(sub.renewed(period("2027-02")));
    assert_eq!(
        sub.next_renewal,
        date(2027, 3, 31),
        "the anchor did not drift to the 28th"
    );
}

#[test]
fn a_new_subscription_lists_every_problem_and_never_takes_a_card_number() {
    let bad = NewSubscription {
        subscription_id: "sub 1/../x".to_owned(),
        customer_id: " ".to_owned(),
        plan: String::new(),
        price_cents: -5,
        currency: "XYZ".to_owned(),
        payment_method: "4111 1111 1111 1111".to_owned(),
        starts_on: date(2026, 12, 1),
    };
    let error = Subscription::create(bad).unwrap_err();
    let SubscriptionError::Invalid { problems, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(problems.len(), 6, "{problems:#?}");
    assert!(error.to_string().contains("card number"), "{error}");
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert_eq!(error.error_type(), "InvalidSubscription");

    let long_id = NewSubscription {
        subscription_id: "s".repeat(MAX_ID_LEN + 1),
        ..new_subscription(date(2026, 12, 1))
    };
    assert!(Subscription::create(long_id).is_err());
    let sub = subscription(date(2026, 12, 15));
    assert_eq!((sub.status, sub.anchor_day), (Status::Active, 15));
    assert_eq!(sub.next_renewal, date(2026, 12, 15));
}

#[test]
fn a_due_subscription_is_charged_once_per_period_under_its_key() {
    let mut sub = subscription(date(2026, 12, 1));
    let Renewal::Charge(charge) = sub.renewal(period("2026-12")) else {
        panic!("due in its first month");
    };
    assert_eq!(charge.idempotency_key, "sub-1:2026-12");
    assert_eq!(
        (charge.amount_cents, charge.currency.as_str()),
        (1_950, "EUR")
    );
    assert_eq!(charge.attempt, 0);

    assert!(sub.renewed(period("2026-12")));
    assert!(!sub.renewed(period("2026-12")), "a repeat changes nothing");
    assert_eq!(sub.next_renewal, date(2027, 1, 1), "advanced once");
    assert_eq!(
        sub.renewal(period("2026-12")),
        Renewal::Skip(Skip::AlreadyRenewed {
            through: period("2026-12")
        }),
        "the same period's run started again charges no one"
    );
    assert!(matches!(
        sub.renewal(period("2027-01")),
        Renewal::Charge(Charge { ref idempotency_key, .. }) if idempotency_key == "sub-1:2027-01"
    ));
}

#[test]
fn a_subscription_not_yet_due_is_skipped() {
    let sub = subscription(date(2027, 1, 5));
    assert_eq!(
        sub.renewal(period("2026-12")),
        Renewal::Skip(Skip::NotDue {
            next_renewal: date(2027, 1, 5)
        })
    );
}

#[test]
fn a_decline_makes_it_past_due_and_dunning_retries_under_keys_of_their_own() {
    let mut sub = subscription(date(2026, 12, 1));
    let december = period("2026-12");
    assert!(sub.declined(december));
    assert!(
        !sub.declined(december),
        "only the first decline starts dunning"
    );
    assert_eq!((sub.status, sub.unpaid), (Status::PastDue, Some(december)));
    assert_eq!(
        sub.renewal(december),
        Renewal::Skip(Skip::PastDue { unpaid: december }),
        "the run leaves it to dunning"
    );
    let keys: Vec<String> = (0..4)
        .map(|n| sub.charge(december, n).idempotency_key)
        .collect();
    assert_eq!(
        keys,
        [
            "sub-1:2026-12",
            "sub-1:2026-12:1",
            "sub-1:2026-12:2",
            "sub-1:2026-12:3"
        ]
    );

    assert!(sub.renewed(december), "a retry succeeded");
    assert_eq!((sub.status, sub.unpaid), (Status::Active, None));
    assert_eq!(sub.next_renewal, date(2027, 1, 1));
    assert!(
        !sub.suspend(december),
        "nothing to suspend after it recovered"
    );
    assert!(
        !sub.declined(december),
        "a late decline of a paid period changes nothing"
    );
}

#[test]
fn dunning_that_runs_out_suspends_it_and_the_run_skips_it_after() {
    let mut sub = subscription(date(2026, 12, 1));
    let december = period("2026-12");
    sub.declined(december);
    assert!(
        !sub.suspend(period("2027-01")),
        "only for the unpaid period"
    );
    assert!(sub.suspend(december));
    assert_eq!(sub.status, Status::Suspended);
    assert_eq!(
        sub.renewal(period("2027-01")),
        Renewal::Skip(Skip::Suspended)
    );
}

#[test]
fn a_cancellation_stops_renewals_and_dunning_and_takes_no_change() {
    let mut sub = subscription(date(2026, 12, 1));
    let december = period("2026-12");
    sub.declined(december);
    sub.cancel();
    assert!(
        !sub.suspend(december),
        "cancelled while dunning: nothing to suspend"
    );
    assert_eq!(sub.renewal(december), Renewal::Skip(Skip::Cancelled));
    assert_eq!(
        sub.renewal(period("2027-01")),
        Renewal::Skip(Skip::Cancelled)
    );
    let error = sub
        .change(Change {
            plan: Some("lungo".to_owned()),
            ..Change::default()
        })
        .unwrap_err();
    assert_eq!(error.error_type(), "SubscriptionChangeRefused");
    assert!(error.to_string().contains("CANCELLED"), "{error}");
    assert!(
        sub.renewed(december),
        "a charge that went through all the same is recorded"
    );
    assert_eq!(sub.status, Status::Cancelled, "and it stays cancelled");
}

#[test]
fn a_change_applies_from_the_next_renewal_and_is_checked() {
    let mut sub = subscription(date(2026, 12, 1));
    sub.change(Change {
        price_cents: Some(2_450),
        payment_method: Some("pm_new".to_owned()),
        ..Change::default()
    })
    .unwrap();
    let Renewal::Charge(charge) = sub.renewal(period("2026-12")) else {
        panic!("due");
    };
    assert_eq!(
        (charge.amount_cents, charge.payment_method.as_str()),
        (2_450, "pm_new")
    );
    assert_eq!(sub.plan, "espresso-monthly", "untouched");
    let error = sub
        .change(Change {
            currency: Some("eur".to_owned()),
            payment_method: Some("5555-5555-5555-4444".to_owned()),
            ..Change::default()
        })
        .unwrap_err();
    let SubscriptionError::Invalid { problems, .. } = error else {
        panic!("{error:?}");
    };
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(
        sub.payment_method, "pm_new",
        "a refused change changes nothing"
    );
}

#[test]
fn a_subscription_is_stored_with_its_status_in_capitals() {
    let mut sub = subscription(date(2026, 12, 1));
    sub.declined(period("2026-12"));
    let stored = serde_json::to_value(&sub).unwrap();
    assert_eq!(stored["status"], "PAST_DUE");
    assert_eq!(stored["unpaid"], "2026-12");
    assert_eq!(serde_json::from_value::<Subscription>(stored).unwrap(), sub);
}

#[test]
fn dunning_retries_on_days_one_three_and_seven_then_suspends() {
    let schedule = DunningSchedule::default();
    let day = 24 * 3600;
    assert_eq!(
        schedule.after_decline(0),
        DunningNext::Retry {
            attempt: 1,
            wait_seconds: day
        }
    );
    assert_eq!(
        schedule.after_decline(1),
        DunningNext::Retry {
            attempt: 2,
            wait_seconds: 2 * day
        }
    );
    assert_eq!(
        schedule.after_decline(2),
        DunningNext::Retry {
            attempt: 3,
            wait_seconds: 4 * day
        }
    );
    assert_eq!(schedule.after_decline(3), DunningNext::Suspend);
    assert_eq!(schedule.after_decline(9), DunningNext::Suspend);
    let offsets: Vec<u64> = schedule
        .attempts()
        .map(|a| a.after.as_secs() / day)
        .collect();
    assert_eq!(offsets, [1, 3, 7]);
}

#[test]
fn a_schedule_is_written_as_offsets_with_units() {
    let local: DunningSchedule = "5s, 10s,20s".parse().unwrap();
    assert_eq!(
        local.attempts().map(|a| a.after).collect::<Vec<_>>(),
        [5, 10, 20].map(Duration::from_secs)
    );
    assert_eq!(
        "1d,3d,7d".parse::<DunningSchedule>().unwrap(),
        DunningSchedule::default()
    );
    assert_eq!(
        "90m,2h"
            .parse::<DunningSchedule>()
            .unwrap()
            .after_decline(1),
        DunningNext::Retry {
            attempt: 2,
            wait_seconds: 1800
        }
    );
    for bad in [
        "",
        "3d,1d",
        "1d,1d",
        "1x",
        "0s",
        "61d",
        "d",
        "-1d",
        "1.5d",
        "1d,,2d",
        "1,2,3,4,5,6,7,8,9,10,11",
    ] {
        let error = bad.parse::<DunningSchedule>().unwrap_err();
        assert!(
            error.to_string().contains("such as 1d,3d,7d"),
            "{bad}: {error}"
        );
    }
    let eleven = (1..=11)
        .map(|n| format!("{n}d"))
        .collect::<Vec<_>>()
        .join(",");
    assert!(eleven.parse::<DunningSchedule>().is_err());
}

/// What the store may see happen to one subscription over a few periods, in any order.
#[derive(Clone, Debug)]
enum Outcome {
    Renewed(u32),
    Declined(u32),
    Suspended(u32),
    Cancelled,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        (0..4u32).prop_map(Outcome::Renewed),
        (0..4u32).prop_map(Outcome::Declined),
        (0..4u32).prop_map(Outcome::Suspended),
        Just(Outcome::Cancelled),
    ]
}

proptest! {
    /// Whatever arrives, in whatever order and however often: a period is recorded as renewed at
    /// most once, `renewed_through` never goes back, and a paid period is never charged again.
    #[test]
    fn a_period_is_paid_for_at_most_once(outcomes in proptest::collection::vec(outcome(), 0..40)) {
        let mut sub = subscription(date(2026, 12, 1));
        let nth = |n: u32| (0..n).fold(period("2026-12"), |p, _| p.next());
        let mut renewals = std::collections::HashMap::new();
        for outcome in outcomes {
            let before = sub.renewed_through;
            match outcome {
                Outcome::Renewed(n) => {
                    if sub.renewed(nth(n)) {
                        *renewals.entry(n).or_insert(0) += 1;
                    }
                }
                Outcome::Declined(n) => {
                    sub.declined(nth(n));
                }
                Outcome::Suspended(n) => {
                    sub.suspend(nth(n));
                }
                Outcome::Cancelled => sub.cancel(),
            }
            prop_assert!(sub.renewed_through >= before);
            if let Some(through) = sub.renewed_through {
                prop_assert!(
                    !matches!(sub.renewal(through), Renewal::Charge(_)),
                    "a paid period is charged again"
                );
            }
        }
        prop_assert!(renewals.values().all(|&n| n == 1), "{renewals:?}");
    }
}

#[test]
fn the_run_report_counts_every_outcome_and_totals_per_currency() {
    let mut report = RunReport::new(period("2026-12"));
    let renewed = |cents, currency: &str| ItemOutcome::Renewed {
        amount_cents: cents,
        currency: currency.to_owned(),
    };
    for outcome in [
        renewed(1_950, "EUR"),
        renewed(2_450, "EUR"),
        renewed(1_500, "USD"),
        ItemOutcome::Declined,
        ItemOutcome::Failed {
            error_type: "PaymentsUnavailable".to_owned(),
        },
        ItemOutcome::Skipped(Skip::Cancelled),
    ] {
        report.add(&outcome);
    }
    let mut other = RunReport::new(period("2026-12"));
    other.add(&renewed(50, "USD"));
    other.add(&ItemOutcome::Skipped(Skip::Suspended));
    report.merge(&other);
    assert_eq!(
        (
            report.renewed,
            report.declined,
            report.failed,
            report.skipped
        ),
        (4, 1, 1, 2)
    );
    assert_eq!(report.total(), 8);
    assert_eq!(
        serde_json::to_value(&report).unwrap()["charged_cents"],
        json!({"EUR": 4_400, "USD": 1_550})
    );
}
