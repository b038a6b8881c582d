//! The UOF provider's HTTP API: recovery requests, market descriptions and fixtures.
//!
//! Paths and parameters as the provider's SDKs call them (Sportradar `UnifiedOddsSdkNet`
//! `RecoveryRequestIssuer`, `UnifiedOddsSdkJava` `DataProvider` wiring, minus5 `go-uof-sdk`):
//! - `POST {base}/v1/{producer}/recovery/initiate_request?after={ms}&request_id={id}&node_id={n}`
//!   (`after` omitted for a full odds recovery; `node_id` only when configured);
//! - `GET {base}/v1/descriptions/{lang}/markets.xml?include_mappings=true`;
//! - `GET {base}/v1/sports/{lang}/sport_events/{urn}/fixture.xml`;
//! - `GET {base}/v1/descriptions/producers.xml` (the producers it offers, [`crate::producers`]);
//!
//! every request with the access token in the `x-access-token` header. `{producer}` is the
//! producer's name in the provider's `producers.xml` (`liveodds` for 1, `pre` for 3): the
//! settings map producer ids to names.
//!
//! Transport: `reqwest` (already in the workspace for the tests and the load generator) over
//! rustls with ring, the TLS stack lapin's `amqps://` builds. An `https://` base URL (the
//! provider's own, `https://api.betradar.com`) has the server's certificate and host name
//! checked against the system's roots plus the PEM certificates of [`ApiSettings::ca_pem`] (the
//! CA file `amqps://` sources trust, `--feed-ca`); `http://` stays for local stand-ins; any
//! other scheme is refused by [`UofApi::new`]. A refused certificate is
//! [`ApiError::Certificate`] (`tls_certificate`, rustls's reason in the message), another TLS
//! failure [`ApiError::Tls`] (`tls`): logged and counted as every other API error. Responses are
//! read with a size cap ([`MAX_RESPONSE_BYTES`]) and every request has a timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::recovery::RecoveryRequest;

/// Largest response body read (the full `markets.xml` with mappings is a few MB).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Where the provider's API is and how to authenticate.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Scheme, host and optional port, e.g. `https://api.betradar.com` or
    /// `http://127.0.0.1:8080` (no `/v1`).
    pub base_url: String,
    /// Sent as `x-access-token`.
    pub access_token: String,
    /// `node_id` of recovery requests (lets several nodes share one access token); `None`
    /// omits it.
    pub node_id: Option<u32>,
    /// Language of descriptions and fixtures (`en`).
    pub language: String,
    /// Per-request timeout (connect + answer).
    pub timeout: Duration,
    /// Producer id → the name in the recovery path.
    pub producer_names: BTreeMap<u32, String>,
    /// PEM certificates of CAs trusted for an `https://` base URL besides the system's roots
    /// (`AmqpSource::read_ca_file` reads them); `None`: the system's roots only.
    pub ca_pem: Option<String>,
}

impl ApiSettings {
    /// Settings with the provider's usual producer names (1 `liveodds`, 3 `pre`).
    pub fn new(base_url: impl Into<String>, access_token: impl Into<String>) -> Self {
        let producer_names = [(1, "liveodds"), (3, "pre")].into_iter().map(|(id, n)| (id, n.to_string())).collect();
        Self {
            base_url: base_url.into(),
            access_token: access_token.into(),
            node_id: None,
            language: "en".to_string(),
            timeout: Duration::from_secs(30),
            producer_names,
            ca_pem: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the provider API base URL `{0}` is not an https:// or http:// URL")]
    BadBaseUrl(String),
    #[error("the CA certificates for the provider API are not usable: {0}")]
    BadCa(String),
    #[error("no name configured for producer {0} (set it in the provider's API settings)")]
    UnknownProducer(u32),
    #[error("a value in the request path is not allowed: `{0}`")]
    BadPathValue(String),
    #[error("request to {url} failed: {source}")]
    Transport { url: String, source: reqwest::Error },
    #[error("request to {url} failed: the provider's certificate was refused: {detail}")]
    Certificate { url: String, detail: String },
    #[error("request to {url} failed: TLS: {detail}")]
    Tls { url: String, detail: String },
    #[error("{url} answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url}: the answer exceeds {MAX_RESPONSE_BYTES} bytes")]
    TooLarge { url: String },
    #[error("{url}: the answer is not UTF-8")]
    NotUtf8 { url: String },
    #[error("{url}: {source}")]
    Producers { url: String, source: crate::producers::ProducersError },
}

impl ApiError {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadBaseUrl(_) => "bad_base_url",
            ApiError::BadCa(_) => "bad_ca",
            ApiError::UnknownProducer(_) => "unknown_producer",
            ApiError::BadPathValue(_) => "bad_path_value",
            ApiError::Transport { .. } => "transport",
            ApiError::Certificate { .. } => "tls_certificate",
            ApiError::Tls { .. } => "tls",
            ApiError::Status { .. } => "status",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::NotUtf8 { .. } => "not_utf8",
            ApiError::Producers { .. } => "bad_producers",
        }
    }
}

