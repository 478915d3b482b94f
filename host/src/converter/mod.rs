//! Converters: untrusted WebAssembly components that turn Kafka messages into COPY rows.
//!
//! One room, one word. A converter is loaded once from its configuration
//! ([`ConverterSpec::load`]: read, compile or take from the [`cache`], check against the WIT
//! world), instantiated in a [`sandbox`] as often as a trap requires, called once per batch
//! ([`instance`]), and its output is never trusted: [`output`] checks every row before it can
//! reach a COPY stream, and [`conversion`] attributes rows to messages and isolates the
//! messages that made it fault; [`attribution`] gives every row its message and table. [`error`] sorts what can go wrong by how the sink reacts.
//!
//! The guest side of the contract is `wit/converter.wit` (documented field by field) and the
//! SDK in `guest-sdk/`; [`bindings`] is the host's one `bindgen!`.

mod attribution;
mod bindings;
mod cache;
mod conversion;
mod error;
mod instance;
mod output;
mod runtime;
mod sandbox;
mod spec;
#[cfg(test)]
pub(crate) mod tests;

pub use attribution::Conversion;
pub use bindings::{Batch, Column, Header, Message, Operation, RowRun, Span, Table};
pub use conversion::Converter;
pub use error::ConverterError;
pub use runtime::Runtime;
pub use sandbox::ConverterLimits;
pub use spec::ConverterSpec;
