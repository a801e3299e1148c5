//! The trust boundary of the deployed ingest function, attacked over HTTP through its Function URL
//! on LocalStack, for every signing scheme a source can be on (the stack's `WebhookSchemes`): a
//! replay with the same id, a replay under a fresh id, a signature for another body or another
//! source's path, timestamps either side of the tolerance, two signatures during secret
//! rotation, header names in other cases, fifty concurrent copies of one delivery, and an over-long
//! correlation id. Each case asserts the answer and how many events reached the bus: exactly 0
//! or 1, counted on a queue of the test's own that a rule fills with every event of the run.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::SdkConfig;
use busline::signature::Scheme;
use busline_tests::{
    DeployedStack, Headers, PATIENCE, localstack, receive, signed_headers_as, watch_bus,
};
use serde_json::{Value, json};

const SETTLE: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = PATIENCE;
const TOLERANCE: i64 = busline::signature::DEFAULT_TOLERANCE_SECS as i64;
/// How far from the tolerance's edge the cases sit that the function's later clock could tip
/// across it. The function reads its clock up to one request's latency after the test reads its own,
/// and on a loaded machine that crossed a second boundary: a timestamp of now + tolerance + 1 s
/// was accepted (CI, 2026-12-02). The exact edge, 300 s against 301 s, is the signature unit
/// test's, on an injected clock.
const LATENCY_ALLOWANCE: i64 = 10;

/// A deployed source: ingest's own spec of it (name, subject pointer) and its sample body.
struct Source {
    spec: &'static ingest_webhook::SourceSpec,
    sample: &'static str,
}

/// Every source ingest knows, with its sample from `infra/events/`.
fn sources() -> Vec<Source> {
    ingest_webhook::SOURCES
        .iter()
        .map(|spec| Source {
            spec,
            sample: match spec.name {
                "shop" => include_str!("../../infra/events/shop-order.json"),
                "crm" => include_str!("../../infra/events/crm-customer.json"),
                "marketplace" => include_str!("../../infra/events/marketplace-order.json"),
                "helpdesk" => include_str!("../../infra/events/helpdesk-user.json"),
                "payments" => include_str!("../../infra/events/payments-event.json"),
                other => panic!("no sample for source {other}: add one to infra/events/"),
            },
        })
        .collect()
}

impl Source {
    fn name(&self) -> &'static str {
        self.spec.name
    }

    /// The output with its signing secret's ARN: `ShopWebhookSecretArn` for `shop`.
    fn secret_output(&self) -> String {
        let mut name = self.spec.name.chars();
        let first = name.next().unwrap().to_ascii_uppercase();
        format!("{first}{}WebhookSecretArn", name.as_str())
    }

    /// The sample with `subject` as its subject (and, for Stripe events, an event id of its own).
    fn body(&self, subject: &str) -> String {
        let mut body: Value = serde_json::from_str(self.sample).unwrap();
        *body.pointer_mut(self.spec.subject).unwrap() = json!(subject);
        if self.spec.name == "payments" {
            body["id"] = json!(format!("evt_{}", subject.replace('-', "_")));
        }
        body.to_string()
    }
}

/// One attack: what was sent, the answer expected, and how many events it may put on the bus.
struct Case {
    name: String,
    subject: String,
    status: u16,
    code: Option<&'static str>,
    events: usize,
}

struct Run<'a> {
    stack: &'a DeployedStack,
    scheme: Scheme,
    source: &'a Source,
    secret: String,
    tag: String,
    cases: Vec<Case>,
}

impl Run<'_> {
    fn subject(&self, case: &str) -> String {
        format!("{}-{case}", self.tag)
    }

    fn headers(&self, body: &str, id: &str, at: i64) -> Headers {
        signed_headers_as(self.scheme, &self.secret, body, id, at)
    }

    async fn send(&self, path: &str, body: &str, headers: &Headers) -> (u16, Value) {
        self.stack.post_webhook(path, body, headers).await.unwrap()
    }

    fn path(&self) -> String {
        format!("/webhooks/{}", self.source.name())
    }

    /// Sends and checks the answer at once; the events are counted at the end.
    async fn case(
        &mut self,
        name: &str,
        subject: &str,
        sent: (&str, &str, &Headers),
        expect: (u16, Option<&'static str>, usize),
    ) -> Value {
        let (path, body, headers) = sent;
        let (status, answer) = self.send(path, body, headers).await;
        let (want, code, events) = expect;
        assert_eq!(
            (status, answer["error"].as_str()),
            (want, code),
            "{} {name}: {answer}",
            self.scheme
        );
        self.cases.push(Case {
            name: name.to_owned(),
            subject: subject.to_owned(),
            status,
            code,
            events,
        });
        answer
    }
}

fn swap_id(scheme: Scheme, headers: &Headers, id: &str) -> Headers {
    headers
        .iter()
        .map(|(name, value)| {
            let is_id = name == "webhook-id" || Some(name.as_str()) == scheme.unsigned_id_header();
            (
                name.clone(),
                if is_id { id.to_owned() } else { value.clone() },
            )
        })
        .collect()
}

