use super::*;

const SAMPLE: &str = include_str!("../../../infra/events/shop-order.json");

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
