//! Write [pgsink] converters in Rust.
//!
//! A converter turns Kafka messages into PostgreSQL rows. It is compiled to a
//! WebAssembly component (`cargo build --release --target wasm32-wasip2`)
//! that implements the `pgsink:converter` WIT world in the repository's
//! `wit/` folder. This crate hides that interface: implement [`Converter`],
//! write fields through the [`Row`] a [`RowWriter`] hands out, and call
//! [`export_converter!`]. The writer does all COPY-text escaping, so a
//! converter cannot emit a broken COPY stream.
//!
//! ```
//! use pgsink_guest::{Column, Converter, Message, RowWriter, Settings};
//!
//! /// Loads the message key and value as text, skipping tombstones.
//! struct KeyValue;
//!
//! impl Converter for KeyValue {
//!     fn configure(_settings: &Settings, columns: &[Column]) -> Result<Self, String> {
//!         match columns.len() {
//!             2 => Ok(KeyValue),
//!             n => Err(format!("key-value needs 2 columns, the table lists {n}")),
//!         }
//!     }
//!
//!     fn convert(&mut self, message: &Message<'_>, rows: &mut RowWriter<'_>) -> Result<(), String> {
//!         let Some(value) = message.value_str()? else { return Ok(()) };
//!         let mut row = rows.row();
//!         row.push_opt(message.key_str()?).push_str(value);
//!         Ok(())
//!     }
//! }
//!
//! // pgsink_guest::export_converter!(KeyValue);   // in the plugin crate
//!
//! let mut converter = KeyValue::configure(&Settings::default(), &Column::names(&["k", "v"])).unwrap();
//! let rows = pgsink_guest::testing::convert_value(&mut converter, 2, Some(b"k1"), b"a\tb").unwrap();
//! assert_eq!(rows, "k1\ta\\tb\n");
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
pub use row_writer::{escape_copy_text, Field, Row, RowWriter};
pub use run::{convert_batch, BatchOutput, Export, Outcome};
pub use settings::{Column, Settings};

/// A converter: configured once, then called for every message.
///
/// Implement it and pass the type to [`export_converter!`]. The logic is plain
/// Rust, so it can be unit-tested natively with [`testing`].
pub trait Converter: Sized + 'static {
    /// Builds the converter from its settings and the target columns, in the
    /// order each row gives its fields. An error rejects the configuration:
    /// pgsink shows it to the user and does not start.
    fn configure(settings: &Settings, columns: &[Column]) -> Result<Self, String>;

    /// Converts one message into zero or more rows written to `rows`.
    ///
    /// Returning an error fails this message only: whatever it wrote is
    /// discarded and the message goes to the dead-letter table with the
    /// error as its reason.
    fn convert(&mut self, message: &Message<'_>, rows: &mut RowWriter<'_>) -> Result<(), String>;
}

/// The plugin's name and version, implemented by [`export_converter!`].
#[doc(hidden)]
pub trait PluginInfo {
    /// The plugin crate's name.
    const NAME: &'static str;
    /// The plugin crate's version.
    const VERSION: &'static str;
}

/// Exports a [`Converter`] type as the component's `pgsink:converter/convert` interface.
///
/// The plugin name and version come from the calling crate's `Cargo.toml`.
#[macro_export]
macro_rules! export_converter {
    ($converter:ty) => {
        #[doc(hidden)]
        type __PgsinkExport = $crate::Export<$converter>;

        impl $crate::PluginInfo for $converter {
            const NAME: &'static str = env!("CARGO_PKG_NAME");
            const VERSION: &'static str = env!("CARGO_PKG_VERSION");
        }

        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export!(__PgsinkExport with_types_in $crate::bindings);
    };
}
