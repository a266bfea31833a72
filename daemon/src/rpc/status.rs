//! The one place where service errors become gRPC statuses. Internal details are logged here
//! and never sent to the caller.

use tonic::{Code, Status};

use crate::service::Error;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::KeyNotFound(_) => Code::NotFound,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::BadRequest(_) => Code::InvalidArgument,
            Error::TooLarge { .. } | Error::Busy(_) | Error::Exhausted(_) => {
                Code::ResourceExhausted
            }
            Error::Unavailable(_) => Code::Unavailable,
            Error::AuditUnavailable(detail) => {
                tracing::error!(%detail, "request refused");
                Code::Unavailable
            }
            Error::TokenLocked(_) | Error::Precondition(_) => Code::FailedPrecondition,
            Error::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                return Status::internal("internal error (see sigild's log)");
            }
        };
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_its_contract_code_and_internal_hides_detail() {
        let cases = [
            (Error::KeyNotFound("k".into()), Code::NotFound),
            (Error::PermissionDenied("p".into()), Code::PermissionDenied),
            (Error::BadRequest("b".into()), Code::InvalidArgument),
            (Error::TooLarge { size: 2, max: 1 }, Code::ResourceExhausted),
            (Error::Busy("b".into()), Code::ResourceExhausted),
            (Error::Exhausted("e".into()), Code::ResourceExhausted),
            (
                Error::AuditUnavailable("disk full".into()),
                Code::Unavailable,
            ),
            (Error::Unavailable("u".into()), Code::Unavailable),
            (Error::TokenLocked("l".into()), Code::FailedPrecondition),
            (Error::Precondition("p".into()), Code::FailedPrecondition),
            (Error::Internal("secret detail".into()), Code::Internal),
        ];
        for (err, code) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code);
            assert!(!status.message().contains("secret detail"));
        }
    }
}
