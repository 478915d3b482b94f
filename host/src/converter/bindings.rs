//! The host side of the `pgsink:converter` WIT world: the one `bindgen!` of the host.
//!
//! The generated world type is exported as [`ConverterWorld`] and the WIT record
//! `plugin-info` as [`ConverterInfo`], so that neither can be confused with the host's
//! own `Converter` (the trap-surviving wrapper in `conversion.rs`).
mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "converter",
    });
}

pub use generated::pgsink::converter::types::{
    Batch, Column, Converted, Header, Message, Outcome, PluginInfo as ConverterInfo, Span,
};
pub use generated::{Converter as ConverterWorld, ConverterPre};

impl Column {
    /// Columns known by name only (no database at hand: `pgsink convert`, or `check` before
    /// it reaches the table).
    pub fn untyped(names: &[String]) -> Vec<Column> {
        names
            .iter()
            .map(|name| Column {
                name: name.clone(),
                type_name: None,
            })
            .collect()
    }
}
