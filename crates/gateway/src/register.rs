//! The national self-exclusion register (GAMSTOP-like), asked at registration and at login.
//!
//! `ExclusionRegister` is the provider interface: one question, "is this person excluded?",
//! answered `Excluded`, `PreviouslyExcluded` or `NotFound`. `HttpRegister` speaks the
//! GAMSTOP-like protocol over HTTP: a form POST of `firstName`, `lastName`, `dateOfBirth`
//! (`YYYY-MM-DD`), `email`, `postcode` and `mobile` with an `X-API-Key` header, answered 200
//! with `X-Exclusion: Y | P | N` and an `X-Unique-Id` (kept in the logs for the register's
//! support). `SandboxRegister` is a register server speaking that protocol on a real socket in
//! this process, with its list of excluded persons in a JSON file read at every question (so
//! an operator, or a test, adds a person by editing the file).
//!
//! The register is a regulator's control, so the gateway fails closed: a register that cannot
//! be reached, answers something else, or takes longer than `EXCLUSION_REGISTER_TIMEOUT`
//! refuses the registration or login with 503 `exclusion_register_unavailable` and
//! `Retry-After`, never lets it through. A `NotFound` at login is remembered per player for
//! `EXCLUSION_REGISTER_CACHE_TTL` (at most `EXCLUSION_REGISTER_CACHE_ENTRIES_MAX` players) so
//! that frequent logins do not each wait for the register; registration always asks.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Router};
use book::{AccountId, Command, Origin};
use domain::Date;
use serde::Deserialize;

use crate::error::ApiError;
use crate::AppState;

/// How long one question to the register may take before the gateway gives up (fail closed).
pub const EXCLUSION_REGISTER_TIMEOUT: Duration = Duration::from_secs(3);
/// The `Retry-After` of 503 `exclusion_register_unavailable`.
pub const EXCLUSION_REGISTER_RETRY_AFTER_SECONDS: u64 = 10;
/// How long a player found in no exclusion at login is not asked about again.
pub const EXCLUSION_REGISTER_CACHE_TTL: Duration = Duration::from_secs(15 * 60);
/// Players whose `NotFound` is remembered at once; past it the oldest answers are dropped.
pub const EXCLUSION_REGISTER_CACHE_ENTRIES_MAX: usize = 100_000;
/// Bytes of the sandbox's list file.
pub const SANDBOX_REGISTER_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Persons in the sandbox's list.
pub const SANDBOX_REGISTER_PERSONS_MAX: usize = 10_000;
/// Where the sandbox server answers. (A server of its own, not a route of the gateway's API:
/// the OpenAPI route check reads only the gateway's literal `.route("...")` paths.)
const SANDBOX_PATH: &str = "/";
/// Bytes of one form field the sandbox accepts.
const SANDBOX_FIELD_BYTES_MAX: usize = 256;

/// The header the register's API key travels in.
pub const API_KEY_HEADER: &str = "x-api-key";
/// The header of the answer: `Y` excluded, `P` previously excluded, `N` not found.
pub const EXCLUSION_HEADER: &str = "x-exclusion";
/// The register's id of the question, for its support.
pub const UNIQUE_ID_HEADER: &str = "x-unique-id";

/// Who the register is asked about. Unknown details are empty strings (the protocol sends
/// every field).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub first_name: String,
    pub last_name: String,
    pub date_of_birth: Date,
    pub email: String,
    pub postcode: String,
    pub mobile: String,
}

impl Person {
    /// A registered player as the book knows them (their details, when they gave any).
    pub fn of(profile: &book::Profile) -> Person {
        let details = profile.details.as_deref().cloned().unwrap_or_default();
        Person {
            first_name: details.first_name.unwrap_or_default(),
            last_name: details.last_name.unwrap_or_default(),
            date_of_birth: profile.date_of_birth,
            email: details.email.unwrap_or_default(),
            postcode: details.postcode.unwrap_or_default(),
            mobile: String::new(),
        }
    }

