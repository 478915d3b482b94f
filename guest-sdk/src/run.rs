//! Runs a [`Converter`] over a batch: the one loop every Rust converter shares.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;

use crate::bindings::exports::pgsink::converter::convert::Guest;
use crate::bindings::pgsink::converter::types as wit;
use crate::{
    Column, Converter, ConverterInfo, Header, Message, Operation, RowRun, RowWriter, Settings,
    Table,
};

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The message became this many rows.
    Rows(u32),
    /// The message failed, for this reason.
    Failed(String),
}

/// The rows of a batch and one outcome per message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutput {
    /// COPY text rows, in message order.
    pub copy_text: Vec<u8>,
    /// The table and operation of the rows, as runs; empty when every row is an insert into
    /// the first table.
    pub runs: Vec<RowRun>,
    /// One outcome per message, in order.
    pub outcomes: Vec<Outcome>,
}

/// Converts `messages` with `converter` into rows of `tables`.
///
/// A message whose conversion fails, or whose rows are malformed, leaves no
/// bytes behind and gets [`Outcome::Failed`]; the others are unaffected.
pub fn convert_batch<'m, C: Converter>(
    converter: &mut C,
    tables: &[Table],
    messages: impl IntoIterator<Item = Result<Message<'m>, String>>,
    out: &mut BatchOutput,
) {
    let widths = tables.iter().map(|t| t.columns.len()).collect();
    let mut rows = RowWriter::for_tables(&mut out.copy_text, widths);
    for message in messages {
        let mark = rows.mark();
        let result = message.and_then(|m| converter.convert(&m, &mut rows));
        let outcome = match result.and_then(|()| rows.take_outcome()) {
            Ok(n) => Outcome::Rows(n),
            Err(reason) => {
                rows.take_outcome().ok();
                rows.rollback(mark);
                Outcome::Failed(reason)
            }
        };
        out.outcomes.push(outcome);
    }
    out.runs = rows.into_runs();
}

/// The component export of converter `C`; [`export_converter!`](crate::export_converter) names it.
#[doc(hidden)]
pub struct Export<C>(PhantomData<C>);

/// The configured converter (type-erased: one component holds one converter) and its tables.
struct Configured {
    converter: Box<dyn Any>,
    tables: Vec<Table>,
}

thread_local! {
    static CONFIGURED: RefCell<Option<Configured>> = const { RefCell::new(None) };
}

impl<C: Converter + ConverterInfo> Guest for Export<C> {
    fn info() -> wit::ConverterInfo {
        wit::ConverterInfo {
            name: C::NAME.into(),
            version: C::VERSION.into(),
        }
    }

    fn configure(settings: Vec<(String, String)>, tables: Vec<wit::Table>) -> Result<(), String> {
        let tables: Vec<Table> = tables
            .into_iter()
            .map(|t| Table {
                schema: t.schema,
                name: t.name,
                columns: t
                    .columns
                    .into_iter()
                    .map(|c| Column {
                        name: c.name,
                        type_name: c.type_name,
                    })
                    .collect(),
                key: t.key.into_iter().map(|k| k as usize).collect(),
            })
            .collect();
        let converter = C::configure(&Settings::new(settings), &tables)?;
        CONFIGURED.with(|slot| {
            *slot.borrow_mut() = Some(Configured {
                converter: Box::new(converter),
                tables,
            })
        });
        Ok(())
    }

    fn convert_batch(input: wit::Batch) -> wit::Converted {
        let mut out = BatchOutput {
            copy_text: Vec::with_capacity(input.data.len() + input.data.len() / 4),
            runs: Vec::new(),
            outcomes: Vec::with_capacity(input.messages.len()),
        };
        CONFIGURED.with(|slot| match slot.borrow_mut().as_mut() {
            Some(Configured { converter, tables }) => {
                let converter = converter
                    .downcast_mut::<C>()
                    .expect("one converter type per component");
                let headers: Vec<Header<'_>> = input
                    .headers
                    .iter()
                    .map(|h| Header {
                        key: span(&input.data, h.key).unwrap_or_default(),
                        value: h.value.and_then(|v| span(&input.data, v)),
                    })
                    .collect();
                let messages = input.messages.iter().map(|m| view(&input, &headers, m));
                convert_batch(converter, tables, messages, &mut out);
            }
            None => out.outcomes.extend(
                input
                    .messages
                    .iter()
                    .map(|_| Outcome::Failed("the converter was not configured".into())),
            ),
        });
        wit::Converted {
            copy_text: out.copy_text,
            runs: out
                .runs
                .into_iter()
                .map(|r| wit::RowRun {
                    count: r.count,
                    table: r.table,
                    operation: match r.operation {
                        Operation::Insert => wit::Operation::Insert,
                        Operation::Upsert => wit::Operation::Upsert,
                        Operation::Delete => wit::Operation::Delete,
                    },
                })
                .collect(),
            outcomes: out
                .outcomes
                .into_iter()
                .map(|o| match o {
                    Outcome::Rows(n) => wit::Outcome::Rows(n),
                    Outcome::Failed(reason) => wit::Outcome::Failed(reason),
                })
                .collect(),
        }
    }
}

fn span(data: &[u8], span: wit::Span) -> Option<&[u8]> {
    data.get(span.start as usize..span.start as usize + span.len as usize)
}

/// The borrowed view of message `m`, or an error if the host sent a span out of range.
fn view<'a>(
    batch: &'a wit::Batch,
    headers: &'a [Header<'a>],
    m: &wit::Message,
) -> Result<Message<'a>, String> {
    let bad = || format!("the host sent a malformed message at offset {}", m.offset);
    let part = |s: Option<wit::Span>| match s {
        Some(s) => span(&batch.data, s).map(Some).ok_or_else(bad),
        None => Ok(None),
    };
    let header_range = m.header_start as usize..(m.header_start + m.header_count) as usize;
    Ok(Message {
        topic: batch.topics.get(m.topic as usize).ok_or_else(bad)?,
        partition: m.partition,
        offset: m.offset,
        timestamp: m.timestamp,
        key: part(m.key)?,
        value: part(m.value)?,
        headers: headers.get(header_range).ok_or_else(bad)?,
    })
}
