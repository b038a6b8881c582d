//! Why a feed message was refused before it reached the book.

/// A refusal with a stable code (`invalid_request`) and a reason for the provider's engineers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FeedError {
    pub code: &'static str,
    pub message: String,
}

impl FeedError {
    pub fn invalid(message: impl Into<String>) -> FeedError {
        FeedError { code: "invalid_request", message: message.into() }
    }
}
