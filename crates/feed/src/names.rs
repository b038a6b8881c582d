//! Names of UOF markets, outcomes and events, as the provider describes them.
//!
//! - [`MarketDescriptions`]: the provider's `markets.xml` (`<market_descriptions>`), parsed with
//!   named limits; a bundled subset ([`BUNDLED_MARKETS_EN`]) covers the common football and
//!   tennis markets offline and in tests.
//! - [`render`]: the provider's name template language, filled from a market's specifiers and
//!   the event's fixture: `{total}` (the value), `{total+1}` / `{total-1}` (the value plus or
//!   minus a number), `{!periodnr}` (ordinal: `2nd`), `{+hcp}` (signed: `+1.5`, `-1.5`, `0`),
//!   `{-hcp}` (negated and signed), `{$competitor1}` / `{$competitor2}` / `{$event}` (from the
//!   fixture). `{%player}`-style references (names of players or competitors by URN from other
//!   API calls) are not resolved here and fall back.
//! - [`Namer`]: market and outcome names with fallbacks that never fail: an unknown market is
//!   `Market {id}` (with its specifiers in brackets: `Market 68 [total=2.5]`), an unknown outcome
//!   `Outcome {id}`, and an expression that cannot be filled is replaced by a stated placeholder
//!   (`Competitor 1`, `Competitor 2`, `Event`, else the variable's name). Every fallback is
//!   counted by reason ([`FallbackCounts`]).
//! - [`Fixture`]: event name, competitors, sport and start time from `fixture.xml`.
//! - [`NameStore`]: fetches descriptions and fixtures from the provider's API
//!   ([`crate::uof_api`]) and caches them in the data directory (`<dir>/uof/`); when the API
//!   cannot be reached it uses the cached copy, and for descriptions the bundled file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::uof_api::{ApiError, UofApi};

/// The bundled market descriptions (English): 1x2 (1), double chance (10), handicap (16),
/// total (18), both teams to score (29), correct score (45), 1st half total (68), period total
/// (446), tennis winner (186) and set handicap (188).
pub const BUNDLED_MARKETS_EN: &str = include_str!("../data/uof-markets-en.xml");

/// Longest descriptions or fixture document parsed.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;
/// Most XML nodes in one document (roxmltree's own limit, set explicitly).
pub const MAX_NODES: u32 = 4_000_000;
/// Most markets in one descriptions document.
pub const MAX_MARKETS: usize = 100_000;
/// Most outcomes of one market.
pub const MAX_OUTCOMES: usize = 10_000;
/// Longest template, and longest rendered name.
pub const MAX_NAME_BYTES: usize = 1_024;
/// Most specifiers of one market instance.
pub const MAX_SPECIFIERS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("document of {0} bytes exceeds {MAX_DOCUMENT_BYTES}")]
    TooLarge(usize),
    #[error("not well-formed XML: {0}")]
    Xml(String),
    #[error("root element is <{found}>, expected <{expected}>")]
    WrongRoot { expected: &'static str, found: String },
    #[error("the provider answered response_code=\"{0}\"")]
    ResponseCode(String),
    #[error("<{element}> lacks a valid `{attribute}`")]
    MissingAttribute { element: &'static str, attribute: &'static str },
    #[error("more than {0} {1}")]
    TooMany(usize, &'static str),
    #[error("a name or template exceeds {MAX_NAME_BYTES} bytes")]
    NameTooLong,
}

impl DocumentError {
    pub fn code(&self) -> &'static str {
        match self {
            DocumentError::TooLarge(_) => "too_large",
            DocumentError::Xml(_) => "not_xml",
            DocumentError::WrongRoot { .. } => "wrong_root",
            DocumentError::ResponseCode(_) => "response_code",
            DocumentError::MissingAttribute { .. } => "missing_attribute",
            DocumentError::TooMany(..) => "too_many",
            DocumentError::NameTooLong => "name_too_long",
        }
    }
}

fn parse_document(xml: &str) -> Result<roxmltree::Document<'_>, DocumentError> {
    if xml.len() > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::TooLarge(xml.len()));
    }
    let options = roxmltree::ParsingOptions { allow_dtd: false, nodes_limit: MAX_NODES };
    roxmltree::Document::parse_with_options(xml, options).map_err(|e| DocumentError::Xml(e.to_string()))
}

fn check_root(doc: &roxmltree::Document<'_>, expected: &'static str) -> Result<(), DocumentError> {
    let root = doc.root_element();
    if root.tag_name().name() != expected {
        return Err(DocumentError::WrongRoot { expected, found: root.tag_name().name().to_string() });
    }
    match root.attribute("response_code") {
        None | Some("OK") | Some("ok") => Ok(()),
        Some(other) => Err(DocumentError::ResponseCode(other.chars().take(64).collect())),
    }
}

