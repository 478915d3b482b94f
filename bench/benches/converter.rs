//! The bundled parse-path converter alone, messages/s: through the WebAssembly
//! component boundary (as pgsink runs it) against the same Rust code compiled
//! natively. `cargo bench -p pgsink-bench` (a few seconds per case).
//!
//! Cases, per batch size (1k and 10k of the seed example message, ~117 B):
//! - `native`: `path_parser::PathParser` through `pgsink_guest::convert_batch`,
//!   the very loop the component runs, compiled for the host;
//! - `wasm_call`: one component call (`ConverterInstance::convert`): copying the
//!   batch into the component's memory, the loop in WebAssembly, copying the rows out;
//! - `wasm_checked`: `pgsink::Converter::convert`, what pgsink's pipeline calls:
//!   `wasm_call` plus the host's check of the untrusted COPY text;
//! - `build_and_convert`: laying the messages out in a `BatchBuilder` (what the
//!   consume loop does per message) plus `wasm_checked`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use path_parser::PathParser;
use pgsink::{BatchBuilder, Column, Converter, ConverterLimits, MessageRef, Runtime};
use pgsink_guest::{convert_batch, BatchOutput, Message};

#[allow(dead_code)]
#[path = "../src/data.rs"]
mod data;

fn columns() -> Vec<Column> {
    [
        ("id", "bigint"),
        ("latitude", "double precision"),
        ("longitude", "double precision"),
        ("acceleration", "double precision"),
    ]
    .into_iter()
    .map(|(name, ty)| Column {
        name: name.to_string(),
        type_name: Some(ty.to_string()),
    })
    .collect()
}

fn converters(c: &mut Criterion) {
    // pgsink's defaults: a 10 s time limit per call (epoch interruption on), 512 MiB memory;
    // PGSINK_BENCH_TIMEOUT_MS=0 measures without a time limit (no epoch interruption).
    let mut limits = ConverterLimits::default();
    if let Ok(ms) = std::env::var("PGSINK_BENCH_TIMEOUT_MS") {
        let ms: u64 = ms.parse().expect("PGSINK_BENCH_TIMEOUT_MS: milliseconds");
        limits.timeout = (ms > 0).then(|| Duration::from_millis(ms));
    }
    let runtime = Runtime::new(limits.timeout.is_some()).expect("wasmtime engine");
    // PGSINK_BENCH_COMPONENT=FILE measures another build of the path-parser instead.
    let component = match std::env::var_os("PGSINK_BENCH_COMPONENT") {
        Some(path) => {
            let bytes = std::fs::read(&path).expect("read PGSINK_BENCH_COMPONENT");
            runtime
                .load(&bytes, "PGSINK_BENCH_COMPONENT")
                .expect("load")
        }
        None => runtime.bundled().expect("bundled converter"),
    };
    let settings = vec![("db.json.parse".to_string(), data::PARSE_PATHS.to_string())];
    let mut converter =
        Converter::new(component.clone(), settings.clone(), columns(), limits).expect("configure");
    let mut instance = component
        .instantiate(&settings, &columns(), limits)
        .expect("instantiate");
    let mut native = PathParser::new(data::PARSE_PATHS, 4).expect("paths");

    let mut group = c.benchmark_group("converter");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    for size in [1_000u64, 10_000] {
        let values: Vec<Vec<u8>> = (1..=size)
            .map(|id| {
                let mut s = String::new();
                data::message(id, &mut s);
                s.into_bytes()
            })
            .collect();
        let keys: Vec<String> = (1..=size).map(|id| id.to_string()).collect();
        let refs: Vec<MessageRef<'_>> = values
            .iter()
            .zip(&keys)
            .enumerate()
            .map(|(i, (v, k))| MessageRef {
                topic: "bench",
                partition: 0,
                offset: i as i64,
                timestamp: Some(1_700_000_000_000),
                key: Some(k.as_bytes()),
                value: Some(v),
            })
            .collect();
        let messages: Vec<Message<'_>> = values
            .iter()
            .zip(&keys)
            .enumerate()
            .map(|(i, (v, k))| Message {
                topic: "bench",
                offset: i as i64,
                timestamp: Some(1_700_000_000_000),
                key: Some(k.as_bytes()),
                ..Message::from_value(v)
            })
            .collect();
        let mut builder = BatchBuilder::new();
        for m in &refs {
            builder.push(*m, []);
        }

        // Same rows both ways, and what pgsink would COPY.
        let mut out = BatchOutput::default();
        convert_batch(&mut native, 4, messages.iter().cloned().map(Ok), &mut out);
        let checked = converter.convert(&builder).expect("convert");
        assert_eq!(checked.rows, size);
        assert!(checked.failed.is_empty());
        assert_eq!(
            out.copy_text, checked.copy_text,
            "native and WASM rows differ"
        );
        let mut expected = Vec::new();
        for id in 1..=size {
            data::copy_row(id, &mut expected);
        }
        assert_eq!(out.copy_text, expected);

        group.throughput(Throughput::Elements(size));
        group.bench_function(BenchmarkId::new("native", size), |b| {
            let mut out = BatchOutput::default();
            b.iter(|| {
                out.copy_text.clear();
                out.outcomes.clear();
                convert_batch(&mut native, 4, messages.iter().cloned().map(Ok), &mut out);
                black_box(out.copy_text.len())
            })
        });
        group.bench_function(BenchmarkId::new("wasm_call", size), |b| {
            b.iter(|| black_box(instance.convert(builder.batch()).expect("convert")))
        });
        group.bench_function(BenchmarkId::new("wasm_checked", size), |b| {
            b.iter(|| black_box(converter.convert(&builder).expect("convert")))
        });
        group.bench_function(BenchmarkId::new("build_and_convert", size), |b| {
            let mut scratch = BatchBuilder::new();
            b.iter(|| {
                scratch.clear();
                for m in &refs {
                    scratch.push(*m, []);
                }
                black_box(converter.convert(&scratch).expect("convert"))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, converters);
criterion_main!(benches);
