//! Helpers to unit-test a converter natively with `cargo test`.

use crate::{convert_batch, BatchOutput, Converter, Message, Outcome};

/// Converts `messages` and returns the COPY text and the outcome of each.
pub fn convert_messages<C: Converter>(
    converter: &mut C,
    columns: usize,
    messages: &[Message<'_>],
) -> BatchOutput {
    let mut out = BatchOutput::default();
    convert_batch(
        converter,
        columns,
        messages.iter().cloned().map(Ok),
        &mut out,
    );
    out
}

/// Converts one message with this key and value; returns its COPY text rows
/// (as a string) or its failure reason.
pub fn convert_value<C: Converter>(
    converter: &mut C,
    columns: usize,
    key: Option<&[u8]>,
    value: &[u8],
) -> Result<String, String> {
    let message = Message {
        key,
        ..Message::from_value(value)
    };
    let out = convert_messages(converter, columns, &[message]);
    match out.outcomes.into_iter().next() {
        Some(Outcome::Rows(_)) => Ok(String::from_utf8(out.copy_text).expect("COPY text is UTF-8")),
        Some(Outcome::Failed(reason)) => Err(reason),
        None => unreachable!("one outcome per message"),
    }
}
