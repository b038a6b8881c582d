//! The provider's producers list (`GET {api}/v1/descriptions/producers.xml`): which producers
//! (`product`s) it offers, whether each is active, and how far back each one's recovery may
//! reach.
//!
//! The document, as the Unified Odds Feed publishes it:
//!
//! ```xml
//! <producers response_code="OK">
//!   <producer id="1" name="LO" description="Live Odds" api_url="https://api.betradar.com/v1/liveodds/"
//!             active="true" scope="live" stateful_recovery_window_in_minutes="4320"/>
//!   <producer id="3" name="Ctrl" description="Betradar Ctrl" api_url="https://api.betradar.com/v1/pre/"
//!             active="true" scope="prematch" stateful_recovery_window_in_minutes="4320"/>
//! </producers>
//! ```
//!
//! The hub waits at a start for the active producers of this list (see `runtime`), takes each
//! one's recovery window from it, and the recovery path's producer name from its `api_url`
//! (`.../v1/liveodds/` → `liveodds`) when the settings name none. [`render`] is the provider's
//! side, for the stand-in (`provider_api`).

use std::time::Duration;

/// Largest producers document read (the real one is a few kB).
pub const PRODUCERS_XML_BYTES_MAX: usize = 1024 * 1024;
/// Most producers a list may hold (the provider has about twenty).
pub const PRODUCERS_MAX: usize = 256;
/// Longest text attribute kept (names, descriptions, URLs, scopes).
pub const PRODUCER_TEXT_BYTES_MAX: usize = 500;

/// One `<producer>` of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerDescription {
    pub id: u32,
    /// Short name (`LO`, `Ctrl`).
    pub name: String,
    pub description: String,
    /// Where the producer's API is (`https://api.betradar.com/v1/liveodds/`).
    pub api_url: String,
    /// Offered to this customer now; an inactive producer is neither waited for nor recovered.
    pub active: bool,
    /// `live`, `prematch` or both, `|`-separated.
    pub scope: String,
    /// How far back (from the provider's now) a recovery's `after` may be; `None` when absent.
    pub stateful_recovery_window_in_minutes: Option<u32>,
}

impl ProducerDescription {
    /// The producer's name in the recovery path: the segment after `/v1/` of its `api_url`
    /// (`liveodds`), if there is one made of id characters.
    pub fn path_name(&self) -> Option<String> {
        let (_, rest) = self.api_url.split_once("/v1/")?;
        let name = rest.trim_end_matches('/');
        let ok = !name.is_empty()
            && name.len() <= 200
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        ok.then(|| name.to_string())
    }

    /// The recovery window as a duration, if the list gives one (0 is taken as none).
    pub fn recovery_window(&self) -> Option<Duration> {
        self.stateful_recovery_window_in_minutes
            .filter(|minutes| *minutes > 0)
            .map(|m| Duration::from_secs(60 * u64::from(m)))
    }
}

/// Why a producers document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducersError {
    #[error("the producers document exceeds {PRODUCERS_XML_BYTES_MAX} bytes")]
    TooLarge,
    #[error("the producers document is not XML: {0}")]
    Xml(String),
    #[error("the producers document's root is <{0}>, not <producers>")]
    Root(String),
    #[error("the provider answered response_code=\"{0}\"")]
    ResponseCode(String),
    #[error("the producers document lists more than {PRODUCERS_MAX} producers")]
    TooMany,
    #[error("producer {index}: {detail}")]
    Producer { index: usize, detail: String },
}

