//! The wire protocol between gateways and the book's leader: NATS request/reply on
//! `<prefix>.submit`, answered only by the leader (the only node subscribed, in one queue
//! group), with the codec's own encodings of a command, its origin and the book's reply.
//!
//! Why NATS request/reply: the cluster already runs NATS for the journal, so gateways find the
//! leader by subject, not by address (no service discovery, no leader address to publish and
//! go stale); "no responders" tells at once that no leader is subscribed (an election is under
//! way) and that the command reached nobody; and the payloads are the codec's, the one format
//! every command already has.
//!
//! A request is its version, the command, its origin. An answer is the request's version,
//! then tag 0 and the book's `Reply` (a business rejection is a reply too) and, from version
//! 2, the journal position after the reply's batch (a gateway's replica shows the reply once
//! it has applied that far); or a [`Refusal`] tag and a message. The leader answers each
//! request in the version it came in (a version 1 client keeps working during an upgrade).
//! The status of a node is JSON on `<prefix>.status.<node>`.

use book::{Command, Origin, Reply};
use codec::{DecodeError, Reader, Wire};
use engine::{EngineError, Submission};

/// Version of the request and answer encodings this side writes. Version 2 added the position
/// to a reply; requests are the same in both.
pub const PROTOCOL_VERSION: u8 = 2;

/// The oldest version still read.
pub const PROTOCOL_VERSION_MIN: u8 = 1;

/// Subjects of the protocol start with this unless the options say otherwise.
pub const SUBJECT_PREFIX_DEFAULT: &str = "sportsbook.book";

/// Queue group of the leader's subscription: should two nodes both believe they lead for a
/// moment (a paused leader resuming), each request still goes to one of them.
pub const SUBMIT_QUEUE_GROUP: &str = "book-leader";

/// Largest encoded request the leader accepts (a feed message with many markets is the
/// largest command); a larger one is refused `bad_request` before it reaches the book.
pub const REQUEST_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Longest message of a refusal.
pub const REFUSAL_MESSAGE_BYTES_MAX: usize = 4096;

/// Subject of command submissions.
pub fn submit_subject(prefix: &str) -> String {
    format!("{prefix}.submit")
}

/// Subject of one node's status requests.
pub fn status_subject(prefix: &str, node: &str) -> String {
    format!("{prefix}.status.{node}")
}

/// Why the leader (or a node that believed it led) did not give the book's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The node is not the leader (any more): the command reached no book. Safe to retry.
    NotLeader,
    /// The engine's inbox is full: the command was not taken.
    Overloaded,
    /// The journal's disk is full: the command was not taken.
    StorageFull,
    /// The request did not decode or is too large.
    BadRequest,
    /// The engine stopped after a failed append (fenced by a newer leader, or an append whose
    /// outcome is unknown): the command may or may not be in the journal. Retry only with an
    /// idempotency key.
    OutcomeUnknown,
}

impl Refusal {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::NotLeader => "not_leader",
            Refusal::Overloaded => "overloaded",
            Refusal::StorageFull => "storage_full",
            Refusal::BadRequest => "bad_request",
            Refusal::OutcomeUnknown => "outcome_unknown",
        }
    }

    fn tag(self) -> u8 {
        match self {
            Refusal::NotLeader => 1,
            Refusal::Overloaded => 2,
            Refusal::StorageFull => 3,
            Refusal::BadRequest => 4,
            Refusal::OutcomeUnknown => 5,
        }
    }

    fn from_tag(tag: u8) -> Option<Refusal> {
        Some(match tag {
            1 => Refusal::NotLeader,
            2 => Refusal::Overloaded,
            3 => Refusal::StorageFull,
            4 => Refusal::BadRequest,
            5 => Refusal::OutcomeUnknown,
            _ => return None,
        })
    }

    /// What the engine's error means for the submitter.
    pub fn of_engine_error(error: &EngineError) -> Refusal {
        match error {
            EngineError::Overloaded => Refusal::Overloaded,
            EngineError::StorageFull => Refusal::StorageFull,
            // Refused before it was decided: no batch can hold it.
            EngineError::CommandTooLarge { .. } => Refusal::BadRequest,
            // The engine is gone or going: the command may have been in a batch whose append
            // failed in an unknown way; never claim it was not.
            _ => Refusal::OutcomeUnknown,
        }
    }
}

/// The leader's answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The book decided the command (accepted or rejected) and the batch is durable; the
    /// journal position after that batch (`None` in a version 1 answer).
    Reply(Reply, Option<u64>),
    /// No reply from the book, and why.
    Refused { refusal: Refusal, message: String },
}

