use std::sync::Mutex;

use busline_fulfillment::status::InMemoryOrderTracker;

use super::*;

const SECRET: &str = "whsec_YXBwcm92ZXJzLXNlY3JldC10d2VudHktZm91ci1ieXRlcw==";
const OTHER_SECRET: &str = "whsec_c29tZW9uZS1lbHNlcy1zZWNyZXQtb2YtMjQtYnl0ZXM=";

/// Step Functions' callbacks in memory: which tokens still wait, and what each got.
#[derive(Default)]
struct Callbacks {
    waiting: Mutex<Vec<String>>,
    answers: Mutex<Vec<(String, String)>>,
    unavailable: bool,
}

impl Callbacks {
    fn waiting(token: &str) -> Self {
        Self {
            waiting: Mutex::new(vec![token.to_owned()]),
            ..Self::default()
        }
    }

    fn answer(&self, token: &str, what: String) -> Result<(), CallbackError> {
        if self.unavailable {
            return Err(CallbackError::Unavailable("down".into()));
        }
        let mut waiting = self.waiting.lock().unwrap();
        let Some(at) = waiting.iter().position(|t| t == token) else {
            return Err(CallbackError::Closed("InvalidToken".to_owned()));
        };
        waiting.remove(at);
        self.answers.lock().unwrap().push((token.to_owned(), what));
        Ok(())
    }
}

impl TaskCallbacks for Callbacks {
    async fn succeed(&self, token: &str, output: &Value) -> Result<(), CallbackError> {
        self.answer(token, format!("success {output}"))
    }

    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<(), CallbackError> {
        self.answer(token, format!("failure {error}: {cause}"))
    }
}

async fn waiting_order(token: &str) -> Deps<InMemoryOrderTracker, Callbacks> {
    let tracker = InMemoryOrderTracker::new();
    tracker
        .record(
            &Transition::new(
                "SO-9",
                "approval",
                "approval-requested",
                "waiting for approval",
                Status::AwaitingApproval,
            )
            .with_approval_token(token),
        )
        .await
        .unwrap();
    Deps {
        tracker,
        callbacks: Callbacks::waiting(token),
        key: Scheme::StandardWebhooks.key(SECRET).unwrap(),
        tolerance_secs: 300,
    }
}

fn post(path: &str, body: &str, secret: &str) -> Request {
    post_at(path, body, secret, Utc::now().timestamp())
}

fn post_at(path: &str, body: &str, secret: &str, timestamp: i64) -> Request {
    let key = Scheme::StandardWebhooks.key(secret).unwrap();
    let id = format!("decision-{timestamp}-{}", body.len());
    let signature =
        signature::standard_webhooks_sign(&key, &id, timestamp, body.as_bytes()).unwrap();
    lambda_http::http::Request::builder()
        .method("POST")
        .uri(format!("https://approve.example{path}"))
        .header(signature::HEADER_WEBHOOK_ID, id)
        .header(signature::HEADER_WEBHOOK_TIMESTAMP, timestamp.to_string())
        .header(signature::HEADER_WEBHOOK_SIGNATURE, signature)
        .body(Body::Text(body.to_owned()))
        .unwrap()
}

async fn answer<T: OrderTracker, C: TaskCallbacks>(
    request: Request,
    deps: &Deps<T, C>,
) -> (u16, Value) {
    let response = handle(request, deps).await;
    let Body::Text(body) = response.body() else {
        panic!("a JSON body")
    };
    (
        response.status().as_u16(),
        serde_json::from_str(body).unwrap(),
    )
}

const APPROVE: &str =
    r#"{"order_id":"SO-9","decision":"approve","approver":"Ada","comment":"known customer"}"#;
const REJECT: &str =
    r#"{"order_id":"SO-9","decision":"reject","approver":"Ada","comment":"looks like fraud"}"#;

#[tokio::test]
async fn an_approval_resumes_the_execution_once_and_is_recorded() {
    let deps = waiting_order("token-1").await;
    let (status, body) = answer(post("/orders/SO-9/approval", APPROVE, SECRET), &deps).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["duplicate"], false);
    let answers = deps.callbacks.answers.lock().unwrap().clone();
    assert_eq!(answers.len(), 1);
    assert!(
        answers[0].1.starts_with("success") && answers[0].1.contains("Ada"),
        "{answers:?}"
    );
    let view = deps.tracker.get("SO-9").await.unwrap().unwrap();
    assert_eq!(view.status, Status::InProgress);
    assert_eq!(view.approval_token, None, "the token is gone once used");
    // The public projection says what happened, not who said what.
    assert!(view.history.iter().any(|e| e.description == "approved"));
    let shown = serde_json::to_string(&view).unwrap();
    assert!(
        !shown.contains("Ada") && !shown.contains("known customer"),
        "{shown}"
    );

    let (status, body) = answer(post("/orders/SO-9/approval", APPROVE, SECRET), &deps).await;
    assert_eq!(
        (status, body["duplicate"].as_bool()),
        (200, Some(true)),
        "a repeat is answered, not re-sent"
    );
    assert_eq!(deps.callbacks.answers.lock().unwrap().len(), 1);

    let (status, body) = answer(post("/orders/SO-9/approval", REJECT, SECRET), &deps).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("not_awaiting_approval")),
        "{body}"
    );
}