fn bounded(name: &str) -> Result<String, DocumentError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(DocumentError::NameTooLong);
    }
    Ok(name.to_string())
}

/// One market as the provider describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketDescription {
    pub id: u32,
    /// The name template (`Total`, `Handicap {hcp}`, `{!periodnr} period - total`).
    pub name: String,
    /// `groups` (`all|score|regular_play`), used by `bet_stop groups=".."`.
    pub groups: Vec<String>,
    /// Outcome id (a number or a URN, kept as text) → name template.
    pub outcomes: BTreeMap<String, String>,
    /// Specifier name → type (`decimal`, `integer`, `string`, `variable_text`).
    pub specifiers: Vec<(String, String)>,
}

/// The provider's market descriptions (`markets.xml`), by market id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarketDescriptions {
    markets: BTreeMap<u32, MarketDescription>,
    /// Markets listed more than once (the first is kept).
    pub duplicates: usize,
}

impl MarketDescriptions {
    /// Parses `<market_descriptions>`; `<mappings>` and unknown elements are skipped.
    pub fn parse(xml: &str) -> Result<Self, DocumentError> {
        let doc = parse_document(xml)?;
        check_root(&doc, "market_descriptions")?;
        let mut out = MarketDescriptions::default();
        for market in doc.root_element().children().filter(|n| n.has_tag_name("market")) {
            if out.markets.len() >= MAX_MARKETS {
                return Err(DocumentError::TooMany(MAX_MARKETS, "markets"));
            }
            let missing = |attribute| DocumentError::MissingAttribute { element: "market", attribute };
            let id = market.attribute("id").and_then(|v| v.parse::<u32>().ok()).ok_or(missing("id"))?;
            let name = bounded(market.attribute("name").ok_or(missing("name"))?)?;
            let groups = market
                .attribute("groups")
                .map(|g| g.split('|').filter(|s| !s.is_empty()).map(str::to_string).collect())
                .unwrap_or_default();
            let mut outcomes = BTreeMap::new();
            let mut specifiers = Vec::new();
            for section in market.children().filter(|n| n.is_element()) {
                match section.tag_name().name() {
                    "outcomes" => {
                        for outcome in section.children().filter(|n| n.has_tag_name("outcome")) {
                            if outcomes.len() >= MAX_OUTCOMES {
                                return Err(DocumentError::TooMany(MAX_OUTCOMES, "outcomes"));
                            }
                            let missing = |attribute| DocumentError::MissingAttribute { element: "outcome", attribute };
                            let oid = outcome.attribute("id").filter(|v| !v.is_empty()).ok_or(missing("id"))?;
                            let oname = outcome.attribute("name").ok_or(missing("name"))?;
                            outcomes.insert(bounded(oid)?, bounded(oname)?);
                        }
                    }
                    "specifiers" => {
                        for spec in section.children().filter(|n| n.has_tag_name("specifier")) {
                            if specifiers.len() >= MAX_SPECIFIERS {
                                return Err(DocumentError::TooMany(MAX_SPECIFIERS, "specifiers"));
                            }
                            let sname = spec
                                .attribute("name")
                                .filter(|v| !v.is_empty())
                                .ok_or(DocumentError::MissingAttribute { element: "specifier", attribute: "name" })?;
                            let stype = spec.attribute("type").unwrap_or("string");
                            specifiers.push((bounded(sname)?, bounded(stype)?));
                        }
                    }
                    _ => {}
                }
            }
            let description = MarketDescription { id, name, groups, outcomes, specifiers };
            match out.markets.entry(id) {
                std::collections::btree_map::Entry::Occupied(_) => out.duplicates += 1,
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(description);
                }
            }
        }
        Ok(out)
    }

    /// The bundled subset.
    pub fn bundled() -> Self {
        // The bundled file is part of the build and covered by a test; a parse failure is a
        // build defect, reported as an empty set rather than a crash.
        Self::parse(BUNDLED_MARKETS_EN).unwrap_or_default()
    }

    pub fn get(&self, id: u32) -> Option<&MarketDescription> {
        self.markets.get(&id)
    }

    pub fn len(&self) -> usize {
        self.markets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.markets.is_empty()
    }
}