fn shout(headers: &Headers) -> Headers {
    headers
        .iter()
        .map(|(name, value)| (name.to_ascii_uppercase(), value.clone()))
        .collect()
}

/// The scheme's signature header with `extra` signatures beside the real one, as a sender rotating
/// its secret sends it.
fn with_rotation(scheme: Scheme, headers: &Headers, old: &Headers) -> Headers {
    let header = scheme.signature_header();
    let old_value = &old.iter().find(|(n, _)| n == header).unwrap().1;
    headers
        .iter()
        .map(|(name, value)| {
            if name != header {
                return (name.clone(), value.clone());
            }
            let both = match scheme {
                Scheme::StandardWebhooks => format!("{old_value} {value}"),
                // t=..,v1=<old>,v1=<new>: the same t, two MACs.
                _ => format!("{old_value},{}", value.split_once(',').unwrap().1),
            };
            (name.clone(), both)
        })
        .collect()
}

async fn attack(
    aws: &SdkConfig,
    stack: &DeployedStack,
    source: &Source,
    all: &[Source],
) -> Vec<Case> {
    let scheme = stack.scheme_of(source.name()).unwrap();
    let secret = stack.secret(aws, &source.secret_output()).await.unwrap();
    let tag = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let mut run = Run {
        stack,
        scheme,
        source,
        secret,
        tag,
        cases: Vec::new(),
    };
    let path = run.path();
    let now = || chrono::Utc::now().timestamp();

    // 1. The first delivery, then the very same request again.
    let subject = run.subject("orig");
    let body = source.body(&subject);
    let id = format!("{}-dlv", run.tag);
    let headers = run.headers(&body, &id, now());
    let first = run
        .case(
            "first delivery",
            &subject,
            (&path, &body, &headers),
            (202, None, 1),
        )
        .await;
    assert_eq!(first["duplicate"], false);
    let again = run
        .case(
            "replay, same id",
            &subject,
            (&path, &body, &headers),
            (202, None, 1),
        )
        .await;
    assert_eq!(
        (&again["duplicate"], &again["eventId"]),
        (&json!(true), &first["eventId"])
    );

    // 2. The captured request under a fresh id.
    let fresh = swap_id(scheme, &headers, &format!("{}-fresh", run.tag));
    let expect = match scheme {
        Scheme::StandardWebhooks => (401, Some("bad_signature"), 1),
        Scheme::BuslineV1 => (401, Some("signature_replayed"), 1),
        // GitHub and Shopify sign no id: the body's digest is the key. Stripe's id is in the body.
        Scheme::GitHub | Scheme::Shopify | Scheme::Stripe => (202, None, 1),
    };
    let replay = run
        .case("replay, fresh id", &subject, (&path, &body, &fresh), expect)
        .await;
    if expect.0 == 202 {
        assert_eq!(
            (&replay["duplicate"], &replay["eventId"]),
            (&json!(true), &first["eventId"])
        );
    }

    // 3. A signature for another body.
    let other_subject = run.subject("other");
    let other = source.body(&other_subject);
    run.case(
        "signature for another body",
        &other_subject,
        (&path, &other, &headers),
        (401, Some("bad_signature"), 0),
    )
    .await;

    // 4. The same signed request sent to another source's path.
    let elsewhere = all.iter().find(|s| s.name() != source.name()).unwrap();
    run.case(
        "signature for another path",
        &subject,
        (&format!("/webhooks/{}", elsewhere.name()), &body, &headers),
        (401, Some("bad_signature"), 1),
    )
    .await;

    // 5. Timestamps inside and outside the tolerance, for schemes that sign a time. A timestamp
    //    past the tolerance in the past only ages while the request travels, so that edge is one
    //    second; the two that the travel time moves towards the window's inside get the allowance.
    if matches!(
        scheme,
        Scheme::StandardWebhooks | Scheme::Stripe | Scheme::BuslineV1
    ) {
        let inside = run.subject("edge-in");
        let body = source.body(&inside);
        let headers = run.headers(
            &body,
            &format!("{inside}-dlv"),
            now() - TOLERANCE + LATENCY_ALLOWANCE,
        );
        run.case(
            "timestamp just inside the tolerance",
            &inside,
            (&path, &body, &headers),
            (202, None, 1),
        )
        .await;
        let outside = run.subject("edge-out");
        let body = source.body(&outside);
        let headers = run.headers(&body, &format!("{outside}-dlv"), now() - TOLERANCE - 1);
        run.case(
            "timestamp tolerance + 1 s",
            &outside,
            (&path, &body, &headers),
            (401, Some("bad_signature"), 0),
        )
        .await;
        let future = run.subject("edge-future");
        let body = source.body(&future);
        let headers = run.headers(
            &body,
            &format!("{future}-dlv"),
            now() + TOLERANCE + LATENCY_ALLOWANCE,
        );
        run.case(
            "timestamp in the future past the tolerance",
            &future,
            (&path, &body, &headers),
            (401, Some("bad_signature"), 0),
        )
        .await;
    }

    // 6. Secret rotation: the old secret's signature beside the current one.
    let rotated = run.subject("rotation");
    let body = source.body(&rotated);
    let id = format!("{rotated}-dlv");
    let at = now();
    let old_secret = busline_tests::new_standard_webhooks_secret();
    let old = signed_headers_as(scheme, &old_secret, &body, &id, at);
    let headers = run.headers(&body, &id, at);
    // GitHub and Shopify send one signature a request: their senders rotate by switching.
    let (name, headers) = if matches!(scheme, Scheme::GitHub | Scheme::Shopify) {
        ("rotation: the new secret's signature", headers)
    } else {
        (
            "two signatures during rotation",
            with_rotation(scheme, &headers, &old),
        )
    };
    run.case(name, &rotated, (&path, &body, &headers), (202, None, 1))
        .await;
    let stale = run.subject("old-secret");
    let body = source.body(&stale);
    let old = signed_headers_as(scheme, &old_secret, &body, &format!("{stale}-dlv"), now());
    run.case(
        "the old secret alone",
        &stale,
        (&path, &body, &old),
        (401, Some("bad_signature"), 0),
    )
    .await;

    // 7. Header names in upper case.
    let shouted = run.subject("case");
    let body = source.body(&shouted);
    let headers = shout(&run.headers(&body, &format!("{shouted}-dlv"), now()));
    run.case(
        "header names in upper case",
        &shouted,
        (&path, &body, &headers),
        (202, None, 1),
    )
    .await;

    // 8. An over-long correlation id.
    let correlated = run.subject("corr");
    let body = source.body(&correlated);
    let mut headers = run.headers(&body, &format!("{correlated}-dlv"), now());
    headers.push(("X-Correlation-Id".into(), "c".repeat(129)));
    run.case(
        "over-long correlation id",
        &correlated,
        (&path, &body, &headers),
        (400, Some("bad_correlation_id"), 0),
    )
    .await;

    // 9. Fifty concurrent copies of one delivery.
    let copied = run.subject("copies");
    let body = source.body(&copied);
    let headers = run.headers(&body, &format!("{copied}-dlv"), now());
    let answers =
        futures_util::future::join_all((0..50).map(|_| run.send(&path, &body, &headers))).await;
    let accepted = answers
        .iter()
        .filter(|(status, answer)| *status == 202 && answer["duplicate"] == false)
        .count();
    for (status, answer) in &answers {
        assert!(
            *status == 202 || *status == 409,
            "{scheme} concurrent copy: {status} {answer}"
        );
    }
    assert!(accepted <= 1, "{scheme}: {accepted} copies published");
    run.cases.push(Case {
        name: "50 concurrent copies".to_owned(),
        subject: copied,
        status: 202,
        code: None,
        events: 1,
    });
    run.cases
}

