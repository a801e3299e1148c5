//! Observability on the deployed stack (LocalStack):
//! - one order, from a signed webhook that carries the sender's `traceparent`, through translate,
//!   enrich, the saga's steps and the customer's notice, is one trace: every hop's log lines carry
//!   its trace id and correlation id, and every hop's parent is a hop of the same trace (or the
//!   sender's span); each hop wrote its metrics record (its latencies, under the dimensions the
//!   dashboard and alarms read); the email API is called with the trace too;
//! - a poisoned message lands in a dead-letter queue and makes the metric that queue's alarm
//!   watches non-zero in LocalStack's CloudWatch.
//!
//! One binary, as the first test holds the email API's port (8025) for its stub.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use busline::telemetry::TraceContext;
use busline_tests::saga::{FORWARD_STEPS, Scenario};
use busline_tests::trace::journey;
use busline_tests::{DeployedStack, PATIENCE, function_log_events, localstack, signed_headers};
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const FINISH: Duration = Duration::from_secs(90);
const EMAIL_API: &str = "127.0.0.1:8025";

#[tokio::test]
async fn one_order_is_one_trace_from_the_webhook_through_the_saga_to_the_customers_email() {
    let aws = localstack().await.unwrap();
    let listener =
        std::net::TcpListener::bind(EMAIL_API).expect("port 8025 is free for the stub email API");
    let emails = MockServer::builder().listener(listener).start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&emails)
        .await;

    // The notice is the last hop; the logs reach CloudWatch as each invocation ends.
    let wanted = [
        "ingest-webhook",
        "translate",
        "enrich",
        "validate-order",
        "notify-customer",
    ];

    let scenario = Scenario::new(&aws, 1_000_000, false, 0).await.unwrap();
    let stack = scenario.stack().clone();
    let secret = stack.secret(&aws, "ShopWebhookSecretArn").await.unwrap();
    let body = scenario.webhook_body().unwrap();
    let order_id = scenario.order.order_id.clone();
    // The sender's trace: a new one, so no other order (of an earlier run) shares it.
    let sender = TraceContext::root();
    let correlation_id = format!("obs-{order_id}");
    let mut headers = signed_headers(&secret, &body, &format!("obs-{order_id}"));
    headers.push(("traceparent".into(), sender.traceparent()));
    headers.push(("X-Correlation-Id".into(), correlation_id.clone()));
    let (status, answer) = stack
        .post_webhook("/webhooks/shop", &body, &headers)
        .await
        .unwrap();
    assert_eq!(status, 202, "{answer}");
    let finished = scenario.finished(FINISH).await.unwrap();
    assert_eq!(finished.output["status"], "FULFILLED", "{finished:?}");

    // Every hop's lines, or what was missing: in three CI runs (December 2026) one hop's lines
    // never reached CloudWatch because the process executor lost them (a 2 ms grace for its
    // reader, then `select` on descriptors above 1023; both fixed, see its tests). This is the
    // test that saw it, so it gets one order and no second chance.
    let journey = match logged_journey(&aws, &correlation_id, &order_id, &wanted).await {
        Ok(journey) => journey,
        Err(why) => panic!("{why}"),
    };

    // One trace, the sender's, and one correlation id on every line of every hop.
    assert_eq!(
        journey.traces.iter().collect::<Vec<_>>(),
        [&sender.trace_id],
        "the order's hops are in one trace, the sender's"
    );
    for line in &journey.lines {
        assert_eq!(
            line.hop("trace_id"),
            Some(sender.trace_id.as_str()),
            "{}",
            line.line
        );
        assert_eq!(
            line.hop("correlation_id"),
            Some(correlation_id.as_str()),
            "{}",
            line.line
        );
    }

    // Parent and child: every hop continues a span of the trace, and only ingest continues the
    // sender's.
    let hops = journey.hops();
    let spans: HashMap<&str, &str> = hops
        .iter()
        .map(|h| (h[0].hop("span_id").unwrap(), h[0].function.as_str()))
        .collect();
    assert_eq!(spans.len(), hops.len(), "span ids are unique");
    let parent_of = |function: &str| -> Vec<&str> {
        hops.iter()
            .filter(|h| h[0].function == function)
            .map(|h| {
                let parent = h[0].hop("parent_id").expect("every hop has a parent");
                if parent == sender.span_id {
                    "sender"
                } else {
                    spans.get(parent).copied().unwrap_or_else(|| {
                        panic!("{function}'s parent {parent} is no span of the trace")
                    })
                }
            })
            .collect()
    };
    assert_eq!(parent_of("ingest-webhook"), ["sender"]);
    assert_eq!(parent_of("translate"), ["ingest-webhook"]);
    assert_eq!(parent_of("enrich"), ["translate"]);
    for step in FORWARD_STEPS {
        assert_eq!(parent_of(step), ["enrich"], "{step}");
    }
    // order.fulfilled is published by the state machine with the saga's trace.
    assert_eq!(parent_of("notify-customer"), ["enrich"]);
    for hop in &hops {
        let parent = hop[0].hop("parent_id").unwrap();
        assert!(parent == sender.span_id || spans.contains_key(parent));
    }

    // Every hop but ingest's (which reports its own `IngestTime`) wrote one metrics record naming
    // its span: its latencies, under its deployed function's name and its event's type (the
    // dimensions the dashboard and the saga failure-rate alarm read). LocalStack keeps EMF as log
    // lines, so they are read there.
    let mut records: HashMap<String, Value> = HashMap::new();
    let functions: HashSet<&str> = hops.iter().map(|h| h[0].function.as_str()).collect();
    for function in functions {
        let deployed = format!("{}-{function}", DeployedStack::NAME);
        for (_, line) in function_log_events(&aws, &deployed).await.unwrap() {
            if let Ok(record) = serde_json::from_str::<Value>(&line)
                && record["TraceId"] == sender.trace_id.as_str()
                && let Some(span) = record["SpanId"].as_str()
            {
                records.insert(span.to_owned(), record);
            }
        }
    }
    for hop in hops.iter().filter(|h| h[0].function != "ingest-webhook") {
        let (function, span) = (&hop[0].function, hop[0].hop("span_id").unwrap());
        let record = records
            .get(span)
            .unwrap_or_else(|| panic!("no metrics record for {function}'s hop {span}"));
        assert_eq!(
            record["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "busline"
        );
        assert_eq!(
            record["Function"],
            format!("{}-{function}", DeployedStack::NAME)
        );
        assert_eq!(record["EventType"].as_str(), hop[0].hop("event_type"));
        assert_eq!(record["Handled"], 1.0, "{record}");
        assert!(record["ProcessingTime"].as_f64().is_some(), "{record}");
        if ["translate", "enrich", "notify-customer", "audit-trail"].contains(&function.as_str()) {
            assert!(record["TransportLatency"].as_f64().is_some(), "{record}");
        }
        if function == "audit-trail" {
            assert!(record["MessageAge"].as_f64().is_some(), "{record}");
        }
    }

    // The email API was asked with the notice's span as the parent.
    let requests = emails.received_requests().await.unwrap_or_default();
    let notice = requests
        .iter()
        .find(|r| String::from_utf8_lossy(&r.body).contains(&order_id))
        .expect("the email API was called for the order");
    let traceparent = notice.headers["traceparent"].to_str().unwrap();
    let called_with = TraceContext::parse(traceparent).unwrap();
    assert_eq!(called_with.trace_id, sender.trace_id);
    assert_eq!(
        spans.get(called_with.span_id.as_str()),
        Some(&"notify-customer")
    );
}

