//! Request bodies turned into book commands, without a server: the pure half of the handlers
//! that take a JSON body. The handlers call these, and so do the fuzz targets, so what is
//! fuzzed is exactly what a request goes through before the book decides it.
//!
//! Each function either gives a command the book can decide or an `ApiError` with a stable
//! code (`invalid_request`, `invalid_bet`, `selection_unavailable`); it never panics.

use axum::http::StatusCode;
use book::{
    AccountId, BetKind, Command, LegRequest, MarketId, Outcome, PlaceBet, PricePolicy, ResultRequest, SelectionId,
    SystemKind,
};
use domain::Currency;
use serde::de::DeserializeOwned;

use crate::dto::{parse_id, parse_money, parse_odds};
use crate::error::ApiError;
use crate::operators::{body_id, parse_ratio, OutcomeName, SettleRequest};
use crate::players::{DepositRequest, PlaceBetRequest, WithdrawalRequest};

/// Every code these functions answer with, for tests and fuzz targets to hold them to.
pub const REQUEST_ERROR_CODES: &[&str] = &["invalid_request", "invalid_bet", "selection_unavailable"];

/// Parses a JSON body into its request type; malformed JSON or an unknown field is 400
/// `invalid_request`.
pub fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|error| ApiError::invalid(format!("invalid JSON body: {error}")))
}

fn invalid_bet(reason: &str) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_bet", reason)
}

/// `POST /v1/bets`: the bet a player asks for. The idempotency key is added by the handler.
pub fn place_bet(body: &[u8], account: AccountId, currency: Currency) -> Result<PlaceBet, ApiError> {
    place_bet_from(json_body(body)?, account, currency)
}

pub(crate) fn place_bet_from(
    request: PlaceBetRequest,
    account: AccountId,
    currency: Currency,
) -> Result<PlaceBet, ApiError> {
    let kind = match (request.kind.as_str(), request.system.as_deref()) {
        ("single", None) => BetKind::Single,
        ("multiple", None) => BetKind::Multiple,
        ("system", Some(system)) => {
            BetKind::System(SystemKind::parse(system).ok_or_else(|| invalid_bet("unknown system kind"))?)
        }
        ("system", None) => return Err(invalid_bet("a system bet names its system")),
        ("single" | "multiple", Some(_)) => return Err(invalid_bet("only system bets name a system")),
        _ => return Err(ApiError::invalid("type must be single, multiple or system").with("field", "type")),
    };
    if request.legs.is_empty() || request.legs.len() > book::constants::LEGS_MAX {
        return Err(invalid_bet("a bet has 1 to 20 legs"));
    }
    let mut legs = Vec::with_capacity(request.legs.len());
    for leg in &request.legs {
        let selection = parse_id(&leg.selection_id, "sel_", "selection").map_err(|_| {
            ApiError::new(StatusCode::CONFLICT, "selection_unavailable", "selection withdrawn or unknown")
                .with("selection_id", leg.selection_id.clone())
        })?;
        legs.push(LegRequest { selection: SelectionId(selection), price: parse_odds(&leg.price, "legs.price")? });
    }
    let policy = match request.accept_price_changes.as_deref().unwrap_or("none") {
        "none" => PricePolicy::None,
        "better" => PricePolicy::Better,
        "any" => PricePolicy::Any,
        _ => {
            return Err(ApiError::invalid("accept_price_changes must be none, better or any")
                .with("field", "accept_price_changes"))
        }
    };
    Ok(PlaceBet {
        account,
        kind,
        legs,
        stake: parse_money(currency, &request.stake, "stake")?,
        each_way: request.each_way,
        policy,
        idempotency: None,
    })
}

/// Free text of a request: `bytes_min` to `bytes_max` bytes, or 400 `invalid_request` naming
/// the field. Checked here, before the book, so that a refused request never reaches the
/// journal (each one the book refuses is journaled with its command).
pub fn check_text(text: &str, field: &str, bytes_min: usize, bytes_max: usize) -> Result<(), ApiError> {
    if (bytes_min..=bytes_max).contains(&text.len()) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("{field}: {bytes_min} to {bytes_max} bytes")).with("field", field))
    }
}

/// An operator's optional reason (`book::Origin::reason`): 1 to `REASON_BYTES_MAX` bytes.
pub fn reason(reason: Option<String>) -> Result<Option<String>, ApiError> {
    if let Some(text) = &reason {
        check_text(text, "reason", 1, book::constants::REASON_BYTES_MAX)?;
    }
    Ok(reason)
}

/// `POST /v1/wallet/deposits`: the command, and the payment instrument's token when given (the
/// monitor's shared-instrument index takes it after the deposit, `Command::NoteShared`).
pub fn deposit(body: &[u8], account: AccountId, currency: Currency) -> Result<(Command, Option<String>), ApiError> {
    let request: DepositRequest = json_body(body)?;
    let amount = parse_money(currency, &request.amount, "amount")?;
    check_text(&request.payment_ref, "payment_ref", 1, book::constants::PAYMENT_REF_BYTES_MAX)?;
    if let Some(instrument) = &request.instrument {
        check_text(instrument, "instrument", 1, book::constants::PAYMENT_REF_BYTES_MAX)?;
    }
    Ok((Command::Deposit { account, amount, payment_ref: request.payment_ref, idempotency: None }, request.instrument))
}

/// `POST /v1/wallet/withdrawals`.
pub fn withdrawal(body: &[u8], account: AccountId, currency: Currency) -> Result<Command, ApiError> {
    let request: WithdrawalRequest = json_body(body)?;
    let amount = parse_money(currency, &request.amount, "amount")?;
    Ok(Command::Withdraw { account, amount, idempotency: None })
}

/// `POST /v1/admin/markets/{id}/settle`.
pub fn settle(body: &[u8], market: MarketId) -> Result<Command, ApiError> {
    let request: SettleRequest = json_body(body)?;
    Ok(Command::SettleMarket { market, results: settle_results(&request)? })
}

pub(crate) fn settle_results(request: &SettleRequest) -> Result<Vec<ResultRequest>, ApiError> {
    let results_max = book::constants::RESULTS_MAX;
    // An empty list would settle every selection as a loser: too easy to send by mistake.
    if request.results.is_empty() || request.results.len() > results_max {
        return Err(ApiError::invalid(format!("results: 1 to {results_max} results")).with("field", "results"));
    }
    request
        .results
        .iter()
        .enumerate()
        .map(|(index, result)| {
            let field = |name: &str| format!("results[{index}].{name}");
            Ok(ResultRequest {
                selection: SelectionId(body_id(&result.selection_id, "sel_", &field("selection_id"))?),
                outcome: match result.outcome {
                    OutcomeName::Win => Outcome::Win,
                    OutcomeName::Lose => Outcome::Lose,
                    OutcomeName::Void => Outcome::Void,
                    OutcomeName::Place => Outcome::Place,
                },
                dead_heat: result
                    .dead_heat_factor
                    .as_deref()
                    .map(|text| parse_ratio(text, &field("dead_heat_factor")))
                    .transpose()?,
                void_factor: result
                    .void_factor
                    .as_deref()
                    .map(|text| parse_ratio(text, &field("void_factor")))
                    .transpose()?,
            })
        })
        .collect()
}
