//! The OpenAPI document of the API, served at `GET /openapi.json`: every route of `app` with
//! its parameters, bodies and responses, from the `#[utoipa::path]` annotations next to the
//! handlers and the `ToSchema` derives of the wire types.
//!
//! Responses every route can give are added here once rather than on each handler: 429
//! `rate_limited` and 503 `overloaded`/`timeout`/`unavailable` (both with `Retry-After`) from
//! admission control, the bounded book and the shared edge state (`edge/`), and 500 `internal`; and on every write (POST, PUT,
//! PATCH, DELETE) 504 `outcome_unknown`: the command reached the book but its reply did not
//! come in time (`outcome.rs`). A keyed write (one with the `Idempotency-Key` header: bets,
//! deposits, withdrawals, cash-out accept) documents its own 503: besides those, `unavailable`
//! while the read models are too far behind to tell whether the key was used (`idempotency.rs`).

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};

use crate::{
    adjustments, catalog, cluster, compliance, degraded, dto, error, feed, fx, history, kyc, monitoring, operators,
    ops, payments, players, reality, staff, stream,
};

/// Name of the one security scheme: `Authorization: Bearer <token>`.
pub const SECURITY_SCHEME: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sportsbook",
        description = "The public HTTP JSON API v1 of the sportsbook: players (registration, tokens, wallet, bets, \
            cash-out, responsible gambling), the catalog (events, markets, prices), operators (trading, risk, \
            settlement, API keys, the audit trail and regulator reports), the live stream (WebSocket) and operations (health, readiness, metrics). Money and odds are decimal strings; ids \
            are opaque strings; times are RFC 3339 UTC. Every error is `{\"error\": {\"code\", \"message\", \
            ...details}}` (the `Error` schema).",
    ),
    paths(
        players::register,
        players::login,
        players::refresh,
        players::logout,
        players::wallet,
        players::deposit,
        players::withdraw,
        players::transactions,
        players::place_bet,
        players::list_bets,
        players::get_bet,
        players::quote_cashout,
        players::accept_cashout,
        players::get_limits,
        players::put_limits,
        players::self_exclude,
        players::time_out,
        reality::get_reality_check,
        reality::put_reality_check,
        reality::acknowledge,
        catalog::list_events,
        catalog::get_event,
        catalog::get_market,
        operators::create_event,
        operators::create_market,
        operators::set_in_play,
        operators::end_event,
        operators::set_prices,
        operators::suspend_market,
        operators::resume_market,
        operators::close_market,
        operators::set_market_risk,
        operators::set_account_risk,
        operators::exposure,
        operators::settle_market,
        operators::unsettle_market,
        operators::void_market,
        operators::create_api_key,
        operators::revoke_api_key,
        staff::login,
        staff::create_staff,
        staff::disable_staff,
        staff::logout,
        staff::list_staff,
        staff::set_roles,
        adjustments::request,
        adjustments::list_pending,
        adjustments::approve,
        adjustments::reject,
        fx::fx_rates,
        fx::set_fx_rates,
        cluster::cluster,
        compliance::audit,
        compliance::report,
        history::search_bets,
        history::search_accounts,
        history::customer_view,
        feed::push_messages,
        payments::list_payments,
        payments::resolve_payment,
        payments::approve_payment,
        payments::refuse_payment,
        payments::payment_callback,
        kyc::kyc_callback,
        kyc::set_kyc,
        kyc::my_kyc,
        kyc::request_kyc,
        monitoring::get_rules,
        monitoring::put_rules,
        monitoring::list_alerts,
        monitoring::list_cases,
        monitoring::get_case,
        monitoring::act_on_case,
        monitoring::suspicious_activity,
        degraded::trading_mode,
        degraded::set_trading_mode,
        degraded::set_market_throttle,
        stream::connection::stream,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        ops::openapi_json,
    ),
    components(schemas(
        error::ApiError,
        players::RegisterRequest,
        reality::RealityCheckRequest,
        reality::RealityCheckView,
        players::PlayerView,
        players::LoginRequest,
        players::RefreshRequest,
        players::TokenView,
        players::WalletView,
        players::DepositRequest,
        players::WithdrawalRequest,
        players::TransactionView,
        players::LegBody,
        players::PlaceBetRequest,
        players::CashoutQuoteView,
        players::CashoutRequest,
        players::CashoutView,
        players::PendingLimitView,
        players::LimitView,
        players::PeriodLimitsView,
        players::LimitsView,
        players::PeriodLimitsBody,
        players::LimitsRequest,
        players::SelfExclusionRequest,
        players::TimeOutRequest,
        catalog::EventStateFilter,
        dto::PriceView,
        dto::SelectionView,
        dto::EachWayView,
        dto::MarketView,
        dto::EventView,
        dto::LegView,
        dto::BetView,
        dto::Page<dto::EventView>,
        dto::Page<dto::BetView>,
        dto::Page<players::TransactionView>,
        fx::FxRatesRequest,
        fx::FxRatesView,
        cluster::ClusterView,
        cluster::LeaderView,
        cluster::FollowerView,
        cluster::GatewayView,
        cluster::FeedView,
        operators::CreateEventRequest,
        operators::CreateMarketRequest,
        operators::NewSelectionRequest,
        operators::EachWayRequest,
        operators::SetPricesRequest,
        operators::PriceRequest,
        operators::InPlayRequest,
        operators::MarketRiskRequest,
        operators::AccountRiskRequest,
        operators::SettleRequest,
        operators::ReasonRequest,
        operators::ResultRequestBody,
        operators::OutcomeName,
        operators::CreateApiKeyRequest,
        operators::MarketRiskView,
        operators::AccountRiskView,
        operators::ExposureView,
        operators::MarketExposureView,
        operators::SelectionExposureView,
        operators::CurrencyAmountView,
        operators::SettlementView,
        operators::ApiKeyCreatedView,
        compliance::AuditResponse,
        compliance::AuditPageView,
        compliance::AuditBatchView,
        staff::StaffLoginRequest,
        staff::StaffTokenView,
        staff::CreateStaffRequest,
        staff::StaffView,
        staff::StaffCreatedView,
        staff::StaffPage,
        staff::SetRolesRequest,
        adjustments::AdjustmentRequest,
        adjustments::AdjustmentView,
        adjustments::AdjustmentPage,
        adjustments::DirectionName,
        adjustments::RejectAdjustmentRequest,
        compliance::AuditCommandView,
        compliance::ActorView,
        compliance::ActorKind,
        compliance::AuditCommand,
        compliance::AuditLimitChange,
        compliance::AuditNewSelection,
        compliance::AuditPrice,
        compliance::AuditMarketRiskChange,
        compliance::AuditResult,
        compliance::AuditVerificationView,
        compliance::ReportName,
        compliance::ReportView,
        compliance::TurnoverReport,
        compliance::TurnoverView,
        compliance::GgrReport,
        compliance::GgrView,
        compliance::ResettlementView,
        compliance::LiabilitiesReport,
        compliance::OpenBetsView,
        compliance::RgEventsReport,
        compliance::RgAccountView,
        compliance::RgLimitView,
        compliance::RgEventView,
        ops::Health,
        feed::FeedBatch,
        degraded::TradingModeRequest,
        degraded::TradingModeView,
        degraded::ThrottleRequest,
        degraded::ThrottleView,
        feed::FeedBatchResult,
        feed::FeedResultView,
        feed::FeedItemRefusal,
        payments::PaymentView,
        payments::ResolvePaymentRequest,
        payments::ResolveOutcome,
        payments::PaymentDecisionRequest,
        history::PendingPaymentView,
        payments::PaymentCallbackBody,
        kyc::KycCallbackBody,
        kyc::KycCallbackAnswer,
        kyc::KycStateView,
        kyc::SetKycRequest,
        monitoring::ThresholdBody,
        monitoring::RapidInOutBody,
        monitoring::MonitoringRulesBody,
        monitoring::AlertView,
        monitoring::AlertPage,
        monitoring::CaseActionView,
        monitoring::CaseView,
        monitoring::CasePage,
        monitoring::CaseActionBody,
        monitoring::OpenCaseView,
        monitoring::SuspiciousCaseView,
        monitoring::SuspiciousActivityReport,
        payments::PaymentCallbackAnswer,
        dto::Page<payments::PaymentView>,
        history::AdminBetView,
        history::AccountSummaryView,
        history::KycView,
        history::CustomerView,
        dto::Page<history::AdminBetView>,
        dto::Page<history::AccountSummaryView>,
    )),
    modifiers(&BearerScheme, &CommonResponses),
    tags(
        (name = "players", description = "Registration, tokens, the wallet, bets and cash-out, responsible gambling. A \
            player's JWT access token, except for the `/v1/auth` routes."),
        (name = "catalog", description = "Events and markets with their selections and current prices. Open to every \
            caller."),
        (name = "operators", description = "Fixtures, prices, market status, risk, exposure, settlement, API keys, \
            the audit trail and regulator reports. An operator API key (`sk_...`) or a staff token with the scope each route names; `admin` holds every scope."),
        (name = "staff", description = "Staff accounts: a password and a TOTP second factor give a 15-minute token \
            with the scopes of the member's roles (trader, settlement, compliance, support, admin). Created and \
            disabled by an `admin`, who also lists them and changes their roles; `POST /v1/staff/logout` revokes a \
            token."),
        (name = "adjustments", description = "Manual balance adjustments by staff members (never API keys), with a \
            reason, within each role's limit; above it, four-eyes approval by another member."),
        (name = "kyc", description = "Webhooks from the identity-verification provider, signed and \
            replay-protected exactly like the payment provider's callbacks. No bearer credential: the signature is \
            the credential."),
        (name = "monitoring", description = "AML monitoring and markers of harm: the rules (thresholds in the \
            base currency), alerts, the case queue with staff actions (journaled with actor and reason), and the \
            suspicious-activity report. Scope `compliance` (support staff read), `admin` for the rules."),
        (name = "payments", description = "Callbacks from the payment provider: signed with HMAC-SHA256 over the \
            raw body (`Payment-Signature: sha256=<hex>`), within a timestamp window, replayed ids answered with the \
            first answer. No bearer credential: the signature is the credential."),
        (name = "feed", description = "Odds providers push normalised feed messages. An API key with the `feed` \
            scope."),
        (name = "stream", description = "Live prices, market status and the player's own bets and balance over a \
            WebSocket (`GET /v1/stream`); the message shapes are in the operation's description."),
        (name = "operations", description = "Health, readiness, metrics and this document. No credential, except \
            `/metrics`: a metrics key, or loopback clients only (see the operation)."),
    ),
)]
pub struct ApiDoc;