/// Parses a market's `specifiers` attribute (`total=2.5|hcp=-1`). Empty → none.
pub fn parse_specifiers(raw: &str) -> Result<Vec<(String, String)>, RenderError> {
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    if raw.len() > MAX_NAME_BYTES {
        return Err(RenderError::TooLong);
    }
    let mut out = Vec::new();
    for pair in raw.split('|') {
        if out.len() >= MAX_SPECIFIERS {
            return Err(RenderError::BadSpecifiers);
        }
        let (k, v) = pair.split_once('=').ok_or(RenderError::BadSpecifiers)?;
        if k.is_empty() {
            return Err(RenderError::BadSpecifiers);
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// What a template may refer to besides the specifiers.
#[derive(Debug, Clone, Default)]
pub struct EventNames {
    /// `{$event}`: the event's name (`Home vs Away`).
    pub event: Option<String>,
    /// `{$competitor1}`, `{$competitor2}`, ...: home first.
    pub competitors: Vec<String>,
}

impl From<&Fixture> for EventNames {
    fn from(f: &Fixture) -> Self {
        Self { event: Some(f.name.clone()), competitors: f.competitors.iter().map(|c| c.name.clone()).collect() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("a `{{` is not closed")]
    Unclosed,
    #[error("a `}}` has no `{{`")]
    StrayClose,
    #[error("empty expression `{{}}`")]
    Empty,
    #[error("no specifier `{0}`")]
    MissingSpecifier(String),
    #[error("specifier `{0}` is not a number")]
    NotANumber(String),
    #[error("`{0}` is not an ordinal (a whole number from 0)")]
    NotOrdinal(String),
    #[error("no competitor {0}")]
    MissingCompetitor(String),
    #[error("no event name")]
    MissingEvent,
    #[error("`{0}` refers to data this renderer does not fetch")]
    Unsupported(String),
    #[error("malformed specifiers")]
    BadSpecifiers,
    #[error("name longer than {MAX_NAME_BYTES} bytes")]
    TooLong,
}

impl RenderError {
    /// The fallback reason (metric label).
    pub fn code(&self) -> &'static str {
        match self {
            RenderError::Unclosed | RenderError::StrayClose | RenderError::Empty => "bad_template",
            RenderError::MissingSpecifier(_) => "missing_specifier",
            RenderError::NotANumber(_) | RenderError::NotOrdinal(_) => "bad_specifier_value",
            RenderError::MissingCompetitor(_) | RenderError::MissingEvent => "missing_fixture",
            RenderError::Unsupported(_) => "unsupported_reference",
            RenderError::BadSpecifiers => "bad_specifiers",
            RenderError::TooLong => "too_long",
        }
    }
}

/// An exact decimal: `mantissa / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    mantissa: i128,
    scale: u32,
}

impl Decimal {
    fn parse(s: &str) -> Option<Self> {
        let (negative, digits) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty() || int.len() + frac.len() > 30 {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut mantissa: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
        }
        let scale = u32::try_from(frac.len()).ok()?;
        Some(Self { mantissa: if negative { -mantissa } else { mantissa }, scale })
    }

    fn rescale(self, scale: u32) -> Option<Self> {
        let factor = 10i128.checked_pow(scale.checked_sub(self.scale)?)?;
        Some(Self { mantissa: self.mantissa.checked_mul(factor)?, scale })
    }

    fn add(self, other: Self) -> Option<Self> {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.rescale(scale)?, other.rescale(scale)?);
        Some(Self { mantissa: a.mantissa.checked_add(b.mantissa)?, scale })
    }

    fn neg(self) -> Self {
        Self { mantissa: -self.mantissa, scale: self.scale }
    }

    /// The magnitude with `scale` decimals, no sign.
    fn magnitude(self) -> String {
        let digits = self.mantissa.unsigned_abs().to_string();
        if self.scale == 0 {
            return digits;
        }
        let scale = self.scale as usize;
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        format!("{int}.{frac}")
    }

    fn plain(self) -> String {
        if self.mantissa < 0 {
            format!("-{}", self.magnitude())
        } else {
            self.magnitude()
        }
    }

    fn signed(self) -> String {
        match self.mantissa.signum() {
            1 => format!("+{}", self.magnitude()),
            -1 => format!("-{}", self.magnitude()),
            _ => "0".to_string(),
        }
    }
}

fn ordinal(n: u128) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// `name`, `name+2`, `name-1.5`: the specifier and an optional offset.
fn specifier_value(expr: &str, specifiers: &[(String, String)]) -> Result<(String, Option<Decimal>), RenderError> {
    let split = expr.char_indices().skip(1).find(|(_, c)| *c == '+' || *c == '-').map(|(i, _)| i);
    let (name, offset) = match split {
        Some(i) => (&expr[..i], Some(&expr[i..])),
        None => (expr, None),
    };
    let raw = specifiers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .ok_or_else(|| RenderError::MissingSpecifier(name.to_string()))?;
    match offset {
        None => Ok((raw.clone(), Decimal::parse(&raw))),
        Some(off) => {
            let value = Decimal::parse(&raw).ok_or_else(|| RenderError::NotANumber(name.to_string()))?;
            let off = Decimal::parse(off).ok_or_else(|| RenderError::NotANumber(expr.to_string()))?;
            let sum = value.add(off).ok_or_else(|| RenderError::NotANumber(expr.to_string()))?;
            Ok((sum.plain(), Some(sum)))
        }
    }
}

fn expression(expr: &str, specifiers: &[(String, String)], event: &EventNames) -> Result<String, RenderError> {
    let number = |rest: &str| -> Result<Decimal, RenderError> {
        let (_, value) = specifier_value(rest, specifiers)?;
        value.ok_or_else(|| RenderError::NotANumber(rest.to_string()))
    };
    match expr.as_bytes().first() {
        None => Err(RenderError::Empty),
        Some(b'$') => {
            let name = &expr[1..];
            if name == "event" {
                return event.event.clone().ok_or(RenderError::MissingEvent);
            }
            let index = name
                .strip_prefix("competitor")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| RenderError::Unsupported(expr.to_string()))?;
            event.competitors.get(index - 1).cloned().ok_or_else(|| RenderError::MissingCompetitor(name.to_string()))
        }
        Some(b'!') => {
            let value = number(&expr[1..])?;
            if value.scale != 0 && value.mantissa % 10i128.pow(value.scale.min(30)) != 0 || value.mantissa < 0 {
                return Err(RenderError::NotOrdinal(expr[1..].to_string()));
            }
            let whole = value.mantissa.unsigned_abs() / 10u128.pow(value.scale.min(30));
            Ok(ordinal(whole))
        }
        Some(b'+') => Ok(number(&expr[1..])?.signed()),
        Some(b'-') => Ok(number(&expr[1..])?.neg().signed()),
        Some(b'%') => Err(RenderError::Unsupported(expr.to_string())),
        Some(_) => Ok(specifier_value(expr, specifiers)?.0),
    }
}