    /// The form fields of the protocol, in its names.
    pub fn form_fields(&self) -> [(&'static str, String); 6] {
        [
            ("firstName", self.first_name.clone()),
            ("lastName", self.last_name.clone()),
            ("dateOfBirth", self.date_of_birth.to_string()),
            ("email", self.email.clone()),
            ("postcode", self.postcode.clone()),
            ("mobile", self.mobile.clone()),
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterStatus {
    /// Excluded now: may not register or log in.
    Excluded,
    /// Was excluded, no longer is: allowed.
    PreviouslyExcluded,
    NotFound,
}

impl RegisterStatus {
    /// The protocol's `X-Exclusion` value.
    pub fn header(self) -> &'static str {
        match self {
            RegisterStatus::Excluded => "Y",
            RegisterStatus::PreviouslyExcluded => "P",
            RegisterStatus::NotFound => "N",
        }
    }

    pub fn parse_header(value: &str) -> Option<RegisterStatus> {
        match value.trim() {
            "Y" => Some(RegisterStatus::Excluded),
            "P" => Some(RegisterStatus::PreviouslyExcluded),
            "N" => Some(RegisterStatus::NotFound),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegisterError {
    #[error("the exclusion register could not be reached: {0}")]
    Unreachable(String),
    #[error("the exclusion register did not answer in time")]
    Timeout,
    #[error("the exclusion register answered outside its protocol: {0}")]
    Protocol(String),
}

pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<RegisterStatus, RegisterError>> + Send + 'a>>;

/// A national self-exclusion register.
pub trait ExclusionRegister: Send + Sync + fmt::Debug + 'static {
    fn check<'a>(&'a self, person: &'a Person) -> CheckFuture<'a>;
}

/// What an answer of the protocol says: only a 200 with a known `X-Exclusion` is an answer.
pub fn parse_answer(status: u16, exclusion: Option<&str>) -> Result<RegisterStatus, RegisterError> {
    if status != 200 {
        return Err(RegisterError::Protocol(format!("status {status}")));
    }
    let value = exclusion.ok_or_else(|| RegisterError::Protocol("no X-Exclusion header".to_string()))?;
    RegisterStatus::parse_header(value).ok_or_else(|| RegisterError::Protocol(format!("X-Exclusion {value:?}")))
}

/// A register over HTTP (the GAMSTOP-like protocol).
#[derive(Clone)]
pub struct HttpRegister {
    url: String,
    key: String,
    client: reqwest::Client,
}

impl fmt::Debug for HttpRegister {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        formatter.debug_struct("HttpRegister").field("url", &self.url).finish_non_exhaustive()
    }
}

impl HttpRegister {
    pub fn new(url: &str, key: &str, timeout: Duration) -> Result<HttpRegister, RegisterError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|error| RegisterError::Unreachable(error.to_string()))?;
        Ok(HttpRegister { url: url.to_string(), key: key.to_string(), client })
    }
}

impl ExclusionRegister for HttpRegister {
    fn check<'a>(&'a self, person: &'a Person) -> CheckFuture<'a> {
        Box::pin(async move {
            let request = self.client.post(&self.url).header(API_KEY_HEADER, &self.key).form(&person.form_fields());
            let response = request.send().await.map_err(|error| {
                if error.is_timeout() {
                    RegisterError::Timeout
                } else {
                    RegisterError::Unreachable(error.to_string())
                }
            })?;
            let header = |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok());
            let answer = parse_answer(response.status().as_u16(), header(EXCLUSION_HEADER));
            tracing::info!(
                unique_id = header(UNIQUE_ID_HEADER).unwrap_or(""),
                answer = ?answer,
                "exclusion register asked"
            );
            answer
        })
    }
}

/// Which register the gateway asks.
#[derive(Clone, Debug, Default)]
pub enum ExclusionRegisterConfig {
    /// None: nobody is checked (`--exclusion-register none`; the library's default).
    #[default]
    Off,
    /// The sandbox server in this process, with its list file (`None`: nobody is excluded).
    Sandbox { file: Option<PathBuf> },
    /// A register over HTTP at `url`, with its API key.
    Http { url: String, key: String },
}

/// The register as the gateway uses it: the provider and the logins' `NotFound` cache.
pub struct RegisterCheck {
    register: Option<Arc<dyn ExclusionRegister>>,
    /// When each player was last found in no exclusion at login.
    not_found: Mutex<HashMap<AccountId, Instant>>,
    ttl: Duration,
    /// Keeps the sandbox server (when there is one) running as long as the gateway.
    _sandbox: Option<SandboxRegister>,
}

impl RegisterCheck {
    pub fn new(register: Option<Arc<dyn ExclusionRegister>>, ttl: Duration) -> RegisterCheck {
        RegisterCheck { register, not_found: Mutex::new(HashMap::new()), ttl, _sandbox: None }
    }

