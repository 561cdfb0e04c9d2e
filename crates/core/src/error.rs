//! One error type for the whole suite. Each variant maps to a fixed `errorType`
//! name that the state machines match in `Retry` and `Catch`.

use std::fmt::Display;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The stable error names, as they reach Step Functions and callers.
pub mod names {
    pub const INVALID_INPUT: &str = "InvalidInput";
    pub const NOT_FOUND: &str = "NotFound";
    pub const AMI_NOT_USABLE: &str = "AmiNotUsable";
    pub const CAPACITY_UNAVAILABLE: &str = "CapacityUnavailable";
    pub const NOT_SCANNER_MANAGED: &str = "NotScannerManaged";
    pub const TRANSIENT: &str = "Transient";
    pub const AWS_ERROR: &str = "AwsError";
    pub const CONFIGURATION: &str = "ConfigurationError";
    pub const INTERNAL: &str = "InternalError";
    pub const FINDINGS_PENDING: &str = "FindingsPending";
    pub const FRESH_SCAN_WANTED: &str = "FreshScanWanted";

    /// Every name a Lambda can return, for documentation checks.
    pub const ALL: [&str; 11] = [
        INVALID_INPUT,
        NOT_FOUND,
        AMI_NOT_USABLE,
        CAPACITY_UNAVAILABLE,
        NOT_SCANNER_MANAGED,
        TRANSIENT,
        AWS_ERROR,
        CONFIGURATION,
        INTERNAL,
        FINDINGS_PENDING,
        FRESH_SCAN_WANTED,
    ];
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The event is malformed; nothing was called.
    #[error("invalid input: `{field}`: {reason}")]
    InvalidInput { field: String, reason: String },

    /// A resource the event names does not exist (or no longer exists).
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },

    /// The AMI exists but cannot be scanned (not owned, not available).
    #[error("AMI {ami_id} cannot be scanned: {reason}")]
    AmiNotUsable { ami_id: String, reason: String },

    /// No configured instance type could be launched.
    #[error("no capacity for any configured instance type ({}): {last_error}", tried.join(", "))]
    CapacityUnavailable {
        tried: Vec<String>,
        last_error: String,
    },

    /// Refused to act on a resource that amiscan did not create.
    #[error("{kind} {id} is not an amiscan scanner ({why}); refusing to touch it")]
    NotScannerManaged {
        kind: &'static str,
        id: String,
        why: String,
    },

    /// An AWS call failed. `transient` errors are worth retrying.
    #[error("{operation} failed: {code}: {message}")]
    Aws {
        operation: &'static str,
        code: String,
        message: String,
        transient: bool,
    },

    /// A deployment setting is missing or malformed (start-up only).
    #[error("configuration: {0}")]
    Configuration(String),

    /// A snapshot scan completed but some of its finding events have not
    /// arrived yet: launch-scan retries within the grace for late findings.
    #[error("{received} of {expected} findings of on-demand scan {scan_id} have arrived")]
    FindingsPending {
        scan_id: String,
        expected: u64,
        received: u64,
    },

    /// A snapshot scan's first on-demand scan ended with findings missing
    /// (or its completion lost) and what arrived would pass: nothing is
    /// recorded, and launch-scan starts the one fresh scan it allows.
    #[error(
        "on-demand scan {scan_id}: {why}; one fresh scan is wanted before INCOMPLETE is recorded"
    )]
    FreshScanWanted { scan_id: String, why: String },

    /// A bug or an impossible state: not retried.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Display) -> Self {
        Error::InvalidInput {
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    /// The `errorType` a Lambda reports for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::InvalidInput { .. } => names::INVALID_INPUT,
            Error::NotFound { .. } => names::NOT_FOUND,
            Error::AmiNotUsable { .. } => names::AMI_NOT_USABLE,
            Error::CapacityUnavailable { .. } => names::CAPACITY_UNAVAILABLE,
            Error::NotScannerManaged { .. } => names::NOT_SCANNER_MANAGED,
            Error::Aws {
                transient: true, ..
            } => names::TRANSIENT,
            Error::Aws { .. } => names::AWS_ERROR,
            Error::Configuration(_) => names::CONFIGURATION,
            Error::Internal(_) => names::INTERNAL,
            Error::FindingsPending { .. } => names::FINDINGS_PENDING,
            Error::FreshScanWanted { .. } => names::FRESH_SCAN_WANTED,
        }
    }

    /// The AWS error code, when this error came from an AWS call.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Builds an error from an SDK failure, classifying throttling, timeouts,
    /// dispatch failures and server-side faults as transient.
    pub fn from_sdk<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match &err {
            SdkError::ServiceError(ctx) => {
                let code = ctx.err().code().unwrap_or("Unknown").to_string();
                let message = ctx.err().message().unwrap_or_default().to_string();
                let status = ctx.raw().status().as_u16();
                let transient = is_transient_code(&code) || status == 429 || status >= 500;
                Error::Aws {
                    operation,
                    code,
                    message,
                    transient,
                }
            }
            SdkError::TimeoutError(_) => Error::Aws {
                operation,
                code: "Timeout".into(),
                message: display_chain(&err),
                transient: true,
            },
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Error::Aws {
                operation,
                code: "DispatchFailure".into(),
                message: display_chain(&err),
                transient: true,
            },
            _ => Error::Aws {
                operation,
                code: "ClientError".into(),
                message: display_chain(&err),
                transient: false,
            },
        }
    }
}

