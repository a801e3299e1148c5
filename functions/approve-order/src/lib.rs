//! `POST /orders/{id}/approval`: a person approves or rejects an order that waits for approval,
//! and the saga resumes.
//!
//! The request is signed with Standard Webhooks (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`) with the approvers'
//! `whsec_` secret, and its body is `{"order_id": "<the path's order>", "decision": "approve" |
//! "reject", "approver": "<who>", "comment": "<why>"}`.
//!
//! What the signature binds: the decision and the order it is for (the signed body must name the
//! order in the path, so order A's decision cannot be sent to order B), and the time (a captured
//! decision stops working after the tolerance window). The same decision again changes nothing
//! (`duplicate: true`), and no decision works on an order that no longer waits.
//!
//! The handler finds the order's task token in the status projection (kept there by
//! `request-approval` while the order waits) and answers Step Functions: `SendTaskSuccess` to
//! approve, `SendTaskFailure` with error `OrderRejected` to reject, which the state machine turns
//! into `order.failed`. The approver's name and comment go to Step Functions and so to the saga's
//! events and the audit trail; the status projection, which `GET /orders/{id}` shows to anyone,
//! records only `approved` or `rejected`. With `AuthType: AWS_IAM` on the Function URL, the
//! caller's IAM identity is recorded as `approved_by_principal` as well.
//!
//! | Answer | When |
//! |---|---|
//! | 200 `{order_id, decision, duplicate}` | done; `duplicate: true` when the same decision was already made |
//! | 400 `empty_body` / `malformed_json`, 422 `invalid_decision` | the body is not a decision |
//! | 401 `bad_signature` | not signed with the approvers' secret, signed too long ago, or signed for another order |
//! | 404 `order_not_found` / `unknown_route`, 405 | no such order, path or method |
//! | 409 `not_awaiting_approval` | the order does not wait (never did, was decided otherwise, or timed out) |
//! | 503 | the projection or Step Functions could not be reached; retry |

