//! One test per translation rule, on XML shaped as the provider's schema has it.

use super::*;

fn translator() -> UofTranslator {
    UofTranslator::new("uof", 5)
}

fn feed(xml: &str) -> (FeedMessage, Vec<Refusal>) {
    let translation = translator().translate(xml, None).expect("translates");
    match translation.event {
        UofEvent::Feed { message, .. } => (message, translation.refused),
        other => panic!("not a feed message: {other:?}"),
    }
}

fn markets(message: &FeedMessage) -> &[FeedMarket] {
    message
        .items
        .iter()
        .find_map(|item| match item {
            FeedItem::Markets { markets, .. } => Some(markets.as_slice()),
            _ => None,
        })
        .expect("a Markets item")
}

fn odds(text: &str) -> Odds {
    Odds::parse_decimal(text).expect("odds")
}

#[test]
fn messages_carry_no_sequence_and_need_none() {
    let (message, refused) = feed(
        r#"<odds_change product="1" event_id="sr:match:1" timestamp="1000"><odds><market id="1" status="1"><outcome id="1" odds="2.5" active="1"/></market></odds></odds_change>"#,
    );
    assert_eq!((message.sequence, message.timestamp), (0, 1000));
    assert!(refused.is_empty());
    // The same XML translates to the same message (the book de-duplicates by content).
    let (again, _) = feed(
        r#"<odds_change product="1" event_id="sr:match:1" timestamp="1000"><odds><market id="1" status="1"><outcome id="1" odds="2.5" active="1"/></market></odds></odds_change>"#,
    );
    assert_eq!(again, message);
    assert_eq!(again.digest(), message.digest());
}

#[test]
fn request_id_is_not_part_of_the_content() {
    let live = r#"<bet_cancel product="1" event_id="e" timestamp="5"><market id="1"/></bet_cancel>"#;
    let replayed =
        r#"<bet_cancel product="1" event_id="e" timestamp="5" request_id="99"><market id="1"/></bet_cancel>"#;
    assert_eq!(feed(live).0.digest(), feed(replayed).0.digest());
}

#[test]
fn every_market_status_and_outcome_active_is_read() {
    let (message, refused) = feed(
        r#"<odds_change product="1" event_id="e" timestamp="1"><odds>
        <market id="1" status="1"><outcome id="1" odds="2" active="1"/><outcome id="2" odds="3" active="0"/></market>
        <market id="2" status="0"/><market id="3" status="-1"/><market id="4" status="-2"/>
        <market id="5" status="-3"/><market id="6" status="-4"/><market id="7"/><market id="8" status="7"/>
        </odds></odds_change>"#,
    );
    let statuses: Vec<FeedMarketStatus> = markets(&message).iter().map(|market| market.status).collect();
    use FeedMarketStatus::*;
    assert_eq!(statuses, [Active, Inactive, Suspended, HandedOver, Settled, Cancelled, Active, Suspended]);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].reason, "unknown_market_status");
    let outcomes = &markets(&message)[0].outcomes;
    assert_eq!((outcomes[0].active, outcomes[1].active), (true, false));
}

#[test]
fn outcomes_without_odds_are_listed_not_refused() {
    let (message, refused) = feed(
        r#"<odds_change product="1" event_id="e" timestamp="1"><odds><market id="18" specifiers="total=2.5" status="1"><outcome id="12" active="1"/><outcome id="13" odds="1.9" active="1"/></market></odds></odds_change>"#,
    );
    assert!(refused.is_empty(), "{refused:?}");
    let market = &markets(&message)[0];
    assert_eq!(market.market, "18|total=2.5");
    assert_eq!(market.outcomes[0].odds, None);
    assert_eq!(market.outcomes[1].odds, Some(odds("1.9")));
}