/// The document as served.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The `bearer` scheme: players send their JWT access token, operators their API key.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT or API key")
            .description(Some(
                "`Authorization: Bearer <token>`: a player's JWT access token from `/v1/auth/login` or \
                 `/v1/auth/refresh`, or an operator API key `sk_...`. A missing or invalid credential is 401 \
                 `unauthenticated`; a valid one without the scope or for another player's resource is 403 \
                 `forbidden` (or 404).",
            ))
            .build();
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(SECURITY_SCHEME, SecurityScheme::Http(scheme));
    }
}

/// Adds the responses every route can give to every operation that does not document the
/// status itself (`/readyz` documents its own 503).
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let common = [
            ("429", error_response("Too many requests from this address or credential (`rate_limited`)", true)),
            ("500", error_response("An operational failure; `x-request-id` names the request (`internal`)", false)),
            (
                "503",
                error_response(
                    "Overloaded: the book or the server is busy (`overloaded`), the request took too long \
                     (`timeout`), or `unavailable`: the book is not accepting requests, or the shared session state \
                     (`serve --edge-state`) cannot be reached to check this access token, refresh token, logout or \
                     TOTP code",
                    true,
                ),
            ),
        ];
        let keyed_unavailable = (
            "503",
            error_response(
                &format!(
                    "Overloaded: the book or the server is busy (`overloaded`), the request took too long \
                     (`timeout`), or `unavailable`: the book is not accepting requests, the shared session state \
                     cannot be reached to check this access token, or the read models (which \
                     answer a retry after the book's idempotency window) are too far behind to tell whether this \
                     `Idempotency-Key` was used; the write waited up to {} s for them and was not done. Retry with \
                     the same key after `Retry-After`",
                    crate::KEYED_WRITE_MODELS_WAIT.as_secs()
                ),
                true,
            ),
        );
        // Any write may hand a command to the book; a request that then gives up waiting
        // cannot say it was not done.
        let outcome_unknown = (
            "504",
            error_response(
                "The command reached the book but its outcome is not known yet (`outcome_unknown`): it may \
                 have been done. Retry with the same `Idempotency-Key` to learn the first outcome; never retry \
                 a money write without it",
                true,
            ),
        );
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                if is_keyed(operation) {
                    add_responses(operation, std::slice::from_ref(&keyed_unavailable));
                }
                add_responses(operation, &common);
            }
            let writes = [&mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in writes.into_iter().flatten() {
                add_responses(operation, std::slice::from_ref(&outcome_unknown));
                add_journal_position(operation);
            }
        }
    }
}

