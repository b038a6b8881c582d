//! `BookClient`: how a gateway reaches the book's leader, whichever node that is.
//!
//! A submission is a NATS request on the submit subject; only the leader is subscribed. When
//! nobody answers (no responders: an election is under way; a timeout: the leader died or
//! paused), or the answer is `not_leader`, the client asks again until
//! [`BookClientOptions::retry_for`] has passed. Asking again is safe when the command reached
//! no book (no responders, `not_leader`); after a timeout or `outcome_unknown` it may have been
//! applied, so it is asked again only when the command carries an idempotency key (the book
//! then answers the retry with the first reply, and applies it at most once), and otherwise
//! reported as [`ClientError::OutcomeUnknown`].

use std::time::{Duration, Instant};

use async_nats::client::RequestErrorKind;
use async_nats::Client;
use book::Reply;
use engine::Submission;

use crate::lease::LEASE_BUCKET_DEFAULT;
use crate::node::NodeStatus;
use crate::protocol::{self, Answer, Refusal, SUBJECT_PREFIX_DEFAULT};
use crate::registry::{ClusterView, REGISTRY_BUCKET_DEFAULT};
use crate::ClusterError;

/// How long one attempt waits for the leader's answer unless the options say otherwise: the
/// longest a healthy leader takes is a batch's append (milliseconds); past this the leader is
/// taken for dead or paused.
pub const ATTEMPT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);

/// How long a submission is retried unless the options say otherwise: a lapsed lease (3 s by
/// default) and a takeover, with room to spare.
pub const RETRY_FOR_DEFAULT: Duration = Duration::from_secs(15);

/// Pause between two attempts after no responders (an election under way) or a refusal that
/// a retry may get past (`not_leader`, a keyed `outcome_unknown`).
pub const RETRY_PAUSE: Duration = Duration::from_millis(50);

#[derive(Clone, Debug)]
pub struct BookClientOptions {
    pub servers: Vec<String>,
    pub subject_prefix: String,
    pub lease_bucket: String,
    pub registry_bucket: String,
    pub attempt_timeout: Duration,
    pub retry_for: Duration,
}

impl BookClientOptions {
    pub fn new(servers: Vec<String>) -> BookClientOptions {
        BookClientOptions {
            servers,
            subject_prefix: SUBJECT_PREFIX_DEFAULT.to_owned(),
            lease_bucket: LEASE_BUCKET_DEFAULT.to_owned(),
            registry_bucket: REGISTRY_BUCKET_DEFAULT.to_owned(),
            attempt_timeout: ATTEMPT_TIMEOUT_DEFAULT,
            retry_for: RETRY_FOR_DEFAULT,
        }
    }
}

/// Why a submission got no reply from the book.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The leader refused it without deciding it (`overloaded`, `storage_full`,
    /// `bad_request`): it was not applied.
    #[error("refused by the book ({}): {message}", refusal.code())]
    Refused { refusal: Refusal, message: String },
    /// It may or may not have been applied (a timeout or an engine that stopped, for a command
    /// without an idempotency key, or retries that ran out).
    #[error("the outcome is unknown: {0}")]
    OutcomeUnknown(String),
    /// No leader answered within `retry_for`, and the command reached no book.
    #[error("no leader answered: {0}")]
    NoLeader(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// A connection to the cluster's book. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BookClient {
    client: Client,
    options: BookClientOptions,
}

impl BookClient {
    pub async fn connect(options: BookClientOptions) -> Result<BookClient, ClientError> {
        let client = async_nats::ConnectOptions::new()
            .name("sportsbook-book-client")
            .connection_timeout(options.attempt_timeout)
            .connect(options.servers.as_slice())
            .await
            .map_err(|err| ClusterError::nats("connect", format!("to {}: {err}", options.servers.join(", "))))?;
        Ok(BookClient { client, options })
    }

    /// Submits a command to the leader and returns the book's reply (a business rejection is
    /// a reply), retrying across elections as the module documentation says.
    pub async fn submit(&self, submission: &Submission) -> Result<Reply, ClientError> {
        self.submit_with_position(submission).await.map(|(reply, _)| reply)
    }