#[tokio::test]
async fn a_poisoned_message_makes_the_dead_letter_alarms_metric_non_zero() {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&aws);
    let dlq_url = stack.output("PlacedOrdersDeadLetterQueueUrl").unwrap();
    let dlq_name = dlq_url.rsplit('/').next().unwrap().to_owned();

    // The alarm watches exactly this queue's depth, above zero.
    let alarm = cloudwatch
        .describe_alarms()
        .alarm_names(format!(
            "{}-PlacedOrdersDeadLetterQueue-not-empty",
            DeployedStack::NAME
        ))
        .send()
        .await
        .unwrap()
        .metric_alarms()[0]
        .clone();
    assert_eq!(alarm.namespace(), Some("AWS/SQS"));
    assert_eq!(
        alarm.metric_name(),
        Some("ApproximateNumberOfMessagesVisible")
    );
    assert_eq!(alarm.dimensions()[0].value(), Some(dlq_name.as_str()));
    assert_eq!(alarm.threshold(), Some(0.0));
    assert!(
        !alarm.alarm_actions().is_empty(),
        "the alarm notifies the topic"
    );

    // Empty first, and seen empty, so the non-zero reading below can only be this test's letter.
    sqs.purge_queue().queue_url(dlq_url).send().await.unwrap();
    let depth_since = async |since: aws_smithy_types::DateTime| -> Vec<f64> {
        let out = cloudwatch
            .get_metric_statistics()
            .namespace("AWS/SQS")
            .metric_name("ApproximateNumberOfMessagesVisible")
            .dimensions(
                Dimension::builder()
                    .name("QueueName")
                    .value(&dlq_name)
                    .build(),
            )
            .start_time(since)
            .end_time(aws_smithy_types::DateTime::from_secs(
                chrono::Utc::now().timestamp() + 60,
            ))
            .period(1)
            .statistics(Statistic::Maximum)
            .send()
            .await
            .unwrap();
        out.datapoints()
            .iter()
            .filter(|d| d.timestamp().is_some_and(|t| t.secs() >= since.secs()))
            .filter_map(|d| d.maximum())
            .collect()
    };
    let wait_for = async |since: aws_smithy_types::DateTime, wanted: fn(f64) -> bool| {
        let started = Instant::now();
        loop {
            let seen = depth_since(since).await;
            if seen.iter().any(|v| wanted(*v)) {
                return seen;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the queue's depth metric since {since}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let purged = aws_smithy_types::DateTime::from_secs(chrono::Utc::now().timestamp() + 1);
    wait_for(purged, |v| v == 0.0).await;

    let poisoned = aws_smithy_types::DateTime::from_secs(chrono::Utc::now().timestamp() + 1);
    sqs.send_message()
        .queue_url(stack.output("PlacedOrdersQueueUrl").unwrap())
        .message_body("{\"this\": \"is not an EventBridge event\"}")
        .send()
        .await
        .unwrap();
    let seen = wait_for(poisoned, |v| v >= 1.0).await;
    assert!(seen.iter().any(|v| *v >= 1.0), "{seen:?}");
}

/// The journey of the order with `correlation_id` once every `wanted` hop has logged its end
/// (ingest: any line), or what was missing after [`PATIENCE`].
async fn logged_journey(
    aws: &aws_config::SdkConfig,
    correlation_id: &str,
    order_id: &str,
    wanted: &[&str],
) -> Result<busline_tests::trace::Journey, String> {
    let started = Instant::now();
    loop {
        // By the sender's correlation id, which every hop carries whatever its trace: a hop that
        // lost the trace shows up below as a second trace instead of as a hop that never ended.
        let journey = journey(aws, correlation_id).await.unwrap();
        let ended: HashSet<&str> = journey
            .lines
            .iter()
            .filter(|l| l.is_end() || l.function == "ingest-webhook")
            .map(|l| l.function.as_str())
            .collect();
        if wanted.iter().all(|f| ended.contains(f)) {
            return Ok(journey);
        }
        if started.elapsed() >= PATIENCE {
            // What each missing hop did log, and what its function logged in all (CloudWatch).
            let mut missing = Vec::new();
            for function in wanted.iter().filter(|f| !ended.contains(*f)) {
                let mine: Vec<&str> = journey
                    .lines
                    .iter()
                    .filter(|l| l.function == *function)
                    .map(|l| l.message())
                    .collect();
                let deployed = format!("{}-{function}", DeployedStack::NAME);
                let all = function_log_events(aws, &deployed).await.unwrap();
                let naming = all.iter().filter(|(_, l)| l.contains(order_id)).count();
                missing.push(format!(
                    "{function}: this order's hop lines {mine:?}; {} lines in its log group, {naming} naming the order",
                    all.len()
                ));
            }
            return Err(format!(
                "hops logged so far: {ended:?}, want {wanted:?}; traces {:?}; {}",
                journey.traces,
                missing.join("; ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
