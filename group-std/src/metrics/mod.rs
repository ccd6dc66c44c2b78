//! Prometheus metrics: the text exposition format (version 0.0.4) and a minimal HTTP/1.1
//! responder that serves it at `/metrics`.
//!
//! `dtls-group listen`, `member` and `keyserver` take `--metrics ADDR:PORT`. The responder
//! runs in its own thread on a [`std::net::TcpListener`], one connection at a time (a slow or
//! silent client is cut off after 2 s), and asks the node's own loop for the page through a
//! bounded channel ([`MetricsServer::poll`], called where the node also polls its control
//! socket): the page is rendered by the thread that owns the state, so nothing is shared or
//! locked, and a scrape sees one consistent moment.
//!
//! The metric names, their labels and what they mean are listed in `docs/operations.md`
//! (§ "Prometheus metrics"). Rendering is split from serving so that it can be tested alone:
//! [`Exposition`] writes families, [`RecordMetrics`] the record layer of one group,
//! [`KeyServerMetrics`] what only the key server's driver sees (refusals, bundles, rekey
//! durations).
//!//! - [`exposition`]: the text format ([`Exposition`], [`Family`], [`Histogram`], [`Value`]) and
//!   the families every node has ([`render_build_info`]);
//! - [`record`]: the record layer of one group ([`RecordMetrics`]);
//! - [`keyserver`]: the key server's own families ([`KeyServerMetrics`]);
//! - [`http`]: the `/metrics` responder ([`MetricsServer`]) and a small client ([`fetch`]).
//!
//! ```
//! use group_std::metrics::{Exposition, MetricType};
//!
//! let mut page = Exposition::new();
//! page.family("dtls_group_records_accepted_total", MetricType::Counter, "Records delivered.")
//!     .sample(&[("group", "239.255.0.1:40000")], 3u64);
//! let text = page.finish();
//! let lines: Vec<&str> = text.lines().collect();
//! assert_eq!(lines, [
//!     "# HELP dtls_group_records_accepted_total Records delivered.",
//!     "# TYPE dtls_group_records_accepted_total counter",
//!     "dtls_group_records_accepted_total{group=\"239.255.0.1:40000\"} 3",
//! ]);
//! ```

pub mod exposition;
pub mod http;
pub mod keyserver;
pub mod record;

pub use exposition::{
    CONTENT_TYPE, Exposition, Family, Histogram, MetricType, Value, render_build_info,
    valid_label_name, valid_metric_name,
};
pub use http::{MetricsServer, Route, fetch, route};
pub use keyserver::{
    BundleContent, GroupView, KeyServerMetrics, REKEY_DURATION_BUCKETS, ServerTotals, cause_label,
    reason_label,
};
pub use record::{EVENT_KINDS, REKEY_REASONS, RecordMetrics};

#[cfg(test)]
mod tests;