/// Error codes that AWS services use for throttling and passing faults.
pub fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "RequestLimitExceeded"
            | "TooManyRequestsException"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "RequestTimeout"
            | "RequestTimeoutException"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "InternalError"
            | "InternalFailure"
            | "InternalServerError"
            | "InternalServerException"
            | "EC2ThrottledException"
    )
}

fn display_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        out.push_str(": ");
        out.push_str(&inner.to_string());
        source = inner.source();
    }
    out
}

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(err: Error) -> Self {
        lambda_runtime::Diagnostic {
            error_type: err.error_type().to_string(),
            error_message: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_a_stable_name_that_step_functions_can_match() {
        let cases = [
            (Error::invalid("ami_id", "bad"), "InvalidInput"),
            (
                Error::NotFound {
                    kind: "AMI",
                    id: "ami-1".into(),
                },
                "NotFound",
            ),
            (
                Error::AmiNotUsable {
                    ami_id: "ami-1".into(),
                    reason: "pending".into(),
                },
                "AmiNotUsable",
            ),
            (
                Error::CapacityUnavailable {
                    tried: vec!["t3.micro".into()],
                    last_error: "x".into(),
                },
                "CapacityUnavailable",
            ),
            (
                Error::NotScannerManaged {
                    kind: "instance",
                    id: "i-1".into(),
                    why: "missing tag amiscan:managed=true".into(),
                },
                "NotScannerManaged",
            ),
            (
                Error::Aws {
                    operation: "RunInstances",
                    code: "RequestLimitExceeded".into(),
                    message: String::new(),
                    transient: true,
                },
                "Transient",
            ),
            (
                Error::Aws {
                    operation: "RunInstances",
                    code: "UnauthorizedOperation".into(),
                    message: String::new(),
                    transient: false,
                },
                "AwsError",
            ),
            (Error::Configuration("x".into()), "ConfigurationError"),
            (Error::Internal("x".into()), "InternalError"),
        ];
        for (err, name) in cases {
            assert_eq!(err.error_type(), name);
            assert!(names::ALL.contains(&name));
            assert!(!name.starts_with("States."));
            let diagnostic = lambda_runtime::Diagnostic::from(err);
            assert_eq!(diagnostic.error_type, name);
        }
    }

    #[test]
    fn the_message_carries_the_aws_code_and_text() {
        let err = Error::Aws {
            operation: "CreateTags",
            code: "InvalidAMIID.NotFound".into(),
            message: "The image id '[ami-1]' does not exist".into(),
            transient: false,
        };
        let diagnostic = lambda_runtime::Diagnostic::from(err);
        assert_eq!(
            diagnostic.error_message,
            "CreateTags failed: InvalidAMIID.NotFound: The image id '[ami-1]' does not exist"
        );
    }

    #[test]
    fn throttling_and_server_faults_are_transient_and_client_faults_are_not() {
        for code in [
            "Throttling",
            "RequestLimitExceeded",
            "TooManyRequestsException",
            "InternalError",
        ] {
            assert!(is_transient_code(code), "{code}");
        }
        for code in [
            "InvalidAMIID.NotFound",
            "UnauthorizedOperation",
            "ValidationException",
        ] {
            assert!(!is_transient_code(code), "{code}");
        }
    }
}