use busline::api::{Problem, header_str, json_response, order_id_in, path};
use busline::signature::{self, Scheme, SigningKey};
use busline_fulfillment::status::{
    OrderTracker, OrderView, Status, Step, Transition, public_reason,
};
use chrono::{DateTime, Utc};
use lambda_http::http::{Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The error a rejection fails the waiting task with.
pub const ORDER_REJECTED: &str = "OrderRejected";
/// The history entry of a rejection (an approval is the `approval` step done).
pub const REJECTED_ENTRY: &str = "approval:rejected";

/// Why Step Functions did not take the answer.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// The task no longer waits: it timed out, was answered, or its execution ended.
    #[error("the task no longer waits for an answer: {0}")]
    Closed(String),
    /// Step Functions could not be reached. Retryable.
    #[error("Step Functions is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Answers a task that waits for a callback (`.waitForTaskToken`).
pub trait TaskCallbacks: Send + Sync {
    /// The task succeeded with `output`.
    fn succeed(
        &self,
        token: &str,
        output: &Value,
    ) -> impl Future<Output = Result<(), CallbackError>> + Send;

    /// The task failed with `error` and `cause`.
    fn fail(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> impl Future<Output = Result<(), CallbackError>> + Send;
}

/// Step Functions' `SendTaskSuccess` and `SendTaskFailure`.
#[derive(Clone, Debug)]
pub struct StepFunctionsCallbacks {
    client: aws_sdk_sfn::Client,
}

impl StepFunctionsCallbacks {
    /// Answers through `client`.
    pub fn new(client: aws_sdk_sfn::Client) -> Self {
        Self { client }
    }
}

fn callback_error<E>(error: aws_sdk_sfn::error::SdkError<E>) -> CallbackError
where
    E: aws_sdk_sfn::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match error.as_service_error().and_then(|e| e.code()) {
        Some(code @ ("InvalidToken" | "TaskTimedOut" | "TaskDoesNotExist")) => {
            CallbackError::Closed(code.to_owned())
        }
        _ => CallbackError::Unavailable(Box::new(error)),
    }
}

impl TaskCallbacks for StepFunctionsCallbacks {
    async fn succeed(&self, token: &str, output: &Value) -> Result<(), CallbackError> {
        self.client
            .send_task_success()
            .task_token(token)
            .output(output.to_string())
            .send()
            .await
            .map_err(callback_error)?;
        Ok(())
    }

    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<(), CallbackError> {
        self.client
            .send_task_failure()
            .task_token(token)
            .error(error)
            .cause(cause)
            .send()
            .await
            .map_err(callback_error)?;
        Ok(())
    }
}

/// What the function needs.
pub struct Deps<T, C> {
    /// The status projection, where the task token is.
    pub tracker: T,
    /// Step Functions.
    pub callbacks: C,
    /// The approvers' signing key (Standard Webhooks).
    pub key: SigningKey,
    /// Signature tolerance, seconds.
    pub tolerance_secs: u64,
}

/// A person's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Go on with the order.
    Approve,
    /// Fail the order: Step Functions gets `SendTaskFailure` with error `OrderRejected`.
    Reject,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionRequest {
    order_id: String,
    decision: Decision,
    approver: String,
    #[serde(default)]
    comment: Option<String>,
}

/// What a 200 says.
#[derive(Debug, Serialize)]
pub struct Decided {
    /// The order's id: the path's, which the signed body named too.
    pub order_id: String,
    /// The decision as the signed body made it.
    pub decision: Decision,
    /// True when this decision had been made before and nothing new was done.
    pub duplicate: bool,
}

/// The Lambda handler: every outcome is an HTTP response.
pub async fn handle<T: OrderTracker, C: TaskCallbacks>(
    request: Request,
    deps: &Deps<T, C>,
) -> Response<Body> {
    handle_at(request, deps, Utc::now()).await
}

/// [`handle`] with the clock set to `now`.
pub async fn handle_at<T: OrderTracker, C: TaskCallbacks>(
    request: Request,
    deps: &Deps<T, C>,
    now: DateTime<Utc>,
) -> Response<Body> {
    match decide(&request, deps, now).await {
        Ok(decided) => {
            tracing::info!(order_id = %decided.order_id, decision = ?decided.decision, duplicate = decided.duplicate, "decided");
            json_response(StatusCode::OK, &decided)
        }
        Err(problem) => {
            tracing::warn!(status = problem.status.as_u16(), code = problem.code, reason = %problem.reason, "refused");
            problem.into_response()
        }
    }
}

fn unavailable(what: &str, error: &dyn std::error::Error) -> Problem {
    tracing::error!(error = %error, "{what} is unavailable");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!("{what} cannot be reached right now; retry"),
    )
}

/// The IAM principal that signed the request with SigV4, when the Function URL uses `AWS_IAM`.
fn iam_principal(request: &Request) -> Option<String> {
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => {
            context.authorizer.as_ref()?.iam.as_ref()?.user_arn.clone()
        }
        _ => None,
    }
}

