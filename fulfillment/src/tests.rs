use super::*;

const SAMPLE: &str = include_str!("../../infra/events/shop-order.json");

fn sample() -> Order {
    serde_json::from_str(SAMPLE).unwrap()
}

#[test]
fn the_sample_order_is_valid() {
    sample().validate().unwrap();
}

#[test]
fn an_invalid_order_names_every_problem() {
    let mut order = sample();
    order.lines[0].quantity = 0;
    order.currency = "XYZ".into();
    let error = order.validate().unwrap_err();
    assert_eq!(error.error_type(), "InvalidOrder");
    assert_eq!(error.class(), ErrorClass::Permanent);
    let FulfillmentError::InvalidOrder { problems, .. } = error else {
        unreachable!()
    };
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("quantity 0"));
    assert!(problems[1].contains("the total is 4598 cents but the lines add up to 600"));
    assert!(problems[2].contains("currency \"XYZ\""));

    let mut empty = sample();
    empty.lines.clear();
    empty.total_cents = 0;
    assert!(
        empty
            .validate()
            .unwrap_err()
            .to_string()
            .contains("no lines")
    );
}

#[test]
fn credit_is_the_limit_minus_what_is_owed() {
    let standing = CreditStanding {
        limit_cents: 10_000,
        owed_cents: 6_000,
    };
    standing.check("C-1", 4_000).unwrap();
    let refused = standing.check("C-1", 4_001).unwrap_err();
    assert_eq!(refused.error_type(), "CreditLimitExceeded");
    assert_eq!(
        refused.to_string(),
        "customer C-1 has 4000 cents of credit left; the order needs 4001"
    );
}

#[test]
fn quantities_add_up_lines_of_the_same_sku() {
    let mut order = sample();
    order.lines.push(order.lines[0].clone());
    assert_eq!(order.quantities()["KB-RED-01"], 4);
}

#[test]
fn orders_above_the_threshold_need_approval_and_the_credit_check_still_applies() {
    let policy = ApprovalPolicy {
        threshold_cents: 4_000,
        timeout_seconds: 30,
    };
    let order = sample();
    let plenty = CreditStanding {
        limit_cents: 100_000,
        owed_cents: 1_000,
    };
    let decision = policy.decide(&order, &plenty).unwrap();
    assert!(decision.approval_required, "4598 > 4000");
    assert_eq!(decision.available_cents, 99_000);
    assert_eq!(decision.approval_timeout_seconds, 30);

    let lenient = ApprovalPolicy {
        threshold_cents: order.total_cents,
        ..policy
    };
    assert!(
        !lenient.decide(&order, &plenty).unwrap().approval_required,
        "at the threshold is not above it"
    );

    let short = CreditStanding {
        limit_cents: 5_000,
        owed_cents: 1_000,
    };
    assert_eq!(
        policy.decide(&order, &short).unwrap_err().error_type(),
        "CreditLimitExceeded"
    );
}

#[test]
fn the_approval_policy_reads_its_variables_and_defaults_to_a_day() {
    let env = [("APPROVAL_THRESHOLD_CENTS", "100")];
    let policy = ApprovalPolicy::from_env(&env).unwrap();
    assert_eq!(policy.threshold_cents, 100);
    assert_eq!(policy.timeout_seconds, 86_400);
    let bad = [("APPROVAL_TIMEOUT_SECONDS", "soon")];
    assert!(
        ApprovalPolicy::from_env(&bad)
            .unwrap_err()
            .to_string()
            .contains("APPROVAL_TIMEOUT_SECONDS")
    );
}