#[test]
fn odds_of_any_precision_round_down_never_up() {
    assert_eq!(odds_rounded_down("1.9999999999"), Ok(Some(odds("1.9999"))));
    assert_eq!(odds_rounded_down("2.12345"), Ok(Some(odds("2.1234"))));
    assert_eq!(odds_rounded_down("3"), Ok(Some(odds("3"))));
    assert_eq!(odds_rounded_down("1.00009"), Ok(None), "rounds down to 1.0: nothing to win");
    assert_eq!(odds_rounded_down("1.0"), Ok(None));
    assert_eq!(odds_rounded_down("0.5"), Ok(None));
    assert_eq!(odds_rounded_down("99999999.5"), Ok(None));
    for bad in ["", "abc", "1.", ".5", "-2", "1e3", "2,5"] {
        assert_eq!(odds_rounded_down(bad).map_err(|refusal| refusal.reason), Err("odds_malformed"), "{bad}");
    }
    // A market of 170 prices with a few long ones is applied whole.
    let mut xml = String::from(r#"<odds_change product="3" event_id="e" timestamp="1"><odds>"#);
    for market in 0..170 {
        let _ = write!(
            xml,
            r#"<market id="{market}" status="1"><outcome id="1" odds="1.8333333333" active="1"/></market>"#
        );
    }
    xml.push_str("</odds></odds_change>");
    let (message, refused) = feed(&xml);
    assert!(refused.is_empty());
    assert!(markets(&message).iter().all(|market| market.outcomes[0].odds == Some(odds("1.8333"))));
}

#[test]
fn an_unusable_price_is_refused_alone_with_its_reason() {
    let (message, refused) = feed(
        r#"<odds_change product="1" event_id="e" timestamp="1"><odds><market id="1" status="1"><outcome id="1" odds="1.0" active="1"/><outcome id="2" odds="x" active="1"/><outcome id="3" odds="2.2" active="1"/></market></odds></odds_change>"#,
    );
    let reasons: Vec<&str> = refused.iter().map(|refusal| refusal.reason).collect();
    assert_eq!(reasons, ["odds_out_of_range", "odds_malformed"]);
    let outcomes = &markets(&message)[0].outcomes;
    assert_eq!(outcomes.iter().map(|outcome| outcome.odds).collect::<Vec<_>>(), [None, None, Some(odds("2.2"))]);
}

#[test]
fn settlements_map_void_and_dead_heat_factors() {
    let (message, refused) = feed(
        r#"<bet_settlement product="1" event_id="e" timestamp="5" certainty="2"><outcomes>
        <market id="1"><outcome id="1" result="1" dead_heat_factor="0.5"/><outcome id="2" result="0" void_factor="1"/>
        <outcome id="3" result="0" void_factor="0.5"/><outcome id="4" result="1" dead_heat_factor="0.3333333"/></market>
        </outcomes></bet_settlement>"#,
    );
    assert!(refused.is_empty());
    let FeedItem::Settlement { results, .. } = &message.items[0] else { panic!("{message:?}") };
    assert_eq!((results[0].outcome, results[0].dead_heat), (Outcome::Win, Some(Ratio::HALF)));
    assert_eq!((results[1].outcome, results[1].void_factor), (Outcome::Void, None));
    assert_eq!((results[2].outcome, results[2].void_factor), (Outcome::Lose, Some(Ratio::HALF)));
    assert_eq!(results[3].dead_heat, Some(Ratio::new(1, 3).expect("1/3")));
}

#[test]
fn an_undecided_result_settles_nothing_of_its_market() {
    let (message, refused) = feed(
        r#"<bet_settlement product="1" event_id="e" timestamp="5" certainty="1"><outcomes>
        <market id="1"><outcome id="1" result="-1"/><outcome id="2" result="0"/></market>
        <market id="2"><outcome id="1" result="1"/></market></outcomes></bet_settlement>"#,
    );
    assert_eq!(refused.iter().map(|refusal| refusal.reason).collect::<Vec<_>>(), ["undecided_result"]);
    assert_eq!(message.items.len(), 1, "only market 2 settles");
    assert!(matches!(&message.items[0], FeedItem::Settlement { market, .. } if market == "2"));
}

#[test]
fn factors_outside_the_schema_are_refused() {
    for (outcome, reason) in [
        (r#"<outcome id="1" result="1" void_factor="0.3"/>"#, "bad_void_factor"),
        (r#"<outcome id="1" result="1" dead_heat_factor="0.4"/>"#, "bad_dead_heat_factor"),
        (r#"<outcome id="1" result="1" dead_heat_factor="0"/>"#, "bad_dead_heat_factor"),
        (r#"<outcome id="1" result="2"/>"#, "bad_number"),
    ] {
        let xml = format!(
            r#"<bet_settlement product="1" event_id="e" timestamp="5" certainty="2"><outcomes><market id="1">{outcome}</market></outcomes></bet_settlement>"#
        );
        let (message, refused) = feed(&xml);
        assert!(message.items.is_empty());
        assert_eq!(refused[0].reason, reason, "{outcome}");
    }
}

#[test]
fn bet_cancel_windows_and_their_rollback() {
    let (message, _) = feed(
        r#"<bet_cancel product="1" event_id="e" timestamp="9" start_time="100" end_time="200" superceded_by="sr:match:2"><market id="18" specifiers="total=2.5" void_reason="12"/><market id="1"/></bet_cancel>"#,
    );
    assert_eq!(
        message.items[0],
        FeedItem::CancelWindow { event: "e".into(), market: "18|total=2.5".into(), from: Some(100), to: Some(200) }
    );
    assert_eq!(message.items.len(), 2);
    let (message, _) =
        feed(r#"<bet_cancel product="1" event_id="e" timestamp="9" start_time="100"><market id="1"/></bet_cancel>"#);
    assert_eq!(
        message.items[0],
        FeedItem::CancelWindow { event: "e".into(), market: "1".into(), from: Some(100), to: None }
    );
    let (message, _) = feed(
        r#"<rollback_bet_cancel product="1" event_id="e" timestamp="9" end_time="200"><market id="1"/></rollback_bet_cancel>"#,
    );
    assert_eq!(
        message.items[0],
        FeedItem::RollbackCancel { event: "e".into(), market: "1".into(), from: None, to: Some(200) }
    );
    let (message, _) = feed(
        r#"<rollback_bet_settlement product="1" event_id="e" timestamp="9"><market id="1"/></rollback_bet_settlement>"#,
    );
    assert_eq!(message.items[0], FeedItem::Rollback { event: "e".into(), market: "1".into() });
}

#[test]
fn bet_stop_groups_narrow_with_descriptions_and_stop_all_without() {
    let named = UofTranslator::new("uof", 5).with_names(Some(Arc::new(UofNames::new(crate::names::Namer::new(
        crate::names::MarketDescriptions::bundled(),
    )))));
    let groups = |xml: &str| named.translate(xml, None).expect("translates").groups;
    assert_eq!(
        groups(r#"<bet_stop product="1" event_id="e" timestamp="9" groups="1st_half|period"/>"#),
        Some(vec!["1st_half".to_string(), "period".to_string()])
    );
    assert_eq!(groups(r#"<bet_stop product="1" event_id="e" timestamp="9" groups="1st_half|all"/>"#), None);
    assert_eq!(
        translator()
            .translate(r#"<bet_stop product="1" event_id="e" timestamp="9" groups="1st_half"/>"#, None)
            .expect("translates")
            .groups,
        None,
        "without descriptions every market stops"
    );
    let descriptions = crate::names::MarketDescriptions::bundled();
    let first_half = ["1st_half".to_string()];
    assert!(in_groups(&descriptions, "68|total=1.5", &first_half));
    assert!(!in_groups(&descriptions, "18|total=2.5", &first_half));
    assert!(!in_groups(&descriptions, "1", &first_half));
    assert!(in_groups(&descriptions, "999999|x=1", &first_half), "an unknown market is in every group");
    assert!(in_groups(&descriptions, "not-a-number", &first_half));
}

#[test]
fn bet_stop_items_list_no_market_and_market_status_0_or_minus_1_suspends() {
    for xml in [
        r#"<bet_stop product="1" event_id="e" timestamp="9" groups="all"/>"#,
        r#"<bet_stop product="1" event_id="e" timestamp="9" groups="goals|corners" market_status="-1"/>"#,
        r#"<bet_stop product="1" event_id="e" timestamp="9" groups="goals" market_status="0"/>"#,
    ] {
        let (message, refused) = feed(xml);
        assert!(refused.is_empty());
        assert_eq!(message.items, [FeedItem::BetStop { event: "e".into(), markets: Vec::new() }]);
    }
    assert!(
        translator().translate(r#"<bet_stop product="1" event_id="e" timestamp="9"/>"#, None).is_err(),
        "groups is required"
    );
}

#[test]
fn fixture_change_types() {
    for change in ["1", "2", "4", "5"] {
        let xml = format!(
            r#"<fixture_change product="3" event_id="e" timestamp="9" change_type="{change}" start_time="5000" next_live_time="5000"/>"#
        );
        let (message, refused) = feed(&xml);
        assert!(refused.is_empty());
        assert!(
            matches!(&message.items[..], [FeedItem::Announce { starts_at: 5000, reschedule: true, .. }]),
            "{change}"
        );
    }
    let (message, _) =
        feed(r#"<fixture_change product="3" event_id="e" timestamp="9" change_type="3" start_time="5000"/>"#);
    assert!(matches!(&message.items[..], [FeedItem::Announce { .. }, FeedItem::BetStop { .. }]));
    let (message, refused) =
        feed(r#"<fixture_change product="3" event_id="e" timestamp="9" change_type="8" start_time="5000"/>"#);
    assert_eq!(message.items.len(), 1);
    assert_eq!(refused[0].reason, "unknown_change_type");
}

#[test]
fn alive_snapshot_complete_and_unknown_messages() {
    let translation =
        translator().translate(r#"<alive product="3" timestamp="5" subscribed="0"/>"#, None).expect("alive");
    assert_eq!(translation.event, UofEvent::Alive { product: 3, timestamp: 5, subscribed: false });
    let translation = translator()
        .translate(r#"<snapshot_complete request_id="42" product="1" timestamp="5"/>"#, None)
        .expect("snapshot_complete");
    let UofEvent::SnapshotComplete { product: 1, request_id: 42, message } = translation.event else { panic!() };
    assert_eq!(message.items, [FeedItem::SnapshotComplete]);
    let translation =
        translator().translate(r#"<cashout product="1" event_id="e" timestamp="5"/>"#, None).expect("skipped");
    assert_eq!(translation.event, UofEvent::Unknown { kind: "cashout".into() });
}

#[test]
fn unknown_elements_are_skipped_and_counted() {
    let (message, refused) = feed(
        r#"<odds_change product="1" event_id="e" timestamp="1"><novelty/><odds><market id="1" status="1"><outcome id="1" odds="2" active="1"/><flag/></market></odds></odds_change>"#,
    );
    assert_eq!(
        refused.iter().map(|refusal| refusal.reason).collect::<Vec<_>>(),
        ["unknown_element", "unknown_element"]
    );
    assert_eq!(markets(&message)[0].outcomes.len(), 1);
}

#[test]
fn sport_event_status_moves_the_event() {
    let status = |code: &str| {
        let xml = format!(
            r#"<odds_change product="1" event_id="e" timestamp="1"><sport_event_status status="{code}" match_status="0"/></odds_change>"#
        );
        feed(&xml).0.items.into_iter().skip(1).collect::<Vec<_>>()
    };
    assert!(matches!(&status("1")[..], [FeedItem::InPlay { bet_delay_seconds: 5, .. }]));
    assert!(matches!(&status("4")[..], [FeedItem::Ended { .. }]));
    assert!(matches!(&status("9")[..], [FeedItem::BetStop { .. }]));
    assert!(status("0").is_empty());
}

#[test]
fn routing_keys_parse_and_render() {
    let key = RoutingKey::parse("hi.-.live.odds_change.1.sr:match.1234.-").expect("parses");
    assert_eq!(key.priority.as_deref(), Some("hi"));
    assert!(key.live && !key.pre);
    assert_eq!(
        (key.message_type.as_str(), key.sport_id, key.event.as_deref()),
        ("odds_change", Some(1), Some("sr:match:1234"))
    );
    assert_eq!(key.node_id, None);
    assert_eq!(key.render(), "hi.-.live.odds_change.1.sr:match.1234.-");
    let key = RoutingKey::parse("lo.pre.-.bet_settlement.5.sr:match.9.17").expect("node id");
    assert_eq!((key.pre, key.node_id.as_deref()), (true, Some("17")));
    let key = RoutingKey::parse("-.-.-.alive.-.-.-").expect("an older key without node");
    assert_eq!((key.message_type.as_str(), key.event), ("alive", None));
    for bad in [
        "",
        "a.b",
        "xx.-.live.odds_change.1.sr:match.1.-",
        "hi.-.yes.odds_change.1.sr:match.1.-",
        "hi.-.-.-.1.sr:match.1.-",
        "hi.-.-.x.one.sr:match.1.-",
    ] {
        assert!(RoutingKey::parse(bad).is_err(), "{bad}");
    }
    // The sport of an event first seen in an odds change comes from its key.
    let key = RoutingKey::parse("hi.-.live.odds_change.5.sr:match.1.-").expect("parses");
    let translation = translator()
        .translate(r#"<odds_change product="1" event_id="sr:match:1" timestamp="1"/>"#, Some(&key))
        .expect("translates");
    let UofEvent::Feed { message, .. } = translation.event else { panic!() };
    assert!(matches!(&message.items[0], FeedItem::Announce { sport, .. } if sport == "sr:sport:5"));
}

#[test]
fn rendered_messages_are_schema_shaped_and_translate_back() {
    let producer = Producer { product: 1, live: true, sport_id: 1 };
    let message = FeedMessage {
        provider: "uof".into(),
        sequence: 11,
        timestamp: 77,
        items: vec![FeedItem::Settlement {
            event: "sr:match:9".into(),
            market: "18|total=2.5".into(),
            results: vec![
                FeedResult {
                    selection: "12".into(),
                    outcome: Outcome::Win,
                    dead_heat: Some(Ratio::HALF),
                    void_factor: None,
                },
                FeedResult {
                    selection: "13".into(),
                    outcome: Outcome::Lose,
                    dead_heat: None,
                    void_factor: Some(Ratio::HALF),
                },
            ],
        }],
    };
    let documents = render(&message, producer, None).expect("render");
    let [(routing, xml)] = &documents[..] else { panic!("{documents:?}") };
    assert_eq!(routing, "hi.-.live.bet_settlement.1.sr:match.9.-");
    assert!(!xml.contains("sequence"), "{xml}");
    let (back, refused) = feed(xml);
    assert!(refused.is_empty());
    assert_eq!(back.items, message.items);
    let (routing, xml) = render_alive(Producer { product: 3, live: false, sport_id: 1 }, 5, false);
    assert_eq!(routing, "-.-.-.alive.-.-.-.-");
    assert_eq!(
        translator().translate(&xml, None).expect("alive").event,
        UofEvent::Alive { product: 3, timestamp: 5, subscribed: false }
    );
    let prematch = Producer { product: 3, live: false, sport_id: 1 };
    let fixture = FeedMessage {
        provider: "uof".into(),
        sequence: 1,
        timestamp: 5,
        items: vec![FeedItem::Fixture {
            event: "sr:match:9".into(),
            name: "A v B".into(),
            sport: "football".into(),
            competition: String::new(),
            starts_at: 500,
        }],
    };
    let documents = render(&fixture, prematch, Some(4)).expect("render");
    let [(routing, xml)] = &documents[..] else { panic!("{documents:?}") };
    assert_eq!(routing, "lo.pre.-.fixture_change.1.sr:match.9.-");
    assert!(xml.contains(r#"request_id="4""#) && !xml.contains("name="), "{xml}");
    // A fixture with its markets is a fixture_change, then one odds_change.
    let mut opening = fixture.clone();
    opening.items.push(FeedItem::Market {
        event: "sr:match:9".into(),
        market: "1".into(),
        name: "1X2".into(),
        kind: "1x2".into(),
        selections: vec![book::FeedSelection { id: "1".into(), name: "Home".into(), price: odds("2.5") }],
        each_way: None,
    });
    opening.items.push(FeedItem::InPlay { event: "sr:match:9".into(), bet_delay_seconds: 5 });
    let documents = render(&opening, producer, None).expect("render");
    let kinds: Vec<&str> = documents.iter().map(|(routing, _)| routing.split('.').nth(3).expect("type")).collect();
    assert_eq!(kinds, ["fixture_change", "odds_change"]);
    assert!(documents[1].1.contains(r#"<sport_event_status status="1" match_status="6"/>"#), "{}", documents[1].1);
}

#[test]
fn malformed_xml_is_a_refusal_not_a_panic() {
    for (bad, reason) in [
        ("", "xml"),
        ("<odds_change", "xml"),
        (r#"<odds_change product="1"/>"#, "missing_attribute"),
        (r#"<odds_change product="1" event_id="e" timestamp="x"/>"#, "bad_number"),
        (r#"<bet_settlement product="1" event_id="e" timestamp="1"/>"#, "missing_attribute"),
        (r#"<alive product="1" timestamp="1"/>"#, "missing_attribute"),
        (r#"<snapshot_complete product="1" timestamp="1"/>"#, "missing_attribute"),
    ] {
        assert_eq!(translator().translate(bad, None).map_err(|refusal| refusal.reason), Err(reason), "{bad}");
    }
    let huge = format!("<alive{}/>", " ".repeat(UOF_MESSAGE_BYTES_MAX));
    assert_eq!(translator().translate(&huge, None).map_err(|refusal| refusal.reason), Err("too_large"));
}