    /// Builds the register the configuration names; a sandbox server starts on 127.0.0.1.
    pub async fn start(
        config: &ExclusionRegisterConfig,
        timeout: Duration,
        ttl: Duration,
    ) -> Result<RegisterCheck, ApiError> {
        let http = |url: &str, key: &str| -> Result<Arc<dyn ExclusionRegister>, ApiError> {
            Ok(Arc::new(HttpRegister::new(url, key, timeout).map_err(ApiError::internal)?))
        };
        Ok(match config {
            ExclusionRegisterConfig::Off => RegisterCheck::new(None, ttl),
            ExclusionRegisterConfig::Http { url, key } => RegisterCheck::new(Some(http(url, key)?), ttl),
            ExclusionRegisterConfig::Sandbox { file } => {
                let sandbox = SandboxRegister::start(file.clone()).await.map_err(ApiError::internal)?;
                let mut check = RegisterCheck::new(Some(http(&sandbox.url(), &sandbox.key)?), ttl);
                check._sandbox = Some(sandbox);
                check
            }
        })
    }

    async fn ask(&self, person: &Person) -> Result<Option<RegisterStatus>, ApiError> {
        let Some(register) = &self.register else { return Ok(None) };
        match register.check(person).await {
            Ok(status) => Ok(Some(status)),
            Err(error) => {
                tracing::warn!(%error, "exclusion register unavailable: refusing (fail closed)");
                Err(unavailable())
            }
        }
    }

    fn recently_not_found(&self, account: AccountId) -> bool {
        let cache = self.not_found.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.get(&account).is_some_and(|at| at.elapsed() < self.ttl)
    }

    fn remember_not_found(&self, account: AccountId) {
        if self.ttl.is_zero() {
            return;
        }
        let mut cache = self.not_found.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.len() >= EXCLUSION_REGISTER_CACHE_ENTRIES_MAX {
            let ttl = self.ttl;
            cache.retain(|_, at| at.elapsed() < ttl);
            // Still full of fresh answers: forget the oldest half (they are asked again).
            if cache.len() >= EXCLUSION_REGISTER_CACHE_ENTRIES_MAX {
                let mut ages: Vec<Instant> = cache.values().copied().collect();
                ages.sort_unstable();
                let cutoff = ages[ages.len() / 2];
                cache.retain(|_, at| *at > cutoff);
            }
        }
        cache.insert(account, Instant::now());
    }
}

fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "exclusion_register_unavailable",
        "the national self-exclusion register cannot be asked now; retry shortly",
    )
    .retry_after(EXCLUSION_REGISTER_RETRY_AFTER_SECONDS)
}

fn excluded() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "self_excluded", "this person is on the national self-exclusion register")
        .with("source", "register")
}

