//! The host side of the `pgsink:converter` WIT worlds, one `bindgen!` per version (the
//! versions live side by side in `wit/`): 0.2 is the contract the host speaks; a component
//! built for 0.1 is driven through [`v0_1`], which maps its calls onto the 0.2 types.
//!
//! The generated world types are exported under names that cannot be confused with the
//! host's own `Converter` (the trap-surviving wrapper in `conversion.rs`).
mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2",
        world: "converter",
        additional_derives: [PartialEq, Eq],
    });
}

/// `pgsink:converter@0.1.0`: one table, rows without operations.
pub mod v0_1 {
    mod generated {
        wasmtime::component::bindgen!({
            path: "../wit/v0.1",
            world: "converter",
        });
    }

    pub use generated::pgsink::converter::types::{Column, Converted, Outcome};
    pub use generated::{Converter as ConverterWorld, ConverterPre};

    /// The exported interface and function a 0.1 component converts batches with.
    pub const INTERFACE: &str = "pgsink:converter/convert@0.1.0";
    pub const CONVERT_BATCH: &str = "convert-batch";
}

pub use v0_2::pgsink::converter::types::{
    Batch, Column, Converted, ConverterInfo, Header, Message, Operation, Outcome, RowRun, Span,
    Table,
};
pub use v0_2::{Converter as ConverterWorld, ConverterPre};

impl Table {
    /// A table known by its columns' names only (no database at hand: `pgsink convert`, or
    /// `check` before it reaches the table): no types, no key.
    pub fn untyped(schema: &str, name: &str, columns: &[String]) -> Table {
        Table {
            schema: schema.to_string(),
            name: name.to_string(),
            columns: columns
                .iter()
                .map(|name| Column {
                    name: name.clone(),
                    type_name: None,
                })
                .collect(),
            key: Vec::new(),
        }
    }
}

impl From<v0_1::Converted> for Converted {
    /// 0.1 rows are all inserts into the one table: no runs.
    fn from(converted: v0_1::Converted) -> Self {
        Converted {
            copy_text: converted.copy_text,
            runs: Vec::new(),
            outcomes: converted
                .outcomes
                .into_iter()
                .map(|outcome| match outcome {
                    v0_1::Outcome::Rows(n) => Outcome::Rows(n),
                    v0_1::Outcome::Failed(reason) => Outcome::Failed(reason),
                })
                .collect(),
        }
    }
}