/// Renders a name template strictly: any expression that cannot be filled is an error.
pub fn render(template: &str, specifiers: &[(String, String)], event: &EventNames) -> Result<String, RenderError> {
    render_with(template, &mut |expr| expression(expr, specifiers, event))
}

fn render_with(
    template: &str,
    fill: &mut dyn FnMut(&str) -> Result<String, RenderError>,
) -> Result<String, RenderError> {
    if template.len() > MAX_NAME_BYTES {
        return Err(RenderError::TooLong);
    }
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(RenderError::StrayClose);
        }
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or(RenderError::Unclosed)?;
        let expr = after[..close].trim();
        if expr.contains('{') {
            return Err(RenderError::Unclosed);
        }
        out.push_str(&fill(expr)?);
        if out.len() > MAX_NAME_BYTES {
            return Err(RenderError::TooLong);
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    if out.len() > MAX_NAME_BYTES {
        return Err(RenderError::TooLong);
    }
    Ok(out)
}

/// The stated placeholder of an expression that cannot be filled.
fn placeholder(expr: &str) -> String {
    let bare = expr.trim_start_matches(['$', '!', '+', '-', '%']);
    if let Some(n) = bare.strip_prefix("competitor") {
        return format!("Competitor {n}");
    }
    if bare == "event" {
        return "Event".to_string();
    }
    bare.chars().take_while(|c| !matches!(c, '+' | '-')).collect()
}

/// Fallbacks taken, by reason.
#[derive(Debug, Default)]
pub struct FallbackCounts {
    pub unknown_market: AtomicU64,
    pub unknown_outcome: AtomicU64,
    /// An expression could not be filled (missing specifier or fixture, bad value,
    /// unsupported reference) and got its placeholder.
    pub unfilled: AtomicU64,
    /// The template or the specifiers are malformed: the raw template text was used.
    pub malformed: AtomicU64,
}

