//! Write [pgsink] converters in Rust.
//!
//! A converter turns Kafka messages into PostgreSQL rows. It is compiled to a
//! WebAssembly component (`cargo build --release --target wasm32-wasip2`)
//! that implements the `pgsink:converter@0.2.0` WIT world in the repository's
//! `wit/v0.2/` folder. This crate hides that interface: write a function (or implement
//! [`Converter`] when the converter has settings or state), write fields through the
//! [`Row`] a [`RowWriter`] hands out, and call [`export_converter!`]. The writer does all
//! COPY-text escaping, so a converter cannot emit a broken COPY stream.
//!
//! The smallest useful converter, the message key and value as text:
//!
//! ```
//! use pgsink_guest::{Message, RowWriter};
//!
//! fn convert(message: &Message, rows: &mut RowWriter) -> Result<(), String> {
//!     rows.row().push_opt(message.key_str()?).push_opt(message.value_str()?);
//!     Ok(())
//! }
//! pgsink_guest::export_converter!(fn convert, columns = 2);
//! # let mut sink = pgsink_guest::testing::TestSink::from_fn(convert, &["k", "v"]);
//! # assert_eq!(sink.convert_value(b"a\tb").unwrap(), "\\N\ta\\tb\n");
//! ```
//!
//! A row can also replace or delete the row with its key (`rows.upsert(table)`,
//! `rows.delete(table)`) and go to another of the sink's tables. With settings, a
//! [`Converter`] is configured once and then called for every message:
//!
//! ```
//! use pgsink_guest::{Converter, Message, RowWriter, Settings, Table};
//!
//! /// Upserts `{key, value}` on the key; a tombstone deletes the key's row.
//! struct Latest;
//!
//! impl Converter for Latest {
//!     fn configure(_settings: &Settings, tables: &[Table]) -> Result<Self, String> {
//!         tables[0].require_columns(2)?;
//!         Ok(Latest)
//!     }
//!
//!     fn convert(&mut self, message: &Message<'_>, rows: &mut RowWriter<'_>) -> Result<(), String> {
//!         let key = message.key_str()?.ok_or("the message has no key")?;
//!         match message.value_str()? {
//!             Some(value) => rows.upsert(0).push_str(key).push_str(value),
//!             None => rows.delete(0).push_str(key).push_null(),
//!         };
//!         Ok(())
//!     }
//! }
//!
//! // pgsink_guest::export_converter!(Latest);   // in the converter crate
//!
//! use pgsink_guest::{testing::TestSink, Message as M, Operation};
//! let mut sink = TestSink::<Latest>::configure(&[], &["k", "v"]).unwrap();
//! let rows = sink.rows(&M { key: Some(b"k1"), value: None, ..M::from_value(b"") }).unwrap();
//! assert_eq!(rows[0].operation, Operation::Delete);
//! assert_eq!(rows[0].fields, [Some("k1".to_string()), None]);
//! ```
//!
//! [pgsink]: https://example.invalid/pgsink

mod message;
mod row_writer;
mod run;
mod settings;
pub mod testing;

#[doc(hidden)]
pub mod bindings;

pub use message::{Header, Message};
pub use row_writer::{escape_copy_text, Field, Operation, Row, RowRun, RowWriter};
pub use run::{convert_batch, BatchOutput, Export, Outcome};
pub use settings::{Column, Settings, Table};

/// A converter: configured once, then called for every message.
///
/// Implement it and pass the type to [`export_converter!`]. The logic is plain
/// Rust, so it can be unit-tested natively with [`testing`].
pub trait Converter: Sized + 'static {
    /// Builds the converter from its settings and the sink's tables (at least one; rows
    /// name them by index), each with its columns in the order its rows give their fields.
    /// An error rejects the configuration: pgsink shows it to the user and does not start.
    fn configure(settings: &Settings, tables: &[Table]) -> Result<Self, String>;

    /// Converts one message into zero or more rows written to `rows`.
    ///
    /// Returning an error fails this message only: whatever it wrote is
    /// discarded and the message goes to the dead-letter table with the
    /// error as its reason.
    fn convert(&mut self, message: &Message<'_>, rows: &mut RowWriter<'_>) -> Result<(), String>;
}

/// The converter's name and version, implemented by [`export_converter!`].
#[doc(hidden)]
pub trait ConverterInfo {
    /// The converter crate's name.
    const NAME: &'static str;
    /// The converter crate's version.
    const VERSION: &'static str;
}

/// Exports a converter as the component's `pgsink:converter/convert` interface: a
/// [`Converter`] type, or a function `fn(&Message, &mut RowWriter) -> Result<(), String>`
/// (`export_converter!(fn convert)`, optionally with `columns = N`: the first table must
/// have N columns, checked when the sink starts).
///
/// The converter's name and version come from the calling crate's `Cargo.toml`.
#[macro_export]
macro_rules! export_converter {
    (fn $convert:path $(, columns = $columns:expr)? $(,)?) => {
        #[doc(hidden)]
        pub struct __PgsinkFunction;

        impl $crate::Converter for __PgsinkFunction {
            fn configure(
                _settings: &$crate::Settings,
                _tables: &[$crate::Table],
            ) -> Result<Self, String> {
                $(if let Some(table) = _tables.first() {
                    table.require_columns($columns)?;
                })?
                Ok(__PgsinkFunction)
            }

            fn convert(
                &mut self,
                message: &$crate::Message<'_>,
                rows: &mut $crate::RowWriter<'_>,
            ) -> Result<(), String> {
                $convert(message, rows)
            }
        }

        $crate::export_converter!(__PgsinkFunction);
    };
    ($converter:ty) => {
        #[doc(hidden)]
        type __PgsinkExport = $crate::Export<$converter>;

        impl $crate::ConverterInfo for $converter {
            const NAME: &'static str = env!("CARGO_PKG_NAME");
            const VERSION: &'static str = env!("CARGO_PKG_VERSION");
        }

        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export!(__PgsinkExport with_types_in $crate::bindings);
    };
}
