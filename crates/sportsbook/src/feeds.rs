//! The feed role in the serving process: the providers' sources given on the command line
//! (`--feed-source`), the simulated in-process provider of the demo, and `sportsbook
//! feed-sim`, which runs the simulator as a provider of its own (WebSocket or UOF over AMQP)
//! for other processes to follow.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use book::{FeedItem, FeedMessage, MarketStatus};
use engine::EngineHandle;
use feed::provider::{Output, Pace};
use feed::provider_api::ProviderApi;
use feed::simulator::{Chaos, FeedSimulator, SimulatorConfig};
use feed::transport::{follow_amqp_source, follow_websocket, AmqpProvider, AmqpSource, WebSocketProvider};
use feed::FeedHub;

/// The provider name of the demo's simulated feed.
pub const DEMO_PROVIDER: &str = "sim";
/// Fixtures the demo's simulated feed keeps running.
pub const DEMO_FIXTURES: usize = 4;
/// The product id the UOF-style adapter and the simulator use.
pub const UOF_PRODUCT: u32 = 1;
/// Bet delay of events the UOF-style adapter sees go live.
pub const UOF_IN_PLAY_DELAY_SECONDS: u32 = 5;

/// One source of a provider: `NAME=ws+URL` or `NAME=uof+AMQP_URL#EXCHANGE`. Sources of one
/// provider are given in order of preference: the first is the primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedSource {
    pub provider: String,
    pub kind: SourceKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    WebSocket { url: String },
    Uof { amqp_url: String, exchange: String },
}

impl SourceKind {
    /// For logs: the source with the credentials of its URL replaced by `***` (an AMQP URL's
    /// `user:password@`, a WebSocket URL's token in its query string: the provider's credential
    /// has no place in a log), as `feed::transport::redact_url` has it.
    pub fn redacted(&self) -> String {
        match self {
            SourceKind::WebSocket { url } => format!("ws+{}", feed::transport::redact_url(url)),
            SourceKind::Uof { amqp_url, exchange } => {
                format!("uof+{}#{exchange}", feed::transport::redact_url(amqp_url))
            }
        }
    }
}

impl std::str::FromStr for FeedSource {
    type Err = String;

    fn from_str(text: &str) -> Result<FeedSource, String> {
        let usage = "a feed source is NAME=ws+URL or NAME=uof+AMQP_URL#EXCHANGE";
        let (provider, rest) = text.split_once('=').ok_or(usage)?;
        if provider.is_empty() || provider.len() > 200 {
            return Err("a provider name is 1 to 200 bytes".to_string());
        }
        let kind = if let Some(url) = rest.strip_prefix("ws+") {
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                return Err(format!("{url:?} is not a ws:// or wss:// URL"));
            }
            SourceKind::WebSocket { url: url.to_string() }
        } else if let Some(location) = rest.strip_prefix("uof+") {
            let (amqp_url, exchange) = location.split_once('#').ok_or(usage)?;
            if !(amqp_url.starts_with("amqp://") || amqp_url.starts_with("amqps://")) || exchange.is_empty() {
                return Err(usage.to_string());
            }
            SourceKind::Uof { amqp_url: amqp_url.to_string(), exchange: exchange.to_string() }
        } else {
            return Err(usage.to_string());
        };
        Ok(FeedSource { provider: provider.to_string(), kind })
    }
}

impl FeedSource {
    /// A name for the source in logs and metrics: `primary`, then `backup`, `backup2` ...
    fn role(position: usize) -> String {
        match position {
            0 => "primary".to_string(),
            1 => "backup".to_string(),
            n => format!("backup{n}"),
        }
    }
}

/// The environment variable holding the UOF provider's access token (never a flag, never
/// logged).
pub const UOF_TOKEN_ENV: &str = "SPORTSBOOK_UOF_ACCESS_TOKEN";

/// The UOF provider's API and broker settings of `serve`.
#[derive(Clone, Default)]
pub struct UofOptions {
    pub api_url: Option<String>,
    pub node_id: Option<u32>,
    /// PEM certificates trusted for `amqps://` sources and an `https://` API URL besides the
    /// system's roots (`--feed-ca`, env SPORTSBOOK_UOF_CA_FILE).
    pub ca_file: Option<std::path::PathBuf>,
    /// What every `uof+` source consumes (`--uof-interest`, env SPORTSBOOK_UOF_INTEREST).
    pub interest: Option<feed::uof::Interest>,
    access_token: String,
}

impl std::fmt::Debug for UofOptions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("UofOptions")
            .field("api_url", &self.api_url)
            .field("node_id", &self.node_id)
            .field("ca_file", &self.ca_file)
            .field("interest", &self.interest)
            .field("access_token", &if self.access_token.is_empty() { "(none)" } else { "(set)" })
            .finish()
    }
}