impl FallbackCounts {
    pub fn total(&self) -> u64 {
        [&self.unknown_market, &self.unknown_outcome, &self.unfilled, &self.malformed]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// Market and outcome names that never fail (see the module documentation for the fallbacks).
#[derive(Debug)]
pub struct Namer {
    descriptions: MarketDescriptions,
    pub fallbacks: FallbackCounts,
}

impl Namer {
    pub fn new(descriptions: MarketDescriptions) -> Self {
        Self { descriptions, fallbacks: FallbackCounts::default() }
    }

    pub fn descriptions(&self) -> &MarketDescriptions {
        &self.descriptions
    }

    /// The market's name, e.g. `Total` for 18 / `total=2.5`, `1st half - total` for 68.
    pub fn market_name(&self, market_id: u32, specifiers: &str, event: &EventNames) -> String {
        match self.descriptions.get(market_id) {
            Some(d) => self.lenient(&d.name, specifiers, event),
            None => {
                self.fallbacks.unknown_market.fetch_add(1, Ordering::Relaxed);
                let spec: String = specifiers.chars().take(MAX_NAME_BYTES).collect();
                if spec.is_empty() {
                    format!("Market {market_id}")
                } else {
                    format!("Market {market_id} [{spec}]")
                }
            }
        }
    }

    /// The outcome's name, e.g. `over 2.5` for 18 / 12 / `total=2.5`.
    pub fn outcome_name(&self, market_id: u32, outcome_id: &str, specifiers: &str, event: &EventNames) -> String {
        match self.descriptions.get(market_id).and_then(|d| d.outcomes.get(outcome_id)) {
            Some(template) => self.lenient(template, specifiers, event),
            None => {
                self.fallbacks.unknown_outcome.fetch_add(1, Ordering::Relaxed);
                let id: String = outcome_id.chars().take(200).collect();
                format!("Outcome {id}")
            }
        }
    }

    fn lenient(&self, template: &str, specifiers: &str, event: &EventNames) -> String {
        let Ok(specifiers) = parse_specifiers(specifiers) else {
            self.fallbacks.malformed.fetch_add(1, Ordering::Relaxed);
            return template.chars().take(MAX_NAME_BYTES).collect();
        };
        let mut unfilled = false;
        let rendered = render_with(template, &mut |expr| match expression(expr, &specifiers, event) {
            Ok(v) => Ok(v),
            Err(RenderError::Empty) => Err(RenderError::Empty),
            Err(_) => {
                unfilled = true;
                Ok(placeholder(expr))
            }
        });
        match rendered {
            Ok(name) => {
                if unfilled {
                    self.fallbacks.unfilled.fetch_add(1, Ordering::Relaxed);
                }
                name
            }
            Err(_) => {
                self.fallbacks.malformed.fetch_add(1, Ordering::Relaxed);
                template.chars().take(MAX_NAME_BYTES).collect()
            }
        }
    }
}

/// A competitor of a fixture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Competitor {
    pub id: String,
    pub name: String,
    /// `home` / `away` (absent for some sports).
    pub qualifier: Option<String>,
}

/// What the book needs of an event's fixture (`fixture.xml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    pub id: String,
    /// The fixture's `name`, else `Home vs Away`, else the id.
    pub name: String,
    pub sport_id: Option<String>,
    pub sport: Option<String>,
    pub category: Option<String>,
    pub tournament: Option<String>,
    /// Home first, then away, then the rest in document order.
    pub competitors: Vec<Competitor>,
    /// `start_time` or `scheduled`, as Unix milliseconds.
    pub start_time_ms: Option<i64>,
    /// `start_time_tbd="true"`: the start time is not final.
    pub start_time_tbd: bool,
}

impl Fixture {
    /// Parses `<fixtures_fixture><fixture ..>..</fixture></fixtures_fixture>`.
    pub fn parse(xml: &str) -> Result<Self, DocumentError> {
        let doc = parse_document(xml)?;
        check_root(&doc, "fixtures_fixture")?;
        let fixture = doc
            .root_element()
            .children()
            .find(|n| n.has_tag_name("fixture"))
            .ok_or(DocumentError::MissingAttribute { element: "fixtures_fixture", attribute: "fixture" })?;
        let id = bounded(
            fixture
                .attribute("id")
                .filter(|v| !v.is_empty())
                .ok_or(DocumentError::MissingAttribute { element: "fixture", attribute: "id" })?,
        )?;
        let child = |name: &str| fixture.children().find(|n| n.has_tag_name(name));
        let tournament = child("tournament");
        let sport = tournament.and_then(|t| t.children().find(|n| n.has_tag_name("sport")));
        let category = tournament.and_then(|t| t.children().find(|n| n.has_tag_name("category")));
        let mut competitors = Vec::new();
        if let Some(list) = child("competitors") {
            for c in list.children().filter(|n| n.has_tag_name("competitor")) {
                if competitors.len() >= MAX_OUTCOMES {
                    return Err(DocumentError::TooMany(MAX_OUTCOMES, "competitors"));
                }
                let missing = |attribute| DocumentError::MissingAttribute { element: "competitor", attribute };
                competitors.push(Competitor {
                    id: bounded(c.attribute("id").ok_or(missing("id"))?)?,
                    name: bounded(c.attribute("name").ok_or(missing("name"))?)?,
                    qualifier: c.attribute("qualifier").map(bounded).transpose()?,
                });
            }
        }
        let rank = |c: &Competitor| match c.qualifier.as_deref() {
            Some("home") => 0,
            Some("away") => 1,
            _ => 2,
        };
        competitors.sort_by_key(rank);
        let name = match fixture.attribute("name") {
            Some(n) if !n.is_empty() => bounded(n)?,
            _ if competitors.len() >= 2 => bounded(&format!("{} vs {}", competitors[0].name, competitors[1].name))?,
            _ => id.clone(),
        };
        let start = fixture.attribute("start_time").or(fixture.attribute("scheduled"));
        let start_time_ms = match start {
            Some(s) => Some(
                parse_rfc3339_ms(s)
                    .ok_or(DocumentError::MissingAttribute { element: "fixture", attribute: "start_time" })?,
            ),
            None => None,
        };
        let attr =
            |n: Option<roxmltree::Node<'_, '_>>, a: &str| n.and_then(|n| n.attribute(a)).map(bounded).transpose();
        Ok(Fixture {
            id,
            name,
            sport_id: attr(sport, "id")?,
            sport: attr(sport, "name")?,
            category: attr(category, "name")?,
            tournament: attr(tournament, "name")?,
            competitors,
            start_time_ms,
            start_time_tbd: fixture.attribute("start_time_tbd") == Some("true"),
        })
    }
}

