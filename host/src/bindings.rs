//! The host side of the `pgsink:converter` WIT world: the one `bindgen!` of the host.
wasmtime::component::bindgen!({
    path: "../wit",
    world: "converter",
});

pub use self::pgsink::converter::types::{
    Batch, Column, Converted, Header, Message, Outcome, PluginInfo, Span,
};