impl UofOptions {
    /// Flags first, then SPORTSBOOK_UOF_API_URL / SPORTSBOOK_UOF_NODE_ID /
    /// SPORTSBOOK_UOF_CA_FILE / SPORTSBOOK_UOF_INTEREST; the token from
    /// SPORTSBOOK_UOF_ACCESS_TOKEN.
    pub fn from_env(
        api_url: Option<String>,
        node_id: Option<u32>,
        ca_file: Option<std::path::PathBuf>,
        interest: Option<String>,
    ) -> anyhow::Result<UofOptions> {
        let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let api_url = api_url.or_else(|| env("SPORTSBOOK_UOF_API_URL"));
        let node_id = match node_id {
            Some(node) => Some(node),
            None => match env("SPORTSBOOK_UOF_NODE_ID") {
                Some(text) => {
                    Some(text.parse().with_context(|| format!("SPORTSBOOK_UOF_NODE_ID={text:?} is not a number"))?)
                }
                None => None,
            },
        };
        let ca_file = ca_file.or_else(|| env("SPORTSBOOK_UOF_CA_FILE").map(std::path::PathBuf::from));
        let interest = interest
            .or_else(|| env("SPORTSBOOK_UOF_INTEREST"))
            .map(|text| feed::uof::Interest::parse(&text))
            .transpose()
            .map_err(anyhow::Error::msg)?;
        Ok(UofOptions {
            api_url,
            node_id,
            ca_file,
            interest,
            access_token: std::env::var(UOF_TOKEN_ENV).unwrap_or_default(),
        })
    }

    /// Settings given directly (tests).
    pub fn new(api_url: Option<String>, node_id: Option<u32>, access_token: &str) -> UofOptions {
        UofOptions { api_url, node_id, ca_file: None, interest: None, access_token: access_token.to_string() }
    }
}

/// The hub's settings of a UOF provider: the API client (trusting `ca_pem`, the CA file's
/// certificates, besides the system's roots), where recovery points and names are stored
/// (DATA_DIR/uof/), and the market descriptions (API, else cache, else bundled).
pub async fn uof_settings(
    data_dir: &std::path::Path,
    options: &UofOptions,
    ca_pem: Option<&str>,
) -> anyhow::Result<feed::UofSettings> {
    let api = match &options.api_url {
        Some(url) => {
            let mut settings = feed::uof_api::ApiSettings::new(url.clone(), options.access_token.clone());
            settings.node_id = options.node_id;
            settings.ca_pem = ca_pem.map(str::to_string);
            Some(feed::uof_api::UofApi::new(settings).with_context(|| format!("the UOF API URL {url:?}"))?)
        }
        None => None,
    };
    let store = feed::names::NameStore::new(data_dir, api.clone());
    let (descriptions, from, failure) = store.descriptions().await;
    match failure {
        Some(error) => {
            tracing::warn!(source = ?from, markets = descriptions.len(), %error, "UOF market descriptions fell back")
        }
        None => tracing::info!(source = ?from, markets = descriptions.len(), "UOF market descriptions loaded"),
    }
    let names = std::sync::Arc::new(feed::uof::UofNames::new(feed::names::Namer::new(descriptions)));
    Ok(feed::UofSettings {
        api,
        state_dir: Some(data_dir.join("uof")),
        recovery: feed::recovery::RecoveryConfig::default(),
        names: Some(names),
        store: Some(store),
    })
}