/// `2024-05-01T18:30:00+02:00`, `…Z`, optional fraction → Unix ms.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let ms: String = frac[..digits].chars().chain("000".chars()).take(3).collect();
        millis = ms.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            let total = oh * 60 + om;
            if &rest[..1] == "-" {
                -total
            } else {
                total
            }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3_600 + mi * 60 + se - offset_min * 60;
    Some(secs * 1_000 + millis)
}

/// Where the descriptions in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescriptionsSource {
    Api,
    Cache,
    Bundled,
}

#[derive(Debug, thiserror::Error)]
pub enum NamesError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("no API configured and no cached fixture of `{0}`")]
    NotCached(String),
}

/// Fetches descriptions and fixtures from the provider's API and caches them under
/// `<data_dir>/uof/` (`markets-<lang>.xml`, `fixtures/<urn with ':' as '_'>.xml`). A document is
/// cached only after it parsed, and written to a temporary file renamed into place, so a crash
/// never leaves a torn cache.
#[derive(Debug, Clone)]
pub struct NameStore {
    dir: PathBuf,
    language: String,
    api: Option<UofApi>,
}

impl NameStore {
    pub fn new(data_dir: &Path, api: Option<UofApi>) -> Self {
        let language = api.as_ref().map_or("en".to_string(), |a| a.settings().language.clone());
        Self { dir: data_dir.join("uof"), language, api }
    }

    pub fn descriptions_path(&self) -> PathBuf {
        self.dir.join(format!("markets-{}.xml", self.language))
    }

