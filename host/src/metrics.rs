//! Prometheus metrics: what an operator graphs and alerts on.
//!
//! Recorded through the `metrics` facade (free when no exporter is
//! installed); `metrics.address` installs the Prometheus exporter, which
//! serves them over HTTP. Every series carries the sink's name.

use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::config::MetricsAddress;

/// Starts the HTTP endpoint (`GET /metrics`, any path works) on `address`,
/// resolving a host name first. Must run inside the tokio runtime.
pub fn serve_metrics(address: MetricsAddress) -> anyhow::Result<()> {
    let address = address.resolve()?;
    PrometheusBuilder::new()
        .with_http_listener(address)
        .install()
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {address}: {e}"))?;
    describe_counter!(
        "pgsink_messages_total",
        "Kafka messages consumed and converted"
    );
    describe_counter!("pgsink_rows_total", "Rows committed to the target table");
    describe_counter!(
        "pgsink_dead_letters_total",
        "Messages committed to pgsink.dead_letters"
    );
    describe_counter!("pgsink_flushes_total", "Flush transactions committed");
    describe_counter!(
        "pgsink_copy_bytes_total",
        Unit::Bytes,
        "COPY text bytes committed"
    );
    describe_histogram!(
        "pgsink_flush_duration_seconds",
        Unit::Seconds,
        "Time to commit one flush"
    );
    describe_histogram!(
        "pgsink_converter_batch_seconds",
        Unit::Seconds,
        "Time to convert one batch"
    );
    describe_counter!(
        "pgsink_plugin_reloads_total",
        "Converter reloads, by result (swapped, rejected)"
    );
    describe_gauge!(
        "pgsink_committed_offset",
        "Next offset committed, per topic and partition"
    );
    describe_gauge!(
        "pgsink_consumer_lag",
        "Messages behind the partition's high watermark (librdkafka)"
    );
    tracing::info!(%address, "serving Prometheus metrics");
    Ok(())
}

/// A batch was converted.
pub fn converted(sink: &str, messages: u64, spent: Duration) {
    counter!("pgsink_messages_total", "sink" => sink.to_string()).increment(messages);
    histogram!("pgsink_converter_batch_seconds", "sink" => sink.to_string())
        .record(spent.as_secs_f64());
}

/// A flush committed.
pub fn flushed(sink: &str, rows: u64, dead_letters: u64, bytes: usize, spent: Duration) {
    let sink = sink.to_string();
    counter!("pgsink_rows_total", "sink" => sink.clone()).increment(rows);
    counter!("pgsink_dead_letters_total", "sink" => sink.clone()).increment(dead_letters);
    counter!("pgsink_flushes_total", "sink" => sink.clone()).increment(1);
    counter!("pgsink_copy_bytes_total", "sink" => sink.clone()).increment(bytes as u64);
    histogram!("pgsink_flush_duration_seconds", "sink" => sink).record(spent.as_secs_f64());
}

/// A partition's committed position moved.
pub fn committed(sink: &str, topic: &str, partition: i32, next: i64) {
    gauge!("pgsink_committed_offset", "sink" => sink.to_string(), "topic" => topic.to_string(),
        "partition" => partition.to_string())
    .set(next as f64);
}

/// librdkafka's view of a partition's lag.
pub fn lag(sink: &str, topic: &str, partition: i32, lag: i64) {
    gauge!("pgsink_consumer_lag", "sink" => sink.to_string(), "topic" => topic.to_string(),
        "partition" => partition.to_string())
    .set(lag as f64);
}

/// A reload finished.
pub fn reloaded(sink: &str, result: &'static str) {
    counter!("pgsink_plugin_reloads_total", "sink" => sink.to_string(), "result" => result)
        .increment(1);
}
