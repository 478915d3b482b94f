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
//!   consume loop does per message) plus `wasm_checked`;
//! - `debezium_native`, `debezium_wasm_checked`: the same converter with
//!   `db.json.envelope = "debezium"` over the Debezium documentation's create event (~430 B),
//!   upserts of its `after` image.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::Throughput;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use path_parser::PathParser;
use pgsink::{BatchBuilder, Converter, ConverterLimits, MessageRef, Runtime, Table};
use pgsink_guest::{convert_batch, BatchOutput, Converter as _, Message, Settings};

#[allow(dead_code)]
#[path = "../src/data.rs"]
mod data;

/// A workload: the converter's settings, its table, and the message of each id.
struct Case {
    name: &'static str,
    settings: Vec<(String, String)>,
    columns: &'static [(&'static str, &'static str)],
    message: fn(u64, &mut String),
    /// Run every measurement, or only `native` and `wasm_checked`.
    full: bool,
}

const SEED_COLUMNS: &[(&str, &str)] = &[
    ("id", "bigint"),
    ("latitude", "double precision"),
    ("longitude", "double precision"),
    ("acceleration", "double precision"),
];

const CUSTOMER_COLUMNS: &[(&str, &str)] = &[
    ("id", "int"),
    ("first_name", "text"),
    ("last_name", "text"),
    ("email", "text"),
];

/// The Debezium documentation's create event (schemas.enable=false), for customer `id`.
fn debezium_create(id: u64, out: &mut String) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        r#"{{"before":null,"after":{{"id":{id},"first_name":"Anne","last_name":"Kretchmar","email":"annek@noanswer.org"}},"source":{{"version":"3.7.0.Alpha2","connector":"postgresql","name":"PostgreSQL_server","ts_ms":1559033904863,"snapshot":true,"db":"postgres","sequence":"[\"24023119\",\"24023128\"]","schema":"public","table":"customers","txId":555,"lsn":24023128,"xmin":null}},"op":"c","ts_ms":1559033904863}}"#
    );
}

impl Case {
    fn host_table(&self) -> Table {
        let names: Vec<String> = self.columns.iter().map(|c| c.0.to_string()).collect();
        let mut table = Table::untyped("public", self.name, &names);
        for (column, (_, ty)) in table.columns.iter_mut().zip(self.columns) {
            column.type_name = Some(ty.to_string());
        }
        table
    }

    fn guest_table(&self) -> pgsink_guest::Table {
        let names: Vec<&str> = self.columns.iter().map(|c| c.0).collect();
        pgsink_guest::Table::named(&names)
    }
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
    // PGSINK_BENCH_COMPONENT=FILE measures another build of the path-parser instead (seed only).
    let component = match std::env::var_os("PGSINK_BENCH_COMPONENT") {
        Some(path) => {
            let bytes = std::fs::read(&path).expect("read PGSINK_BENCH_COMPONENT");
            runtime
                .load(&bytes, "PGSINK_BENCH_COMPONENT")
                .expect("load")
        }
        None => runtime.bundled().expect("bundled converter"),
    };
    let setting = |k: &str, v: &str| (k.to_string(), v.to_string());
    let mut cases = vec![
        Case {
            name: "seed",
            settings: vec![setting("db.json.parse", data::PARSE_PATHS)],
            columns: SEED_COLUMNS,
            message: data::message,
            full: true,
        },
        Case {
            name: "debezium",
            settings: vec![
                setting("db.json.parse", "/@id,/@first_name,/@last_name,/@email"),
                setting("db.json.envelope", "debezium"),
            ],
            columns: CUSTOMER_COLUMNS,
            message: debezium_create,
            full: false,
        },
    ];
    if std::env::var_os("PGSINK_BENCH_COMPONENT").is_some() {
        cases.truncate(1); // another build may predate the envelopes: the seed case only
    }
    let mut group = c.benchmark_group("converter");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    for case in &cases {
        let tables = vec![case.host_table()];
        let mut converter = Converter::new(
            component.clone(),
            case.settings.clone(),
            tables.clone(),
            limits,
        )
        .expect("configure");
        let mut instance = component
            .instantiate(&case.settings, &tables, limits)
            .expect("instantiate");
        let guest_tables = [case.guest_table()];
        let mut native =
            PathParser::configure(&Settings::new(case.settings.clone()), &guest_tables)
                .expect("paths");
        for size in [1_000u64, 10_000] {
            let values: Vec<Vec<u8>> = (1..=size)
                .map(|id| {
                    let mut s = String::new();
                    (case.message)(id, &mut s);
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
            convert_batch(
                &mut native,
                &guest_tables,
                messages.iter().cloned().map(Ok),
                &mut out,
            );
            let checked = converter.convert(&builder).expect("convert");
            assert!(
                checked.failed.is_empty(),
                "{}: {:?}",
                case.name,
                checked.failed.first()
            );
            assert_eq!(checked.rows, size, "{}", case.name);
            assert_eq!(
                out.copy_text, checked.copy_text,
                "native and WASM rows differ"
            );
            if case.name == "seed" {
                let mut expected = Vec::new();
                for id in 1..=size {
                    data::copy_row(id, &mut expected);
                }
                assert_eq!(out.copy_text, expected);
            }
            let mut reused = BatchOutput::default();
            let native_batch = || {
                reused.copy_text.clear();
                reused.outcomes.clear();
                let messages = messages.iter().cloned().map(Ok);
                convert_batch(&mut native, &guest_tables, messages, &mut reused);
                reused.copy_text.len()
            };
            let mut checked = || black_box(converter.convert(&builder).expect("convert")).rows;
            measure(&mut group, case, size, native_batch, &mut checked);
            if case.full {
                group.bench_function(BenchmarkId::new("wasm_call", size), |b| {
                    b.iter(|| black_box(instance.convert(builder.batch()).expect("convert")))
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
        }
    }
    group.finish();
}

/// `native` and `wasm_checked` of one case and batch size, named `<case>_native` and
/// `<case>_wasm_checked` (the seed case keeps the plain names, for comparisons with older runs).
fn measure(
    group: &mut BenchmarkGroup<'_, WallTime>,
    case: &Case,
    size: u64,
    mut native: impl FnMut() -> usize,
    checked: &mut dyn FnMut() -> u64,
) {
    let name = |what: &str| match case.name {
        "seed" => what.to_string(),
        other => format!("{other}_{what}"),
    };
    group.throughput(Throughput::Elements(size));
    group.bench_function(BenchmarkId::new(name("native"), size), |b| {
        b.iter(|| black_box(native()))
    });
    group.bench_function(BenchmarkId::new(name("wasm_checked"), size), |b| {
        b.iter(|| black_box(checked()))
    });
}

criterion_group!(benches, converters);
criterion_main!(benches);
