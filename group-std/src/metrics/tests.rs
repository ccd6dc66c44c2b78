//! Tests of rendering, labels, routing and serving.

use std::time::{Duration, Instant};

use super::*;
use group_core::counters::{Event, RekeyReason};
use group_core::group::Group;
use group_core::group::GroupConfig;
use group_core::sequence::LAST_SEQ;
use group_core::wire::Epoch;

#[test]
fn families_have_help_type_and_escaped_labels() {
    let mut p = Exposition::new();
    p.family("x_total", MetricType::Counter, "a \\ b\nc")
        .sample(&[("a", "q\"u\\o\nte")], 7u64)
        .sample(&[], 0u64);
    p.family("y", MetricType::Gauge, "h")
        .sample(&[], 0.5)
        .sample(&[], f64::NAN);
    assert_eq!(
        p.finish(),
        "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\n\
         x_total{a=\"q\\\"u\\\\o\\nte\"} 7\nx_total 0\n\
         # HELP y h\n# TYPE y gauge\ny 0.5\ny NaN\n"
    );
}

#[test]
fn histograms_are_cumulative() {
    let mut h = Histogram::new(&[0.1, 1.0]);
    for v in [0.05, 0.5, 0.7, 3.0] {
        h.observe(v);
    }
    let mut p = Exposition::new();
    p.family("d_seconds", MetricType::Histogram, "d")
        .histogram(&[("g", "1")], &h);
    let text = p.finish();
    assert!(
        text.contains("d_seconds_bucket{g=\"1\",le=\"0.1\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("d_seconds_bucket{g=\"1\",le=\"1\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("d_seconds_bucket{g=\"1\",le=\"+Inf\"} 4\n"),
        "{text}"
    );
    assert!(text.contains("d_seconds_sum{g=\"1\"} 4.25\n"), "{text}");
    assert!(text.contains("d_seconds_count{g=\"1\"} 4\n"), "{text}");
}

#[test]
fn names_are_checked() {
    assert!(valid_metric_name("dtls_group_x:y_total"));
    assert!(!valid_metric_name("1x"));
    assert!(!valid_metric_name(""));
    assert!(!valid_metric_name("a-b"));
    assert!(valid_label_name("group_id"));
    assert!(!valid_label_name("__name"));
    assert!(!valid_label_name("le-x"));
}

/// Every sample line of a page: (name, labels, value).
/// (name, labels, value) of one sample line.
type Sample = (String, Vec<(String, String)>, String);

fn samples(page: &str) -> Vec<Sample> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => {
                    let inner = rest.strip_suffix('}').unwrap();
                    let labels = inner
                        .split("\",")
                        .filter(|s| !s.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once("=\"").unwrap();
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (n.to_owned(), labels)
                }
                None => (series.to_owned(), vec![]),
            };
            (name, labels, value.to_owned())
        })
        .collect()
}

/// Checks the conventions: valid names, counters end in `_total`, a HELP and TYPE before
/// each family, families not repeated, no duplicate series.
fn check_conventions(page: &str) {
    let mut seen_families = std::collections::HashSet::new();
    let mut current: Option<(String, String)> = None;
    let mut series = std::collections::HashSet::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(valid_metric_name(&name), "{name}");
            assert!(seen_families.insert(name.clone()), "family {name} twice");
            current = Some((name, String::new()));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            let (cur, _) = current.clone().unwrap();
            assert_eq!(name, cur);
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name}");
            } else {
                assert!(!name.ends_with("_total"), "{kind} {name}");
            }
            current = Some((cur, kind.to_owned()));
        } else {
            let (fam, kind) = current.clone().unwrap();
            let (name, labels, value) = samples(line).pop().unwrap();
            if kind == "histogram" {
                assert!(
                    [
                        format!("{fam}_bucket"),
                        format!("{fam}_sum"),
                        format!("{fam}_count")
                    ]
                    .contains(&name),
                    "{name}"
                );
            } else {
                assert_eq!(name, fam);
            }
            for (k, _) in &labels {
                assert!(valid_label_name(k), "{k}");
            }
            assert!(
                value.parse::<f64>().is_ok() || ["NaN", "+Inf", "-Inf"].contains(&value.as_str()),
                "{line}"
            );
            assert!(series.insert((name, labels)), "duplicate series {line}");
        }
    }
}