/// A client of the provider's API. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct UofApi {
    http: reqwest::Client,
    base: String,
    settings: ApiSettings,
}

/// A transport failure, told apart when TLS caused it: a rustls error somewhere down the
/// error's sources (through `std::io::Error`s, whose own `source` skips the error they wrap).
fn transport_error(url: &str, source: reqwest::Error) -> ApiError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&source);
    while let Some(current) = cause {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            let (url, detail) = (url.to_string(), tls.to_string());
            return match tls {
                rustls::Error::InvalidCertificate(_) => ApiError::Certificate { url, detail },
                _ => ApiError::Tls { url, detail },
            };
        }
        cause = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => current.source(),
        };
    }
    ApiError::Transport { url: url.to_string(), source }
}

/// The DER certificates of a PEM bundle, each checked to be a usable trust anchor (as rustls
/// will take it), at least one.
fn ca_certificates(pem: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ApiError> {
    use rustls::pki_types::pem::PemObject;
    let mut certificates = Vec::new();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let certificate = certificate.map_err(|error| ApiError::BadCa(format!("PEM: {error}")))?;
        rustls::RootCertStore::empty()
            .add(certificate.clone())
            .map_err(|error| ApiError::BadCa(format!("certificate {}: {error}", certificates.len() + 1)))?;
        certificates.push(certificate);
    }
    if certificates.is_empty() {
        return Err(ApiError::BadCa("no PEM certificate".to_string()));
    }
    Ok(certificates)
}

/// An error with its sources, `: `-separated (reqwest's own message alone hides the reason).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        text.push_str(": ");
        text.push_str(&current.to_string());
        cause = current.source();
    }
    text
}

/// Path segments come from settings and feed messages (an event URN): only characters the
/// provider's ids use are let through, so nothing can change the path or the query.
fn path_value(value: &str) -> Result<&str, ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 200
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-' | b'.'))
        && value != "."
        && value != "..";
    if ok {
        Ok(value)
    } else {
        Err(ApiError::BadPathValue(value.chars().take(200).collect()))
    }
}

impl UofApi {
    pub fn new(settings: ApiSettings) -> Result<Self, ApiError> {
        let base = settings.base_url.trim_end_matches('/').to_string();
        let rest = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"))
            .ok_or_else(|| ApiError::BadBaseUrl(base.clone()))?;
        if rest.is_empty() || rest.contains(['?', '#', ' ']) {
            return Err(ApiError::BadBaseUrl(base));
        }
        path_value(&settings.language)?;
        // The system's roots are loaded by reqwest (`rustls-native-certs`); the CA file's
        // certificates are added to them.
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(true)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout);
        if let Some(pem) = &settings.ca_pem {
            for certificate in ca_certificates(pem)? {
                let certificate = reqwest::Certificate::from_der(&certificate)
                    .map_err(|error| ApiError::BadCa(error_chain(&error)))?;
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|source| ApiError::Transport { url: base.clone(), source })?;
        Ok(Self { http, base, settings })
    }

    pub fn settings(&self) -> &ApiSettings {
        &self.settings
    }

    /// The URL of a recovery request (exposed for logs and tests).
    pub fn recovery_url(&self, request: &RecoveryRequest) -> Result<String, ApiError> {
        let name =
            self.settings.producer_names.get(&request.producer).ok_or(ApiError::UnknownProducer(request.producer))?;
        let mut url = format!("{}/v1/{}/recovery/initiate_request?", self.base, path_value(name)?);
        if let Some(after) = request.after {
            url.push_str(&format!("after={after}&"));
        }
        url.push_str(&format!("request_id={}", request.request_id));
        if let Some(node) = self.settings.node_id {
            url.push_str(&format!("&node_id={node}"));
        }
        Ok(url)
    }

    /// Asks the provider to replay the producer's messages; a 2xx answer means accepted (the
    /// replay then arrives on the feed, ended by `snapshot_complete` with the request's id).
    pub async fn initiate_recovery(&self, request: &RecoveryRequest) -> Result<(), ApiError> {
        let url = self.recovery_url(request)?;
        self.send(self.http.post(&url), &url).await.map(|_| ())
    }