pub fn encode_request(submission: &Submission) -> Vec<u8> {
    let mut out = vec![PROTOCOL_VERSION];
    submission.command.encode(&mut out);
    submission.origin.encode(&mut out);
    out
}

/// A request and the version it came in.
pub fn decode_request(bytes: &[u8]) -> Result<(Submission, u8), DecodeError> {
    if bytes.len() > REQUEST_BYTES_MAX {
        return Err(DecodeError {
            offset: 0,
            reason: format!("a request of {} bytes exceeds {REQUEST_BYTES_MAX}", bytes.len()),
        });
    }
    let mut input = Reader::new(bytes);
    let version = check_version(&mut input)?;
    let command = Command::decode(&mut input)?;
    let origin = Origin::decode(&mut input)?;
    input.finish()?;
    Ok((Submission { command, origin }, version))
}

/// The answer in `version` (the request's): version 1 has no position.
pub fn encode_answer(answer: &Answer, version: u8) -> Vec<u8> {
    let mut out = vec![version];
    match answer {
        Answer::Reply(reply, position) => {
            out.push(0);
            reply.encode(&mut out);
            if version >= 2 {
                position.unwrap_or(0).encode(&mut out);
            }
        }
        Answer::Refused { refusal, message } => {
            out.push(refusal.tag());
            let mut end = message.len().min(REFUSAL_MESSAGE_BYTES_MAX);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message[..end].to_owned().encode(&mut out);
        }
    }
    out
}

pub fn decode_answer(bytes: &[u8]) -> Result<Answer, DecodeError> {
    let mut input = Reader::new(bytes);
    let version = check_version(&mut input)?;
    let tag = u8::decode(&mut input)?;
    let answer = if tag == 0 {
        let reply = Reply::decode(&mut input)?;
        let position = if version >= 2 { Some(u64::decode(&mut input)?) } else { None };
        Answer::Reply(reply, position)
    } else {
        let refusal = Refusal::from_tag(tag).ok_or_else(|| input.error(format!("unknown answer tag {tag}")))?;
        Answer::Refused { refusal, message: String::decode(&mut input)? }
    };
    input.finish()?;
    Ok(answer)
}

fn check_version(input: &mut Reader<'_>) -> Result<u8, DecodeError> {
    let version = u8::decode(input)?;
    if !(PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION).contains(&version) {
        return Err(input.error(format!(
            "protocol version {version}, this node speaks {PROTOCOL_VERSION_MIN} to {PROTOCOL_VERSION}"
        )));
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use book::{Ack, Rejection};

    use super::*;

    #[test]
    fn requests_and_answers_round_trip() {
        let submission = Submission {
            command: Command::OpenAccount { currency: domain_currency() },
            origin: Origin::system("test"),
        };
        assert_eq!(decode_request(&encode_request(&submission)).unwrap(), (submission.clone(), PROTOCOL_VERSION));
        // A version 1 request (the same layout) is read, and answered in version 1.
        let mut old = encode_request(&submission);
        old[0] = 1;
        assert_eq!(decode_request(&old).unwrap(), (submission, 1));
        for answer in [
            Answer::Reply(Ok(Ack::Done), Some(7)),
            Answer::Reply(Err(Rejection::InsufficientFunds), Some(0)),
            Answer::Refused { refusal: Refusal::NotLeader, message: "a follower".into() },
            Answer::Refused { refusal: Refusal::OutcomeUnknown, message: "fenced".into() },
        ] {
            assert_eq!(decode_answer(&encode_answer(&answer, PROTOCOL_VERSION)).unwrap(), answer);
        }
        assert_eq!(
            decode_answer(&encode_answer(&Answer::Reply(Ok(Ack::Done), Some(7)), 1)).unwrap(),
            Answer::Reply(Ok(Ack::Done), None)
        );
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        assert!(decode_request(&[]).is_err());
        assert!(decode_request(&[PROTOCOL_VERSION + 1]).is_err());
        assert!(decode_request(&[PROTOCOL_VERSION, 200, 1, 2]).is_err());
        assert!(decode_answer(&[PROTOCOL_VERSION, 99]).is_err());
        let mut trailing = encode_answer(&Answer::Reply(Ok(Ack::Done), Some(1)), PROTOCOL_VERSION);
        trailing.push(0);
        assert!(decode_answer(&trailing).is_err());
        assert!(decode_request(&vec![PROTOCOL_VERSION; REQUEST_BYTES_MAX + 1]).is_err());
    }

    fn domain_currency() -> domain::Currency {
        domain::Currency::EUR
    }
}