/// Read-your-writes (`history.rs`): an answer to a write whose command reached the journal
/// carries the journal position it is durable below.
fn add_journal_position(operation: &mut Operation) {
    for (status, response) in operation.responses.responses.iter_mut() {
        let RefOr::T(response) = response else { continue };
        if !status.starts_with('2') && !status.starts_with('4') {
            continue;
        }
        let header = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
            .description(Some(
                "When the request's command reached the journal: the journal position it is durable below. Send it \
                 as `X-Min-Position` on a history read to see the write (the same credential's writes are waited \
                 for without it)",
            ))
            .build();
        response.headers.insert("X-Journal-Position".to_string(), header);
    }
}

/// Whether `operation` takes the `Idempotency-Key` header (`dto::IdempotencyKey`).
fn is_keyed(operation: &Operation) -> bool {
    operation.parameters.as_ref().is_some_and(|parameters| {
        parameters.iter().any(|parameter| {
            parameter.name == "Idempotency-Key"
                && matches!(parameter.parameter_in, utoipa::openapi::path::ParameterIn::Header)
        })
    })
}

fn add_responses(operation: &mut Operation, common: &[(&str, Response)]) {
    for (status, response) in common {
        operation.responses.responses.entry((*status).to_string()).or_insert_with(|| RefOr::T(response.clone()));
    }
}

/// A response with the `Error` body, and `Retry-After` when the client should retry.
fn error_response(description: &str, retry_after: bool) -> Response {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build();
    let mut response = ResponseBuilder::new().description(description).content("application/json", content);
    if retry_after {
        let header = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
            .description(Some("Whole seconds to wait before retrying"))
            .build();
        response = response.header("Retry-After", header);
    }
    response.build()
}