    /// The market descriptions XML (`markets.xml`, with mappings as the SDKs ask).
    pub async fn market_descriptions(&self) -> Result<String, ApiError> {
        let url = format!("{}/v1/descriptions/{}/markets.xml?include_mappings=true", self.base, self.settings.language);
        self.send(self.http.get(&url), &url).await
    }

    /// The producers the provider offers (`producers.xml`), parsed.
    pub async fn producers(&self) -> Result<Vec<crate::producers::ProducerDescription>, ApiError> {
        let url = format!("{}/v1/descriptions/producers.xml", self.base);
        let xml = self.send(self.http.get(&url), &url).await?;
        crate::producers::parse(&xml).map_err(|source| ApiError::Producers { url, source })
    }

    /// A copy whose recovery path names also cover `names` (producer id → name, e.g. from the
    /// producers list's `api_url`s); a name the settings give is kept.
    pub fn with_producer_names(&self, names: impl IntoIterator<Item = (u32, String)>) -> UofApi {
        let mut api = self.clone();
        for (id, name) in names {
            api.settings.producer_names.entry(id).or_insert(name);
        }
        api
    }

    /// The fixture XML of one sport event (`sr:match:123`).
    pub async fn fixture(&self, event_urn: &str) -> Result<String, ApiError> {
        let url = format!(
            "{}/v1/sports/{}/sport_events/{}/fixture.xml",
            self.base,
            self.settings.language,
            path_value(event_urn)?
        );
        self.send(self.http.get(&url), &url).await
    }

    async fn send(&self, request: reqwest::RequestBuilder, url: &str) -> Result<String, ApiError> {
        let transport = |source| transport_error(url, source);
        let mut response =
            request.header("x-access-token", &self.settings.access_token).send().await.map_err(transport)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ApiError::TooLarge { url: url.to_string() });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body).chars().take(500).collect();
            return Err(ApiError::Status { url: url.to_string(), status: status.as_u16(), body: text });
        }
        String::from_utf8(body).map_err(|_| ApiError::NotUtf8 { url: url.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_urls_follow_the_sdk_shape() {
        let mut settings = ApiSettings::new("http://api.local:81/", "tok");
        let api = UofApi::new(settings.clone()).unwrap();
        let full = RecoveryRequest { producer: 1, request_id: 7, after: None };
        assert_eq!(
            api.recovery_url(&full).unwrap(),
            "http://api.local:81/v1/liveodds/recovery/initiate_request?request_id=7"
        );
        settings.node_id = Some(3);
        let api = UofApi::new(settings).unwrap();
        let after = RecoveryRequest { producer: 3, request_id: 8, after: Some(1_700_000_000_000) };
        assert_eq!(
            api.recovery_url(&after).unwrap(),
            "http://api.local:81/v1/pre/recovery/initiate_request?after=1700000000000&request_id=8&node_id=3"
        );
        let unknown = RecoveryRequest { producer: 9, request_id: 1, after: None };
        assert_eq!(api.recovery_url(&unknown).unwrap_err().code(), "unknown_producer");
    }

    #[test]
    fn base_urls_and_path_values_are_checked() {
        let api = UofApi::new(ApiSettings::new("https://api.betradar.com/", "t")).expect("https is accepted");
        assert_eq!(
            api.recovery_url(&RecoveryRequest { producer: 3, request_id: 1, after: None }).unwrap(),
            "https://api.betradar.com/v1/pre/recovery/initiate_request?request_id=1"
        );
        for bad in ["ftp://x", "api.betradar.com", "https://", "https://x/?a", "HTTPS://x"] {
            let err = UofApi::new(ApiSettings::new(bad, "t")).unwrap_err();
            assert_eq!(err.code(), "bad_base_url", "{bad}");
            assert!(err.to_string().contains("not an https:// or http:// URL"), "{err}");
        }
        let mut settings = ApiSettings::new("https://api.betradar.com", "t");
        settings.ca_pem = Some("not a certificate".to_string());
        assert_eq!(UofApi::new(settings.clone()).unwrap_err().code(), "bad_ca");
        settings.ca_pem = Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_string());
        assert_eq!(UofApi::new(settings).unwrap_err().code(), "bad_ca");
        assert!(path_value("sr:match:1").is_ok());
        for bad in ["", "..", "a/b", "a?b", "a b", "a%2f"] {
            assert!(path_value(bad).is_err(), "{bad}");
        }
    }
}