    pub fn fixture_path(&self, urn: &str) -> PathBuf {
        let file: String =
            urn.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).take(200).collect();
        self.dir.join("fixtures").join(format!("{file}.xml"))
    }

    /// Descriptions from the API (then cached), else the cached copy, else the bundled file.
    /// The error that made it fall back is returned alongside, for the log.
    pub async fn descriptions(&self) -> (MarketDescriptions, DescriptionsSource, Option<NamesError>) {
        let mut failure = None;
        if let Some(api) = &self.api {
            match self.fetch_descriptions(api).await {
                Ok(d) => return (d, DescriptionsSource::Api, None),
                Err(e) => failure = Some(e),
            }
        }
        let path = self.descriptions_path();
        if let Ok(xml) = std::fs::read_to_string(&path) {
            match MarketDescriptions::parse(&xml) {
                Ok(d) => return (d, DescriptionsSource::Cache, failure),
                Err(e) => failure = failure.or(Some(e.into())),
            }
        }
        (MarketDescriptions::bundled(), DescriptionsSource::Bundled, failure)
    }

    async fn fetch_descriptions(&self, api: &UofApi) -> Result<MarketDescriptions, NamesError> {
        let xml = api.market_descriptions().await?;
        let parsed = MarketDescriptions::parse(&xml)?;
        self.write(&self.descriptions_path(), &xml)?;
        Ok(parsed)
    }

    /// The event's fixture: from the API when `refresh` (after a `fixture_change`) or when not
    /// cached, else from the cache; the cache also answers when the API fails.
    pub async fn fixture(&self, urn: &str, refresh: bool) -> Result<Fixture, NamesError> {
        let path = self.fixture_path(urn);
        let cached = || -> Option<Fixture> { Fixture::parse(&std::fs::read_to_string(&path).ok()?).ok() };
        if !refresh {
            if let Some(f) = cached() {
                return Ok(f);
            }
        }
        let Some(api) = &self.api else {
            return cached().ok_or_else(|| NamesError::NotCached(urn.to_string()));
        };
        let fetched = async {
            let xml = api.fixture(urn).await?;
            let fixture = Fixture::parse(&xml)?;
            self.write(&path, &xml)?;
            Ok::<_, NamesError>(fixture)
        }
        .await;
        match fetched {
            Ok(f) => Ok(f),
            Err(e) => cached().ok_or(e),
        }
    }

    fn write(&self, path: &Path, text: &str) -> Result<(), NamesError> {
        let io = |source| NamesError::Io { path: path.to_path_buf(), source };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let tmp = path.with_extension("xml.tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> Vec<(String, String)> {
        parse_specifiers(s).unwrap()
    }

    fn teams() -> EventNames {
        EventNames { event: Some("Ajax vs PSV".into()), competitors: vec!["Ajax".into(), "PSV".into()] }
    }

    #[test]
    fn template_language() {
        let e = teams();
        let cases = [
            ("Total", "", "Total"),
            ("over {total}", "total=2.5", "over 2.5"),
            ("{!periodnr} period - total", "periodnr=2", "2nd period - total"),
            ("{!setnr} set", "setnr=11", "11th set"),
            ("{!goalnr} goal", "goalnr=23", "23rd goal"),
            ("{$competitor1} ({+hcp})", "hcp=-1.5", "Ajax (-1.5)"),
            ("{$competitor2} ({-hcp})", "hcp=-1.5", "PSV (+1.5)"),
            ("{$competitor1} ({+hcp})", "hcp=0", "Ajax (0)"),
            ("{$competitor2} ({-hcp})", "hcp=0.25", "PSV (-0.25)"),
            ("Race to {pointnr} points", "pointnr=3", "Race to 3 points"),
            ("Score difference {pointnr-3}", "pointnr=10", "Score difference 7"),
            ("Next {goalnr+1}", "goalnr=1.5", "Next 2.5"),
            ("Winner of {$event}", "", "Winner of Ajax vs PSV"),
            ("{!inningnr} innings", "inningnr=1|total=3", "1st innings"),
        ];
        for (t, s, want) in cases {
            assert_eq!(render(t, &spec(s), &e).unwrap(), want, "{t} / {s}");
        }
    }

    #[test]
    fn template_errors() {
        let e = EventNames::default();
        let cases = [
            ("over {total", "", "bad_template"),
            ("over total}", "", "bad_template"),
            ("{}", "", "bad_template"),
            ("over {total}", "", "missing_specifier"),
            ("{+hcp}", "hcp=abc", "bad_specifier_value"),
            ("{!periodnr}", "periodnr=1.5", "bad_specifier_value"),
            ("{!periodnr}", "periodnr=-1", "bad_specifier_value"),
            ("{$competitor1}", "", "missing_fixture"),
            ("{$event}", "", "missing_fixture"),
            ("{%player}", "", "unsupported_reference"),
        ];
        for (t, s, code) in cases {
            assert_eq!(render(t, &spec(s), &e).unwrap_err().code(), code, "{t}");
        }
    }

    #[test]
    fn bundled_names_and_fallbacks() {
        let namer = Namer::new(MarketDescriptions::bundled());
        assert!(namer.descriptions().len() >= 8);
        let e = teams();
        assert_eq!(namer.market_name(1, "", &e), "1x2");
        assert_eq!(namer.outcome_name(1, "1", "", &e), "Ajax");
        assert_eq!(namer.outcome_name(1, "2", "", &e), "draw");
        assert_eq!(namer.market_name(18, "total=2.5", &e), "Total");
        assert_eq!(namer.outcome_name(18, "12", "total=2.5", &e), "over 2.5");
        assert_eq!(namer.outcome_name(16, "1715", "hcp=-1", &e), "PSV (+1)");
        assert_eq!(namer.market_name(446, "periodnr=3|total=5.5", &e), "3rd period - total");
        assert_eq!(namer.outcome_name(29, "74", "", &e), "yes");
        assert_eq!(namer.fallbacks.total(), 0);
        assert_eq!(namer.market_name(99_999, "total=2.5", &e), "Market 99999 [total=2.5]");
        assert_eq!(namer.outcome_name(18, "77", "total=2.5", &e), "Outcome 77");
        let none = EventNames::default();
        assert_eq!(namer.outcome_name(16, "1714", "hcp=-1", &none), "Competitor 1 (-1)");
        assert_eq!(namer.outcome_name(18, "12", "", &none), "over total");
        assert_eq!(namer.outcome_name(18, "12", "total", &none), "over {total}");
        let f = &namer.fallbacks;
        assert_eq!(f.unknown_market.load(Ordering::Relaxed), 1);
        assert_eq!(f.unknown_outcome.load(Ordering::Relaxed), 1);
        assert_eq!(f.unfilled.load(Ordering::Relaxed), 2);
        assert_eq!(f.malformed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn descriptions_parse_errors() {
        let cases = [
            ("", "not_xml"),
            ("<market_descriptions>", "not_xml"),
            ("<other/>", "wrong_root"),
            ("<market_descriptions response_code=\"FORBIDDEN\"/>", "response_code"),
            ("<market_descriptions><market name=\"x\"/></market_descriptions>", "missing_attribute"),
            ("<market_descriptions><market id=\"-1\" name=\"x\"/></market_descriptions>", "missing_attribute"),
            ("<market_descriptions><market id=\"1\"/></market_descriptions>", "missing_attribute"),
            (
                "<market_descriptions><market id=\"1\" name=\"x\"><outcomes><outcome id=\"1\"/></outcomes></market></market_descriptions>",
                "missing_attribute",
            ),
            ("<!DOCTYPE x [<!ENTITY a \"b\">]><market_descriptions/>", "not_xml"),
        ];
        for (xml, code) in cases {
            assert_eq!(MarketDescriptions::parse(xml).unwrap_err().code(), code, "{xml}");
        }
        let dup =
            "<market_descriptions><market id=\"1\" name=\"a\"/><market id=\"1\" name=\"b\"/></market_descriptions>";
        let d = MarketDescriptions::parse(dup).unwrap();
        assert_eq!((d.len(), d.duplicates, d.get(1).unwrap().name.as_str()), (1, 1, "a"));
    }

    #[test]
    fn fixture_fields() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<fixtures_fixture generated_at="2024-05-01T10:00:00+00:00">
  <fixture start_time_tbd="false" id="sr:match:42" scheduled="2024-05-01T18:30:00+02:00" start_time_confirmed="true">
    <tournament id="sr:tournament:37" name="Eredivisie">
      <sport id="sr:sport:1" name="Soccer"/>
      <category id="sr:category:35" name="Netherlands"/>
    </tournament>
    <competitors>
      <competitor qualifier="away" id="sr:competitor:2" name="PSV"/>
      <competitor qualifier="home" id="sr:competitor:1" name="Ajax"/>
    </competitors>
  </fixture>
</fixtures_fixture>"#;
        let f = Fixture::parse(xml).unwrap();
        assert_eq!(f.name, "Ajax vs PSV");
        assert_eq!(f.sport.as_deref(), Some("Soccer"));
        assert_eq!(f.sport_id.as_deref(), Some("sr:sport:1"));
        assert_eq!(f.tournament.as_deref(), Some("Eredivisie"));
        assert_eq!(f.start_time_ms, Some(1_714_581_000_000));
        assert!(!f.start_time_tbd);
        let names = EventNames::from(&f);
        assert_eq!(names.competitors, vec!["Ajax", "PSV"]);
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.5Z"), Some(500));
        assert_eq!(parse_rfc3339_ms("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        for bad in ["", "2024-13-01T00:00:00Z", "2024-05-01T00:00:00", "2024-05-01T00:00:00+0200"] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            #[test]
            fn render_never_panics(t in "[{}!+$%a-z0-9 .:_-]{0,40}", s in "[a-z0-9=|.+-]{0,24}") {
                let e = teams();
                if let Ok(spec) = parse_specifiers(&s) {
                    let _ = render(&t, &spec, &e);
                }
                let namer = Namer::new(MarketDescriptions::bundled());
                let _ = namer.market_name(18, &s, &e);
                let _ = namer.outcome_name(16, "1714", &s, &EventNames::default());
            }

            #[test]
            fn signed_and_negated_are_opposites(m in -10_000i64..10_000, scale in 0u32..3) {
                let v = Decimal { mantissa: i128::from(m), scale }.plain();
                let spec = vec![("hcp".to_string(), v)];
                let plus = render("{+hcp}", &spec, &EventNames::default()).unwrap();
                let minus = render("{-hcp}", &spec, &EventNames::default()).unwrap();
                if m == 0 {
                    prop_assert_eq!((plus.as_str(), minus.as_str()), ("0", "0"));
                } else {
                    prop_assert_ne!(plus.as_bytes()[0], minus.as_bytes()[0]);
                    prop_assert_eq!(&plus[1..], &minus[1..]);
                }
            }

            #[test]
            fn descriptions_parser_never_panics(doc in "[<>/=\" a-z_0-9{}!]{0,200}") {
                let _ = MarketDescriptions::parse(&doc);
                let _ = Fixture::parse(&doc);
            }

            #[test]
            fn mutated_bundled_file_never_panics(cut in 0usize..4_000, byte in any::<u8>()) {
                let mut bytes = BUNDLED_MARKETS_EN.as_bytes().to_vec();
                let at = cut % bytes.len();
                bytes[at] = byte;
                if let Ok(text) = String::from_utf8(bytes) {
                    let _ = MarketDescriptions::parse(&text);
                }
            }
        }
    }
}