/// At registration: an excluded person is refused before anything is created.
pub(crate) async fn check_registration(state: &AppState, person: &Person) -> Result<(), ApiError> {
    match state.register().ask(person).await? {
        Some(RegisterStatus::Excluded) => Err(excluded()),
        _ => Ok(()),
    }
}

/// At login (after the password was verified): a player found excluded is refused and
/// self-excluded in the book, journaled with the register as its origin.
pub(crate) async fn check_login(state: &AppState, account: AccountId, person: &Person) -> Result<(), ApiError> {
    let register = state.register();
    if register.recently_not_found(account) {
        return Ok(());
    }
    match register.ask(person).await? {
        Some(RegisterStatus::Excluded) => {
            let command = Command::SelfExclude { account, days: book::constants::SELF_EXCLUSION_DAYS_MIN };
            let origin = Origin::system("exclusion_register")
                .with_reason(Some("found on the national self-exclusion register at login".to_string()));
            // The refusal stands whatever the book answers (it only fails for an unknown
            // account, which a verified login cannot be).
            if let Err(rejection) = state.submit(command, origin).await? {
                tracing::warn!(code = rejection.code(), "recording a register exclusion refused");
            }
            Err(excluded())
        }
        Some(_) => {
            register.remember_not_found(account);
            Ok(())
        }
        None => Ok(()),
    }
}

// ---- the sandbox register server ----------------------------------------------------------

/// One person on the sandbox's list (`--exclusion-register-file`, a JSON array of these).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListedPerson {
    pub first_name: String,
    pub last_name: String,
    /// `YYYY-MM-DD`.
    pub date_of_birth: String,
    #[serde(default)]
    pub email: Option<String>,
    /// `excluded` (the default) or `previously_excluded`.
    #[serde(default)]
    pub status: Option<String>,
}

/// Parses a sandbox list file.
pub fn parse_list(text: &str) -> Result<Vec<ListedPerson>, String> {
    let persons: Vec<ListedPerson> = serde_json::from_str(text).map_err(|error| error.to_string())?;
    if persons.len() > SANDBOX_REGISTER_PERSONS_MAX {
        return Err(format!("more than {SANDBOX_REGISTER_PERSONS_MAX} persons"));
    }
    for person in &persons {
        Date::parse(&person.date_of_birth).map_err(|_| format!("date_of_birth {:?}", person.date_of_birth))?;
        if !matches!(person.status.as_deref(), None | Some("excluded" | "previously_excluded")) {
            return Err(format!("status {:?}", person.status));
        }
    }
    Ok(persons)
}

/// The sandbox's answer about `person`: listed when the date of birth matches and either both
/// names or the e-mail address match (case and surrounding spaces ignored).
pub fn sandbox_status(persons: &[ListedPerson], person: &SandboxQuestion) -> RegisterStatus {
    let same = |left: &str, right: &str| !left.trim().is_empty() && left.trim().eq_ignore_ascii_case(right.trim());
    let listed = persons.iter().find(|listed| {
        listed.date_of_birth == person.date_of_birth.trim()
            && ((same(&listed.first_name, &person.first_name) && same(&listed.last_name, &person.last_name))
                || listed.email.as_deref().is_some_and(|email| same(email, &person.email)))
    });
    match listed.map(|listed| listed.status.as_deref()) {
        None => RegisterStatus::NotFound,
        Some(Some("previously_excluded")) => RegisterStatus::PreviouslyExcluded,
        Some(_) => RegisterStatus::Excluded,
    }
}

/// The form a register is asked with.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxQuestion {
    pub first_name: String,
    pub last_name: String,
    pub date_of_birth: String,
    pub email: String,
    pub postcode: String,
    pub mobile: String,
}

impl SandboxQuestion {
    fn fits(&self) -> bool {
        [&self.first_name, &self.last_name, &self.date_of_birth, &self.email, &self.postcode, &self.mobile]
            .iter()
            .all(|field| field.len() <= SANDBOX_FIELD_BYTES_MAX)
    }
}