#[tokio::test]
async fn a_rejection_fails_the_task_with_order_rejected_and_the_reason() {
    let deps = waiting_order("token-1").await;
    let (status, body) = answer(post("/orders/SO-9/approval", REJECT, SECRET), &deps).await;
    assert_eq!(status, 200, "{body}");
    let answers = deps.callbacks.answers.lock().unwrap().clone();
    assert_eq!(
        answers[0].1,
        "failure OrderRejected: rejected by Ada: looks like fraud"
    );
    let view = deps.tracker.get("SO-9").await.unwrap().unwrap();
    assert_eq!(view.status, Status::Failing);
    assert_eq!(
        view.failure_reason.as_deref(),
        Some("OrderRejected: the order was rejected at approval")
    );
    let shown = serde_json::to_string(&view).unwrap();
    assert!(
        !shown.contains("Ada") && !shown.contains("fraud"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_decision_signed_for_one_order_does_not_decide_another() {
    let deps = waiting_order("token-1").await;
    let for_a = r#"{"order_id":"SO-A","decision":"approve","approver":"Ada"}"#;
    let (status, body) = answer(post("/orders/SO-9/approval", for_a, SECRET), &deps).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("bad_signature")),
        "{body}"
    );
    assert!(deps.callbacks.answers.lock().unwrap().is_empty());
    let view = deps.tracker.get("SO-9").await.unwrap().unwrap();
    assert_eq!(view.status, Status::AwaitingApproval);
    assert_eq!(view.approval_token.as_deref(), Some("token-1"));
}

#[tokio::test]
async fn a_captured_decision_stops_working_after_its_window() {
    let deps = waiting_order("token-1").await;
    let old = Utc::now().timestamp() - 301;
    let (status, body) = answer(
        post_at("/orders/SO-9/approval", APPROVE, SECRET, old),
        &deps,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("bad_signature")),
        "{body}"
    );
    assert!(deps.callbacks.answers.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_task_that_timed_out_is_a_conflict_and_nothing_is_recorded() {
    let deps = waiting_order("token-1").await;
    deps.callbacks.waiting.lock().unwrap().clear();
    let (status, body) = answer(post("/orders/SO-9/approval", APPROVE, SECRET), &deps).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("not_awaiting_approval")),
        "{body}"
    );
    let view = deps.tracker.get("SO-9").await.unwrap().unwrap();
    assert_eq!(view.status, Status::AwaitingApproval);
}

#[tokio::test]
async fn unsigned_malformed_and_unknown_requests_are_refused_with_the_reason() {
    let deps = waiting_order("token-1").await;
    let cases = [
        (
            post("/orders/SO-9/approval", APPROVE, OTHER_SECRET),
            401,
            "bad_signature",
        ),
        (
            post("/orders/SO-9/approval", "{not json", SECRET),
            400,
            "malformed_json",
        ),
        (
            post(
                "/orders/SO-9/approval",
                r#"{"order_id":"SO-9","decision":"maybe","approver":"Ada"}"#,
                SECRET,
            ),
            422,
            "invalid_decision",
        ),
        (
            post(
                "/orders/SO-9/approval",
                r#"{"order_id":"SO-9","decision":"approve","approver":"  "}"#,
                SECRET,
            ),
            422,
            "invalid_decision",
        ),
        (
            post(
                "/orders/SO-404/approval",
                r#"{"order_id":"SO-404","decision":"approve","approver":"Ada"}"#,
                SECRET,
            ),
            404,
            "order_not_found",
        ),
        (post("/orders/SO-9", APPROVE, SECRET), 404, "unknown_route"),
    ];
    for (request, status, code) in cases {
        let (got, body) = answer(request, &deps).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    assert!(deps.callbacks.answers.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_step_functions_is_a_503_and_the_order_still_waits() {
    let mut deps = waiting_order("token-1").await;
    deps.callbacks.unavailable = true;
    let (status, _) = answer(post("/orders/SO-9/approval", APPROVE, SECRET), &deps).await;
    assert_eq!(status, 503);
    let view = deps.tracker.get("SO-9").await.unwrap().unwrap();
    assert_eq!(view.approval_token.as_deref(), Some("token-1"));
}