/// Starts following every source; returns the tasks (aborted at shutdown). A provider with a
/// `uof+` source recovers through the UOF API (`--uof-api-url`), and starts stale: the markets a
/// previous run left open are suspended before `serve` listens (`FeedHub::configure_uof` is
/// called before any source starts) until its producers have recovered. Without an API, a
/// producer that goes down stays down and the provider starts fresh (both logged).
pub async fn follow(
    hub: &FeedHub,
    sources: &[FeedSource],
    data_dir: &std::path::Path,
    uof: &UofOptions,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    // Read once at start: a missing or empty CA file stops `serve` with the reason.
    let ca_pem = match &uof.ca_file {
        Some(path) => Some(AmqpSource::read_ca_file(path).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let mut configured = std::collections::BTreeSet::new();
    for source in sources {
        if matches!(source.kind, SourceKind::Uof { .. }) && configured.insert(source.provider.clone()) {
            if uof.api_url.is_none() {
                tracing::warn!(provider = %source.provider, "no --uof-api-url: UOF recoveries cannot be requested");
            }
            hub.configure_uof(&source.provider, uof_settings(data_dir, uof, ca_pem.as_deref()).await?);
        }
    }
    let interest = uof.interest.unwrap_or(feed::uof::Interest::All);
    let mut positions = std::collections::BTreeMap::<&str, usize>::new();
    Ok(sources
        .iter()
        .map(|source| {
            let position = positions.entry(&source.provider).or_default();
            let handle = hub.add_source(&source.provider, &FeedSource::role(*position));
            *position += 1;
            tracing::info!(provider = %source.provider, source = %source.kind.redacted(), "following a feed source");
            match &source.kind {
                SourceKind::WebSocket { url } => tokio::spawn(follow_websocket(handle, url.clone())),
                SourceKind::Uof { amqp_url, exchange } => {
                    let amqp = AmqpSource::new(amqp_url.clone(), exchange.clone())
                        .with_interest(interest)
                        .with_ca_pem(ca_pem.clone());
                    tokio::spawn(follow_amqp_source(handle, amqp, UOF_IN_PLAY_DELAY_SECONDS))
                }
            }
        })
        .collect())
}

/// The demo's simulated provider, in process: its fixtures from an earlier run are abandoned
/// (markets voided, events ended) and new ones start, with sequences after the last one the
/// book applied.
pub async fn spawn_demo_feed(
    hub: &FeedHub,
    engine: &EngineHandle,
    seed: u64,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (highest, leftovers) = engine
        .read_async(|book| {
            let feed = book.feed();
            let highest = feed.provider(DEMO_PROVIDER).map_or(0, |provider| provider.highest);
            let leftovers: Vec<(String, Vec<String>)> = feed
                .events_of(DEMO_PROVIDER)
                .filter(|(_, event)| book.events()[event.index()].state != book::EventState::Ended)
                .map(|(external, _)| {
                    let markets = feed
                        .markets_of(DEMO_PROVIDER, external)
                        .filter(|(_, market)| {
                            book.market(*market).is_some_and(|found| !found.status.is_resulted())
                                && book.market(*market).is_some_and(|found| found.status != MarketStatus::Closed)
                        })
                        .map(|(key, _)| key.to_string())
                        .collect();
                    (external.to_string(), markets)
                })
                .collect();
            (highest, leftovers)
        })
        .context("reading the book")?
        .await
        .context("reading the book")?;
    let now = wall_ms();
    let mut sequence = highest;
    let source = hub.add_source(DEMO_PROVIDER, "in-process");
    for (event, markets) in leftovers {
        let mut items: Vec<FeedItem> =
            markets.into_iter().map(|market| FeedItem::Cancel { event: event.clone(), market }).collect();
        items.push(FeedItem::Ended { event });
        sequence += 1;
        source.message(FeedMessage { provider: DEMO_PROVIDER.to_string(), sequence, timestamp: now, items }).await;
    }
    let mut config = SimulatorConfig::new(DEMO_PROVIDER, DEMO_FIXTURES, seed);
    config.id_prefix = format!("sim:{now}:");
    config.sequence_after = sequence;
    config.kick_off = 0.05;
    let simulator = FeedSimulator::new(config);
    let pace = Pace { price_changes_per_second: 10, minute: Duration::from_secs(2), stop_first_after: None };
    Ok(tokio::spawn(feed::provider::run(simulator, vec![Output::InProcess(source)], Vec::new(), pace)))
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// What `sportsbook feed-sim` publishes to.
#[derive(Clone, Debug)]
pub struct FeedSimOptions {
    pub provider: String,
    pub websocket: Vec<SocketAddr>,
    pub amqp_url: Option<String>,
    pub exchanges: Vec<String>,
    /// Where the simulated provider's HTTP API listens (UOF recovery requests).
    pub api_listen: Option<SocketAddr>,
    pub fixtures: usize,
    pub seed: u64,
    pub price_changes_per_second: u32,
    pub minute: Duration,
    pub chaos: Chaos,
    /// Stop after this long (none: until Ctrl-C).
    pub duration: Option<Duration>,
    /// Stop the first endpoint (the primary) after this long, to watch a server fail over.
    pub stop_first_after: Option<Duration>,
}

/// Runs the simulator as a provider until Ctrl-C or `duration`: one WebSocket endpoint per
/// address and one AMQP exchange per name, all carrying the same messages.
pub fn run_feed_sim(options: FeedSimOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(async move {
        let mut outputs = Vec::new();
        let mut recoveries = Vec::new();
        for address in &options.websocket {
            let (server, requests) =
                WebSocketProvider::bind(*address).await.with_context(|| format!("listening on {address}"))?;
            crate::output::print_text(&format!("feed provider {} on {}\n", options.provider, server.url()));
            outputs.push(Output::WebSocket(server));
            recoveries.push(requests);
        }
        let mut _api = None;
        if let Some(address) = options.api_listen {
            let token = std::env::var(UOF_TOKEN_ENV).unwrap_or_default();
            let (api, requests) =
                ProviderApi::bind(address, &token).await.with_context(|| format!("listening on {address}"))?;
            crate::output::print_text(&format!("feed provider API (recovery) on {}\n", api.base_url()));
            recoveries.push(requests);
            _api = Some(api);
        }
        if let Some(url) = &options.amqp_url {
            for exchange in &options.exchanges {
                let amqp = AmqpProvider::connect(url, exchange, UOF_PRODUCT)
                    .await
                    .with_context(|| format!("connecting to {url} for exchange {exchange}"))?;
                crate::output::print_text(&format!(
                    "feed provider {} publishing UOF XML to exchange {exchange}\n",
                    options.provider
                ));
                outputs.push(Output::Amqp(Box::new(amqp)));
            }
        }
        anyhow::ensure!(!outputs.is_empty(), "give at least one --websocket address or --amqp-url with --exchange");
        let mut config = SimulatorConfig::new(&options.provider, options.fixtures, options.seed);
        config.chaos = options.chaos;
        config.sequence_after = wall_ms();
        let pace = Pace {
            price_changes_per_second: options.price_changes_per_second,
            minute: options.minute,
            stop_first_after: options.stop_first_after,
        };
        let task = tokio::spawn(feed::provider::run(FeedSimulator::new(config), outputs, recoveries, pace));
        let stop = async {
            match options.duration {
                Some(duration) => tokio::time::sleep(duration).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = stop => {}
        }
        task.abort();
        Ok(())
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_sources_password_never_reaches_the_log() {
        let uof = SourceKind::Uof {
            amqp_url: "amqps://token123:s3cret@mq.example.com:5671/vhost?heartbeat=10".into(),
            exchange: "unifiedfeed".into(),
        };
        assert_eq!(uof.redacted(), "uof+amqps://token123:***@mq.example.com:5671/vhost?heartbeat=10#unifiedfeed");
        let plain = SourceKind::Uof { amqp_url: "amqp://127.0.0.1:5672/%2f".into(), exchange: "x".into() };
        assert_eq!(plain.redacted(), "uof+amqp://127.0.0.1:5672/%2f#x");
        let user_only = SourceKind::WebSocket { url: "ws://reader@127.0.0.1:9000/feed".into() };
        assert_eq!(user_only.redacted(), "ws+ws://reader@127.0.0.1:9000/feed");
        // An `@` in the path is not user information.
        let at_in_path = SourceKind::WebSocket { url: "ws://host/feed@x:y".into() };
        assert_eq!(at_in_path.redacted(), "ws+ws://host/feed@x:y");
    }

    use super::*;

    #[test]
    fn sources_parse_or_say_what_they_should_be() {
        assert_eq!(
            "sr=uof+amqp://guest:guest@127.0.0.1:5672/%2f#uof.primary".parse::<FeedSource>(),
            Ok(FeedSource {
                provider: "sr".to_string(),
                kind: SourceKind::Uof {
                    amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_string(),
                    exchange: "uof.primary".to_string()
                }
            })
        );
        assert!("p=ws+ws://127.0.0.1:9000".parse::<FeedSource>().is_ok());
        assert!("p=uof+amqps://u:p@feed.example:5671/customer#unifiedfeed".parse::<FeedSource>().is_ok());
        for bad in ["p", "p=ws+http://x", "=ws+ws://x", "p=uof+amqp://x", "p=ftp+x"] {
            assert!(bad.parse::<FeedSource>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn an_https_api_url_is_taken_with_the_ca_file() {
        let dir = tempfile::tempdir().expect("dir");
        // Port 9 on 127.0.0.1: nothing answers, the descriptions fall back to the bundled ones.
        let options = UofOptions::new(Some("https://127.0.0.1:9".to_string()), None, "t");
        let settings = uof_settings(dir.path(), &options, None).await.expect("https is accepted");
        let api = settings.api.expect("an API client");
        assert!(api.settings().ca_pem.is_none());
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let error = uof_settings(dir.path(), &options, Some(pem)).await.expect_err("the CA reaches the client");
        assert!(format!("{error:#}").contains("CA certificates for the provider API"), "{error:#}");
        let ftp = UofOptions::new(Some("ftp://127.0.0.1".to_string()), None, "t");
        let error = uof_settings(dir.path(), &ftp, None).await.expect_err("other schemes are refused");
        assert!(format!("{error:#}").contains("not an https:// or http:// URL"), "{error:#}");
    }
}