#[tokio::test]
async fn every_scheme_holds_against_replays_forgeries_and_floods() {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let sources = sources();
    let schemes: Vec<Scheme> = sources
        .iter()
        .map(|s| stack.scheme_of(s.name()).unwrap())
        .collect();
    for scheme in Scheme::ALL {
        assert!(
            schemes.contains(&scheme),
            "the deployed stack has no source on {scheme}: set WebhookSchemes"
        );
    }
    let watch = format!("trust-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let queue = watch_bus(
        &aws,
        stack.output("EventBusName").unwrap(),
        &watch,
        &json!({"source": [{"prefix": "busline.webhook."}]}),
    )
    .await
    .unwrap();

    let mut cases = Vec::new();
    for source in &sources {
        cases.extend(
            attack(&aws, &stack, source, &sources)
                .await
                .into_iter()
                .map(|case| (source.name(), case)),
        );
    }

    let mut subjects: Vec<&str> = cases.iter().map(|(_, c)| c.subject.as_str()).collect();
    subjects.sort();
    subjects.dedup();
    let want: usize = subjects
        .iter()
        .map(|s| {
            cases
                .iter()
                .filter(|(_, c)| c.subject == *s)
                .map(|(_, c)| c.events)
                .max()
                .unwrap_or(0)
        })
        .sum();
    let messages = receive(&aws, &queue, want, SETTLE, TIMEOUT).await.unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for message in &messages {
        if let Some(subject) = message["detail"]["subject"].as_str() {
            *seen.entry(subject.to_owned()).or_default() += 1;
        }
    }
    let mut table = Vec::new();
    for (source, case) in &cases {
        let published = seen.get(&case.subject).copied().unwrap_or(0);
        table.push(format!(
            "{source:<12} {:<44} {} {:<20} events for its subject: {published}",
            case.name,
            case.status,
            case.code.unwrap_or("accepted"),
        ));
        assert_eq!(
            published, case.events,
            "{source} {}: {published} events for {} on the bus",
            case.name, case.subject
        );
    }
    println!("{}", table.join("\n"));
}