#[derive(Clone)]
struct SandboxState {
    key: Arc<str>,
    file: Option<Arc<PathBuf>>,
}

/// The sandbox register server, on 127.0.0.1 and a port of its own. It stops when dropped.
pub struct SandboxRegister {
    address: SocketAddr,
    key: String,
    server: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for SandboxRegister {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("SandboxRegister").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Drop for SandboxRegister {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl SandboxRegister {
    /// Starts the server; its list is `file` (read at every question), or nobody.
    pub async fn start(file: Option<PathBuf>) -> std::io::Result<SandboxRegister> {
        let key = format!("sandbox_{}", crate::auth::random_token());
        let state = SandboxState { key: Arc::from(key.as_str()), file: file.map(Arc::new) };
        let router = Router::new().route(SANDBOX_PATH, post(sandbox_check)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "the exclusion register sandbox stopped");
            }
        });
        tracing::info!(%address, "exclusion register sandbox listening");
        Ok(SandboxRegister { address, key, server })
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

async fn sandbox_check(
    State(state): State<SandboxState>,
    headers: HeaderMap,
    question: Result<Form<SandboxQuestion>, axum::extract::rejection::FormRejection>,
) -> Response {
    let key = headers.get(API_KEY_HEADER).and_then(|value| value.to_str().ok());
    if key != Some(&*state.key) {
        return (StatusCode::FORBIDDEN, "unknown API key").into_response();
    }
    let Ok(Form(question)) = question else {
        return (StatusCode::BAD_REQUEST, "the form needs firstName, lastName, dateOfBirth, email, postcode, mobile")
            .into_response();
    };
    if !question.fits() {
        return (StatusCode::BAD_REQUEST, "a field is too long").into_response();
    }
    let persons = match &state.file {
        None => Vec::new(),
        Some(path) => match read_list(path).await {
            Ok(persons) => persons,
            Err(error) => {
                tracing::error!(%error, path = %path.display(), "the exclusion register sandbox cannot read its list");
                return (StatusCode::INTERNAL_SERVER_ERROR, "the list cannot be read").into_response();
            }
        },
    };
    let status = sandbox_status(&persons, &question);
    let unique_id = format!("sandbox-{}", &crate::auth::random_token()[..16]);
    (StatusCode::OK, [(EXCLUSION_HEADER, status.header().to_string()), (UNIQUE_ID_HEADER, unique_id)]).into_response()
}

async fn read_list(path: &std::path::Path) -> Result<Vec<ListedPerson>, String> {
    let path = path.to_path_buf();
    let read = move || {
        let metadata = std::fs::metadata(&path).map_err(|error| error.to_string())?;
        if metadata.len() > SANDBOX_REGISTER_FILE_BYTES_MAX {
            return Err(format!("over {SANDBOX_REGISTER_FILE_BYTES_MAX} bytes"));
        }
        let text = std::fs::read_to_string(&path).map_err(|error| error.to_string())?;
        parse_list(&text)
    };
    tokio::task::spawn_blocking(read).await.map_err(|error| error.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> Person {
        Person {
            first_name: "Ada".to_string(),
            last_name: "Lovelace".to_string(),
            date_of_birth: Date::parse("1990-12-10").expect("date"),
            email: "ada@example.com".to_string(),
            postcode: "SW1A 1AA".to_string(),
            mobile: String::new(),
        }
    }

    #[test]
    fn the_form_carries_the_six_fields_by_their_protocol_names() {
        let names: Vec<&str> = ada().form_fields().iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["firstName", "lastName", "dateOfBirth", "email", "postcode", "mobile"]);
        assert_eq!(ada().form_fields()[2].1, "1990-12-10");
    }

    #[test]
    fn only_a_200_with_a_known_header_is_an_answer() {
        assert_eq!(parse_answer(200, Some("Y")), Ok(RegisterStatus::Excluded));
        assert_eq!(parse_answer(200, Some("P")), Ok(RegisterStatus::PreviouslyExcluded));
        assert_eq!(parse_answer(200, Some("N")), Ok(RegisterStatus::NotFound));
        for (status, header) in [(200, None), (200, Some("maybe")), (200, Some("")), (403, Some("N")), (500, None)] {
            assert!(matches!(parse_answer(status, header), Err(RegisterError::Protocol(_))), "{status} {header:?}");
        }
        for status in [RegisterStatus::Excluded, RegisterStatus::PreviouslyExcluded, RegisterStatus::NotFound] {
            assert_eq!(RegisterStatus::parse_header(status.header()), Some(status));
        }
    }

    #[test]
    fn the_sandbox_matches_names_or_email_with_the_date_of_birth() {
        let list = parse_list(
            r#"[{"first_name": "ADA", "last_name": " lovelace ", "date_of_birth": "1990-12-10"},
                {"first_name": "X", "last_name": "Y", "date_of_birth": "1985-01-01", "email": "bob@example.com",
                 "status": "previously_excluded"}]"#,
        )
        .expect("list");
        let question = |first: &str, last: &str, dob: &str, email: &str| SandboxQuestion {
            first_name: first.to_string(),
            last_name: last.to_string(),
            date_of_birth: dob.to_string(),
            email: email.to_string(),
            postcode: String::new(),
            mobile: String::new(),
        };
        assert_eq!(sandbox_status(&list, &question("Ada", "Lovelace", "1990-12-10", "")), RegisterStatus::Excluded);
        assert_eq!(sandbox_status(&list, &question("Ada", "Lovelace", "1990-12-11", "")), RegisterStatus::NotFound);
        assert_eq!(sandbox_status(&list, &question("", "", "1990-12-10", "")), RegisterStatus::NotFound);
        assert_eq!(
            sandbox_status(&list, &question("", "", "1985-01-01", "BOB@example.com")),
            RegisterStatus::PreviouslyExcluded
        );
        assert!(parse_list(r#"[{"first_name": "a", "last_name": "b", "date_of_birth": "1990-13-01"}]"#).is_err());
        assert!(parse_list(r#"[{"first_name": "a", "last_name": "b", "date_of_birth": "1990-01-01", "status": "x"}]"#)
            .is_err());
        assert!(parse_list(r#"{"persons": []}"#).is_err());
    }

    /// The HTTP provider against the sandbox server over a real socket: the protocol end to
    /// end, a wrong key refused, and a closed port unreachable.
    #[tokio::test]
    async fn the_http_provider_asks_the_sandbox_over_a_socket() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("excluded.json");
        std::fs::write(&file, r#"[{"first_name": "Ada", "last_name": "Lovelace", "date_of_birth": "1990-12-10"}]"#)
            .expect("write");
        let sandbox = SandboxRegister::start(Some(file)).await.expect("sandbox");
        let register = HttpRegister::new(&sandbox.url(), sandbox.key(), EXCLUSION_REGISTER_TIMEOUT).expect("client");
        assert_eq!(register.check(&ada()).await, Ok(RegisterStatus::Excluded));
        let other = Person { first_name: "Grace".to_string(), ..ada() };
        assert_eq!(register.check(&other).await, Ok(RegisterStatus::NotFound));
        let wrong_key = HttpRegister::new(&sandbox.url(), "wrong", EXCLUSION_REGISTER_TIMEOUT).expect("client");
        assert!(matches!(wrong_key.check(&ada()).await, Err(RegisterError::Protocol(_))));
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address")
        };
        let down = HttpRegister::new(&format!("http://{closed}/"), "k", EXCLUSION_REGISTER_TIMEOUT).expect("client");
        assert!(matches!(down.check(&ada()).await, Err(RegisterError::Unreachable(_))));
    }
}