/// Parses `producers.xml`. Refused whole on any bad producer (a list the hub cannot trust is
/// as good as none: the provider stays stale until a good one comes). DTDs are refused.
pub fn parse(xml: &str) -> Result<Vec<ProducerDescription>, ProducersError> {
    if xml.len() > PRODUCERS_XML_BYTES_MAX {
        return Err(ProducersError::TooLarge);
    }
    let document = roxmltree::Document::parse(xml).map_err(|error| ProducersError::Xml(error.to_string()))?;
    let root = document.root_element();
    if root.tag_name().name() != "producers" {
        return Err(ProducersError::Root(root.tag_name().name().chars().take(100).collect()));
    }
    if let Some(code) = root.attribute("response_code") {
        if !code.eq_ignore_ascii_case("OK") {
            return Err(ProducersError::ResponseCode(code.chars().take(100).collect()));
        }
    }
    let mut producers: Vec<ProducerDescription> = Vec::new();
    for (index, node) in root.children().filter(|node| node.has_tag_name("producer")).enumerate() {
        if producers.len() == PRODUCERS_MAX {
            return Err(ProducersError::TooMany);
        }
        let bad = |detail: String| ProducersError::Producer { index, detail };
        let text = |name: &str| -> Result<String, ProducersError> {
            let value = node.attribute(name).unwrap_or_default();
            if value.len() > PRODUCER_TEXT_BYTES_MAX {
                return Err(bad(format!("{name} longer than {PRODUCER_TEXT_BYTES_MAX} bytes")));
            }
            Ok(value.to_string())
        };
        let id = node
            .attribute("id")
            .ok_or_else(|| bad("no id".to_string()))?
            .parse::<u32>()
            .map_err(|_| bad("id is not a number".to_string()))?;
        if producers.iter().any(|known| known.id == id) {
            return Err(bad(format!("id {id} listed twice")));
        }
        let active = match node.attribute("active") {
            Some("true" | "1") => true,
            Some("false" | "0") => false,
            other => return Err(bad(format!("active is {other:?}, not true or false"))),
        };
        let window = match node.attribute("stateful_recovery_window_in_minutes") {
            None => None,
            Some(value) => Some(
                value.parse::<u32>().map_err(|_| bad("stateful_recovery_window_in_minutes is not a number".into()))?,
            ),
        };
        producers.push(ProducerDescription {
            id,
            name: text("name")?,
            description: text("description")?,
            api_url: text("api_url")?,
            active,
            scope: text("scope")?,
            stateful_recovery_window_in_minutes: window,
        });
    }
    Ok(producers)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The document the provider serves for `producers` (the stand-in's side).
pub fn render(producers: &[ProducerDescription]) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<producers response_code=\"OK\">\n");
    for producer in producers {
        let window = producer
            .stateful_recovery_window_in_minutes
            .map(|minutes| format!(" stateful_recovery_window_in_minutes=\"{minutes}\""))
            .unwrap_or_default();
        xml.push_str(&format!(
            "  <producer id=\"{}\" name=\"{}\" description=\"{}\" api_url=\"{}\" active=\"{}\" scope=\"{}\"{window}/>\n",
            producer.id,
            escape(&producer.name),
            escape(&producer.description),
            escape(&producer.api_url),
            producer.active,
            escape(&producer.scope),
        ));
    }
    xml.push_str("</producers>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<producers response_code="OK">
    <producer id="1" name="LO" description="Live Odds" api_url="https://api.betradar.com/v1/liveodds/" active="true" scope="live" stateful_recovery_window_in_minutes="600"/>
    <producer id="3" name="Ctrl" description="Betradar Ctrl" api_url="https://api.betradar.com/v1/pre/" active="true" scope="prematch" stateful_recovery_window_in_minutes="4320"/>
    <producer id="4" name="BetPal" description="BetPal" api_url="https://api.betradar.com/v1/betpal/" active="false" scope="live" stateful_recovery_window_in_minutes="4320"/>
    <producer id="5" name="PremiumCricket" description="Premium Cricket" api_url="https://api.betradar.com/v1/premium_cricket/" active="true" scope="live|prematch" stateful_recovery_window_in_minutes="4320"/>
</producers>"#;

    #[test]
    fn the_providers_list_parses_with_names_windows_and_activity() {
        let producers = parse(REAL).expect("the provider's list");
        let ids: Vec<(u32, bool)> = producers.iter().map(|p| (p.id, p.active)).collect();
        assert_eq!(ids, vec![(1, true), (3, true), (4, false), (5, true)]);
        assert_eq!(producers[0].path_name().as_deref(), Some("liveodds"));
        assert_eq!(producers[1].path_name().as_deref(), Some("pre"));
        assert_eq!(producers[3].path_name().as_deref(), Some("premium_cricket"));
        assert_eq!(producers[0].recovery_window(), Some(Duration::from_secs(600 * 60)));
        assert_eq!(producers[3].scope, "live|prematch");
        assert_eq!(parse(&render(&producers)).expect("rendered"), producers);
    }

    #[test]
    fn bad_lists_are_refused_whole_with_the_reason() {
        let cases = [
            ("<producers response_code=\"FORBIDDEN\"/>", "response_code"),
            ("<response/>", "root"),
            ("<producers><producer name=\"x\" active=\"true\"/></producers>", "no id"),
            ("<producers><producer id=\"x\" active=\"true\"/></producers>", "not a number"),
            ("<producers><producer id=\"1\" active=\"yes\"/></producers>", "active"),
            ("<producers><producer id=\"1\" active=\"true\"/><producer id=\"1\" active=\"true\"/></producers>", "twice"),
            ("<producers><producer id=\"1\" active=\"true\" stateful_recovery_window_in_minutes=\"-1\"/></producers>", "window"),
            ("<!DOCTYPE producers [<!ENTITY x \"y\">]><producers/>", "XML"),
            ("not xml", "XML"),
        ];
        for (xml, why) in cases {
            let error = parse(xml).expect_err(xml).to_string();
            assert!(error.contains(why), "{xml}: {error}");
        }
        let many: String = (0..=PRODUCERS_MAX).map(|id| format!("<producer id=\"{id}\" active=\"true\"/>")).collect();
        assert_eq!(parse(&format!("<producers>{many}</producers>")), Err(ProducersError::TooMany));
        assert_eq!(parse(&" ".repeat(PRODUCERS_XML_BYTES_MAX + 1)), Err(ProducersError::TooLarge));
        // An empty list is a list (the provider offers nothing: nothing to wait for would never
        // end a recovery, which the hub treats as stale).
        assert_eq!(parse("<producers response_code=\"OK\"/>"), Ok(Vec::new()));
    }

    #[test]
    fn path_names_take_only_id_characters() {
        let with = |url: &str| ProducerDescription {
            id: 1,
            name: String::new(),
            description: String::new(),
            api_url: url.to_string(),
            active: true,
            scope: String::new(),
            stateful_recovery_window_in_minutes: None,
        };
        assert_eq!(with("https://x/v1/liveodds").path_name().as_deref(), Some("liveodds"));
        for bad in ["", "https://x/liveodds/", "https://x/v1/", "https://x/v1/a/b/", "https://x/v1/a?b"] {
            assert_eq!(with(bad).path_name(), None, "{bad}");
        }
    }
}