async fn decide<T: OrderTracker, C: TaskCallbacks>(
    request: &Request,
    deps: &Deps<T, C>,
    now: DateTime<Utc>,
) -> Result<Decided, Problem> {
    let order_id = order_id_in(path(request), "/approval").ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "unknown_route",
            "decisions are POSTed to /orders/{id}/approval",
        )
    })?;
    if request.method() != Method::POST {
        return Err(Problem::method_not_allowed("POST"));
    }
    let body = request.body().as_ref();
    if body.is_empty() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "the body is empty; send the decision as JSON, with Content-Type: application/json",
        ));
    }
    signature::verify(
        Scheme::StandardWebhooks,
        &deps.key,
        |name| header_str(request, name),
        body,
        now.timestamp().max(0) as u64,
        deps.tolerance_secs,
    )
    .map_err(|e| Problem::new(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string()))?;
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let invalid =
        |reason: String| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_decision", reason);
    let principal = iam_principal(request);
    let request: DecisionRequest = serde_json::from_value(value).map_err(|e| {
        invalid(format!(
            "expected {{\"order_id\": \"<the order in the path>\", \"decision\": \"approve\" | \"reject\", \"approver\": \"<who>\", \"comment\": \"<why>\"}}: {e}"
        ))
    })?;
    // The path is not signed; the body is. A decision counts only for the order it names.
    if request.order_id != order_id {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "the signed decision is for another order; sign a decision whose order_id is the order in the path",
        ));
    }
    let approver = request.approver.trim();
    if approver.is_empty() || approver.len() > 200 {
        return Err(invalid(
            "name the approver, in at most 200 characters".to_owned(),
        ));
    }
    let comment = request.comment.as_deref().map(str::trim).unwrap_or("");
    if comment.len() > 1000 {
        return Err(invalid("keep the comment under 1000 characters".to_owned()));
    }

    let view = deps
        .tracker
        .get(order_id)
        .await
        .map_err(|e| unavailable("the order status", &e))?
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "order_not_found",
                format!("no order {order_id:?} is known"),
            )
        })?;
    let decided = |duplicate| Decided {
        order_id: order_id.to_owned(),
        decision: request.decision,
        duplicate,
    };
    if already_decided(&view, request.decision) {
        return Ok(decided(true));
    }
    let token = match (&view.approval_token, view.status) {
        (Some(token), Status::AwaitingApproval) => token,
        _ => return Err(not_waiting(&view)),
    };

    // Who decided and why go to Step Functions (and from there to the saga's events and the
    // audit trail); the public projection says only what happened.
    let said = if comment.is_empty() {
        format!("{} by {approver}", past(request.decision))
    } else {
        format!("{} by {approver}: {comment}", past(request.decision))
    };
    let (answered, transition) = match request.decision {
        Decision::Approve => (
            deps.callbacks
                .succeed(
                    token,
                    &json!({"approved_by": approver, "comment": comment, "approved_by_principal": principal}),
                )
                .await,
            Transition::new(
                order_id,
                Step::Approval.name(),
                Step::Approval.name(),
                past(request.decision),
                Status::InProgress,
            ),
        ),
        Decision::Reject => (
            deps.callbacks.fail(token, ORDER_REJECTED, &said).await,
            Transition::new(
                order_id,
                Step::Approval.name(),
                REJECTED_ENTRY,
                past(request.decision),
                Status::Failing,
            ),
        ),
    };
    match answered {
        Ok(()) => {}
        Err(CallbackError::Closed(why)) => {
            tracing::info!(order_id, why, "the task no longer waits");
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "not_awaiting_approval",
                format!(
                    "order {order_id} no longer waits for a decision: it was decided or timed out"
                ),
            ));
        }
        Err(e @ CallbackError::Unavailable(_)) => return Err(unavailable("Step Functions", &e)),
    }
    // The decision is made; a lost record only delays the projection until the saga's next step.
    let transition = Transition {
        failure_reason: (request.decision == Decision::Reject)
            .then(|| public_reason(ORDER_REJECTED)),
        ..transition
    };
    if let Err(e) = deps.tracker.record(&transition).await {
        tracing::warn!(order_id, error = %e, "could not record the decision");
    }
    Ok(decided(false))
}

fn past(decision: Decision) -> &'static str {
    match decision {
        Decision::Approve => "approved",
        Decision::Reject => "rejected",
    }
}

fn already_decided(view: &OrderView, decision: Decision) -> bool {
    match decision {
        Decision::Approve => view.has(Step::Approval.name()),
        Decision::Reject => view.has(REJECTED_ENTRY),
    }
}

fn not_waiting(view: &OrderView) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "not_awaiting_approval",
        format!(
            "order {} does not wait for approval: its status is {}",
            view.order_id,
            view.status.as_str()
        ),
    )
}

#[cfg(test)]
mod tests;