#[test]
fn record_metrics_follow_the_group() {
    let mut g: Group = Group::new(GroupConfig::new(1));
    let t0 = Instant::now();
    let mut m = RecordMetrics::new();
    m.observe(&g, t0);
    let mut p = Exposition::new();
    m.render(&mut p, &g, &[("group", "239.255.0.1:1")], t0);
    let text = p.finish();
    check_conventions(&text);
    assert!(text.contains("dtls_group_epoch{group=\"239.255.0.1:1\",role=\"current\"} 0\n"));
    assert!(text.contains("dtls_group_epoch_age_seconds{group=\"239.255.0.1:1\"} 0\n"));
    let keys = group_core::schedule::native_keys(
        1,
        Epoch(3),
        group_core::suite::Suite::AES_128_CCM,
        &group_core::schedule::EpochSecret([7; 32]),
    )
    .unwrap();
    g.install_and_activate(Epoch(3), &keys, group_core::time::Instant(0))
        .unwrap();
    let mut junk = [0u8; 5];
    assert!(g.open(group_core::time::Instant(0), &mut junk).is_err());
    m.observe(&g, t0);
    m.count_event(&Event::RekeyNeeded {
        epoch: Epoch(3),
        reason: RekeyReason::GroupUsage,
    });
    m.count_event(&Event::IntegrityLimitReached {
        epoch: Epoch(3),
        failures: 9,
    });
    let later = t0 + Duration::from_millis(1500);
    m.observe(&g, later);
    let mut p = Exposition::new();
    m.render(&mut p, &g, &[("group", "g")], later);
    let text = p.finish();
    check_conventions(&text);
    for want in [
        "dtls_group_epoch{group=\"g\",role=\"current\"} 3\n",
        "dtls_group_epoch_age_seconds{group=\"g\"} 1.5\n",
        "dtls_group_records_dropped_total{group=\"g\",reason=\"malformed\"} 1\n",
        "dtls_group_records_dropped_total{group=\"g\",reason=\"replay\"} 0\n",
        "dtls_group_events_total{group=\"g\",event=\"rekey_needed\"} 1\n",
        "dtls_group_events_total{group=\"g\",event=\"integrity_limit_reached\"} 1\n",
        "dtls_group_rekey_needed_events_total{group=\"g\",reason=\"group_usage\"} 1\n",
        "dtls_group_send_sequence_reserved_left{group=\"g\"} 0\n",
    ] {
        assert!(text.contains(want), "{want} not in\n{text}");
    }
}

#[test]
fn a_sender_shows_its_reservation() {
    let mut g: Group =
        Group::new(GroupConfig::new(1).with_sender_id(group_core::wire::SenderId(4)));
    let keys = group_core::schedule::native_keys(
        1,
        Epoch(1),
        group_core::suite::Suite::AES_128_CCM,
        &group_core::schedule::EpochSecret([7; 32]),
    )
    .unwrap();
    g.install_and_activate(Epoch(1), &keys, group_core::time::Instant(0))
        .unwrap();
    let mut store = group_core::sequence::MemorySequenceStore::commissioned();
    let mut buf = [0u8; 128];
    for _ in 0..3 {
        g.seal(group_core::time::Instant(0), &mut store, b"on", &mut buf)
            .unwrap();
    }
    let m = RecordMetrics::new();
    let mut p = Exposition::new();
    m.render(&mut p, &g, &[], Instant::now());
    let text = p.finish();
    let step = GroupConfig::new(1).sequence_reserve_step;
    assert!(
        text.contains(&format!(
            "dtls_group_send_sequence_reserved_left {}\n",
            step - 3
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "dtls_group_send_sequence_left {}\n",
        LAST_SEQ + 1 - 3
    )));
    assert!(text.contains("dtls_group_records_sealed_total 3\n"));
}