    /// [`BookClient::submit`], with the journal position after the reply's batch (a replica
    /// that has applied that far holds the command).
    pub async fn submit_with_position(&self, submission: &Submission) -> Result<(Reply, u64), ClientError> {
        let keyed = submission.command.idempotency().is_some();
        let payload = bytes::Bytes::from(protocol::encode_request(submission));
        let subject = protocol::submit_subject(&self.options.subject_prefix);
        let deadline = Instant::now() + self.options.retry_for;
        // Whether an attempt may have reached a book: then running out of time is an unknown
        // outcome, not a plain "no leader".
        let mut maybe_applied = false;
        let mut last = String::from("no attempt made");
        while Instant::now() < deadline {
            let request =
                async_nats::Request::new().payload(payload.clone()).timeout(Some(self.options.attempt_timeout));
            match self.client.send_request(subject.clone(), request).await {
                Ok(message) => match protocol::decode_answer(&message.payload) {
                    Ok(Answer::Reply(reply, Some(position))) => return Ok((reply, position)),
                    Ok(Answer::Reply(_, None)) => {
                        return Err(ClientError::OutcomeUnknown(
                            "the leader answered in protocol version 1, without the reply's position".into(),
                        ))
                    }
                    // A node that lost the lease answers at once until it unsubscribes: pause,
                    // so that every gateway does not spin against it.
                    Ok(Answer::Refused { refusal: Refusal::NotLeader, message }) => {
                        last = message;
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    Ok(Answer::Refused { refusal: Refusal::OutcomeUnknown, message }) if keyed => {
                        maybe_applied = true;
                        last = message;
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    Ok(Answer::Refused { refusal: Refusal::OutcomeUnknown, message }) => {
                        return Err(ClientError::OutcomeUnknown(message))
                    }
                    Ok(Answer::Refused { refusal, message }) => return Err(ClientError::Refused { refusal, message }),
                    Err(error) => {
                        return Err(ClientError::OutcomeUnknown(format!("an answer that does not decode: {error}")))
                    }
                },
                Err(error) if error.kind() == RequestErrorKind::NoResponders => {
                    last = "no leader is subscribed (an election is under way)".into();
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(error) if error.kind() == RequestErrorKind::TimedOut => {
                    if !keyed {
                        return Err(ClientError::OutcomeUnknown(format!(
                            "no answer within {:?} and the command has no idempotency key to retry with",
                            self.options.attempt_timeout
                        )));
                    }
                    maybe_applied = true;
                    last = format!("no answer within {:?}", self.options.attempt_timeout);
                }
                Err(error) => {
                    // Not sent (the connection is down): the client reconnects meanwhile.
                    last = error.to_string();
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
        let reason = format!("retried for {:?}; the last attempt: {last}", self.options.retry_for);
        Err(if maybe_applied { ClientError::OutcomeUnknown(reason) } else { ClientError::NoLeader(reason) })
    }

    /// The NATS connection under the client.
    pub fn nats(&self) -> &Client {
        &self.client
    }

    /// Whether the NATS connection is up now (the client reconnects on its own).
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// One node's status with its book's state digest (the node encodes its whole book).
    pub async fn node_status(&self, node: &str) -> Result<NodeStatus, ClientError> {
        let subject = protocol::status_subject(&self.options.subject_prefix, node);
        let request = async_nats::Request::new().timeout(Some(Duration::from_secs(30)));
        let message = self
            .client
            .send_request(subject, request)
            .await
            .map_err(|err| ClusterError::nats("ask a node's status", err))?;
        serde_json::from_slice(&message.payload).map_err(|err| {
            ClusterError::nats("ask a node's status", format!("an answer that does not decode: {err}")).into()
        })
    }

    /// The leader (the lease's holder) and the other nodes, with pids and positions.
    pub async fn cluster(&self) -> Result<ClusterView, ClientError> {
        let jetstream = async_nats::jetstream::new(self.client.clone());
        Ok(crate::registry::cluster_view(&jetstream, &self.options.lease_bucket, &self.options.registry_bucket).await?)
    }
}
