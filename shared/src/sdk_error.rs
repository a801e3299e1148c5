//! One classification of AWS SDK errors, for every adapter: what a failed call means to the caller.
//!
//! - **Retryable**: throttling (`ThrottlingException`, `ProvisionedThroughputExceededException`,
//!   `RequestLimitExceeded`, `TooManyRequestsException`, ...), any 5xx or 429, timeouts, dispatch
//!   failures (the request never got an answer) and unreadable answers. The same call may succeed
//!   later.
//! - **Permanent**: validation (`ValidationException`, `InvalidParameter*`, a key over 2 KB), access
//!   denied, resource not found, item or entry too large, a request that could not even be built,
//!   and any other 4xx. The same call will fail the same way until someone changes the input or the
//!   configuration, so a message carrying it belongs in a dead-letter queue with the reason on its
//!   first receive: retrying it is a stall, not safety.
//!
//! A domain answer such as DynamoDB's `ConditionalCheckFailedException` is never classified here:
//! each adapter maps it to its own typed variant (a duplicate, a conflict) first.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::ErrorClass;

/// Error codes that mean "slow down", whatever their HTTP status.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "RequestThrottled",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes of a service that failed, whatever their HTTP status.
const TRANSIENT: &[&str] = &[
    "InternalServerError",
    "InternalServerException",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "IDPCommunicationError",
];

/// What `error` means to the caller: [`ErrorClass::Retryable`] or [`ErrorClass::Permanent`].
pub fn classify<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> ErrorClass {
    match error {
        SdkError::ConstructionFailure(_) => ErrorClass::Permanent,
        SdkError::ServiceError(context) => {
            classify_answer(context.err().code(), context.raw().status().as_u16())
        }
        // Timeouts, dispatch failures, unreadable answers, and whatever the SDK adds later.
        _ => ErrorClass::Retryable,
    }
}

/// The class of a service's answer: its error `code` (if any) and HTTP `status`.
pub fn classify_answer(code: Option<&str>, status: u16) -> ErrorClass {
    let code = code.unwrap_or_default();
    if THROTTLING.contains(&code) || TRANSIENT.contains(&code) || status == 429 || status >= 500 {
        ErrorClass::Retryable
    } else if (400..500).contains(&status) {
        ErrorClass::Permanent
    } else {
        // No usable status (a stub, a proxy): only a known permanent code gives up.
        match code {
            "ValidationException"
            | "AccessDeniedException"
            | "AccessDenied"
            | "ResourceNotFoundException"
            | "ItemCollectionSizeLimitExceededException"
            | "RequestEntityTooLarge" => ErrorClass::Permanent,
            _ => ErrorClass::Retryable,
        }
    }
}

/// The class of a service error whose HTTP answer is no longer at hand (taken out of its
/// `SdkError` to match on its variants): by its code alone, so only a known permanent code gives up.
pub fn classify_service_error<E: ProvideErrorMetadata>(error: &E) -> ErrorClass {
    classify_answer(error.code(), 0)
}

/// The caller's own error for `error`: `refused(e)` when it is permanent, `unavailable(e)` when it
/// is worth retrying. Every adapter maps its SDK errors through this (or [`sort_service_error`]).
pub fn sort<E, T>(
    error: SdkError<E, HttpResponse>,
    refused: impl FnOnce(BoxError) -> T,
    unavailable: impl FnOnce(BoxError) -> T,
) -> T
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if is_permanent(&error) {
        refused(Box::new(error))
    } else {
        unavailable(Box::new(error))
    }
}

/// [`sort`] for a service error taken out of its `SdkError` (classified by its code alone).
pub fn sort_service_error<E, T>(
    error: E,
    refused: impl FnOnce(BoxError) -> T,
    unavailable: impl FnOnce(BoxError) -> T,
) -> T
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if classify_service_error(&error) == ErrorClass::Permanent {
        refused(Box::new(error))
    } else {
        unavailable(Box::new(error))
    }
}

/// A boxed error, as the adapters' variants keep their source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// True when `error` will fail the same way however often it is retried.
pub fn is_permanent<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    classify(error) == ErrorClass::Permanent
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    fn answered(code: &str, status: u16) -> SdkError<PutItemError, HttpResponse> {
        let error = PutItemError::generic(ErrorMetadata::builder().code(code).build());
        let response = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(error, response)
    }

    #[test]
    fn throttling_and_server_errors_are_retried() {
        for (code, status) in [
            ("ThrottlingException", 400),
            ("ProvisionedThroughputExceededException", 400),
            ("RequestLimitExceeded", 400),
            ("TooManyRequestsException", 429),
            ("InternalServerError", 500),
            ("ServiceUnavailable", 503),
            ("SomethingNew", 502),
        ] {
            assert_eq!(
                classify(&answered(code, status)),
                ErrorClass::Retryable,
                "{code}"
            );
        }
    }

    #[test]
    fn validation_access_not_found_and_too_large_are_permanent() {
        for (code, status) in [
            ("ValidationException", 400),
            ("AccessDeniedException", 400),
            ("ResourceNotFoundException", 400),
            ("ItemCollectionSizeLimitExceededException", 400),
            ("RequestEntityTooLarge", 413),
            ("UnrecognizedClientException", 400),
        ] {
            assert_eq!(
                classify(&answered(code, status)),
                ErrorClass::Permanent,
                "{code}"
            );
            assert!(is_permanent(&answered(code, status)));
        }
    }

    #[test]
    fn a_call_without_an_answer_is_retried_and_one_that_could_not_be_built_is_not() {
        let timeout: SdkError<PutItemError, HttpResponse> = SdkError::timeout_error("slow");
        assert_eq!(classify(&timeout), ErrorClass::Retryable);
        let unbuildable: SdkError<PutItemError, HttpResponse> =
            SdkError::construction_failure("no table name");
        assert_eq!(classify(&unbuildable), ErrorClass::Permanent);
    }
}