#[test]
fn key_server_metrics() {
    let mut k = KeyServerMetrics::new();
    let t0 = Instant::now();
    k.joined(5, 1);
    k.joined(6, 1);
    k.left(1);
    k.revoked();
    k.epoch_created(1, 2, cause_label("Join"), t0);
    assert_eq!(k.rekeys_in_progress().collect::<Vec<_>>(), vec![(1, 2)]);
    k.rekey_done(1, 1, t0 + Duration::from_secs(1)); // another epoch: ignored
    k.rekey_done(1, 2, t0 + Duration::from_millis(700));
    assert_eq!(k.rekeys_in_progress().count(), 0);
    k.refused(reason_label("UnknownDevice"));
    k.refused(reason_label("UnsupportedVersion(3)"));
    let c = BundleContent {
        epoch: 2,
        sender_id: None,
        senders: vec![1],
        stale: vec![],
    };
    assert!(!k.bundle_sent(5, 1, c.clone()));
    assert!(k.bundle_sent(5, 1, c.clone()));
    assert!(!k.bundle_sent(6, 1, c.clone()));
    let mut p = Exposition::new();
    k.render(
        &mut p,
        &[GroupView {
            id: 1,
            devices: 3,
            members: 2,
            pending: 1,
            current: 2,
            staged: 0,
        }],
        ServerTotals {
            rejected: 2,
            replays: 1,
            challenges_issued: 4,
            events_dropped: 0,
        },
    );
    render_build_info(&mut p, "keyserver");
    let text = p.finish();
    check_conventions(&text);
    for want in [
        "dtls_group_keyserver_devices{group_id=\"1\"} 3\n",
        "dtls_group_keyserver_members{group_id=\"1\"} 2\n",
        "dtls_group_keyserver_joins_total{group_id=\"1\"} 2\n",
        "dtls_group_keyserver_leaves_total{group_id=\"1\"} 1\n",
        "dtls_group_keyserver_revocations_total 1\n",
        "dtls_group_keyserver_rekeys_total{group_id=\"1\",cause=\"join\"} 1\n",
        "dtls_group_keyserver_rekey_duration_seconds_bucket{group_id=\"1\",le=\"0.5\"} 0\n",
        "dtls_group_keyserver_rekey_duration_seconds_bucket{group_id=\"1\",le=\"1\"} 1\n",
        "dtls_group_keyserver_rekey_duration_seconds_count{group_id=\"1\"} 1\n",
        "dtls_group_keyserver_bundles_sent_total 3\n",
        "dtls_group_keyserver_bundles_retransmitted_total 1\n",
        "dtls_group_keyserver_messages_refused_total{reason=\"unknown_device\"} 1\n",
        "dtls_group_keyserver_messages_refused_total{reason=\"unsupported_version\"} 1\n",
        "dtls_group_keyserver_messages_refused_total{reason=\"bad_signature\"} 0\n",
        "dtls_group_keyserver_join_challenges_total 4\n",
    ] {
        assert!(text.contains(want), "{want} not in\n{text}");
    }
}

#[test]
fn reason_labels() {
    assert_eq!(reason_label("UnknownDevice"), "unknown_device");
    assert_eq!(reason_label("Store(Io)"), "store");
    assert_eq!(reason_label("Key(BadLength { a: 1 })"), "key");
    assert_eq!(reason_label(""), "other");
}

#[test]
fn routes() {
    assert_eq!(
        route("GET /metrics HTTP/1.1"),
        Route::Metrics { head: false }
    );
    assert_eq!(
        route("GET /metrics?x=1 HTTP/1.0"),
        Route::Metrics { head: false }
    );
    assert_eq!(
        route("HEAD /metrics HTTP/1.1"),
        Route::Metrics { head: true }
    );
    assert_eq!(route("GET / HTTP/1.1"), Route::NotFound);
    assert_eq!(route("POST /metrics HTTP/1.1"), Route::MethodNotAllowed);
    assert_eq!(route("GET /metrics"), Route::BadRequest);
    assert_eq!(route(""), Route::BadRequest);
    assert_eq!(route("GET /metrics SSH/2 x"), Route::BadRequest);
}

#[test]
fn serves_the_page_from_the_polling_thread() {
    let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr();
    let client = std::thread::spawn(move || {
        let ok = fetch(addr, "/metrics").unwrap();
        let missing = fetch(addr, "/").unwrap();
        (ok, missing)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut polls = 0;
    while !client.is_finished() {
        assert!(Instant::now() < deadline, "no answer");
        server.poll(|| {
            polls += 1;
            "a_total 1\n".to_owned()
        });
        std::thread::sleep(Duration::from_millis(5));
    }
    let ((code, body), (code404, _)) = client.join().unwrap();
    assert_eq!((code, body.as_str()), (200, "a_total 1\n"));
    assert_eq!(code404, 404);
    assert_eq!(polls, 1);
    // A node that does not poll: 503 after the timeout, not a hang.
    let t = Instant::now();
    let (code, _) = fetch(addr, "/metrics").unwrap();
    assert_eq!(code, 503);
    assert!(t.elapsed() < Duration::from_secs(4));
    drop(server);
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}
