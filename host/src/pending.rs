//! What a writer holds between two flushes: the converted rows of every batch, split by the
//! table they go to (tagged for the staging table where the table is keyed), with the
//! messages they came from (for rows PostgreSQL rejects) and the dead letters.
//!
//! A converter writes one COPY stream for a batch, with runs saying which table each row goes
//! to; PostgreSQL takes one COPY per table. The split happens here, once per batch, and only
//! for a sink of several tables: a sink of one table keeps the converter's bytes as they are.

use std::sync::Arc;

use bytes::Bytes;
use memchr::memchr_iter;

use crate::batch::BatchBuilder;
use crate::converter::RowRun;
use crate::ledger::OffsetMove;
use crate::postgres::{stage_rows, DeadLetter, FlushData};

/// A batch after conversion, ready to buffer.
#[derive(Debug, Default)]
pub struct ConvertedBatch {
    /// COPY text rows.
    pub copy_text: Bytes,
    /// Rows in `copy_text`.
    pub rows: u64,
    /// For each row, the index in `source` of the message it came from.
    pub row_messages: Vec<u32>,
    /// The operation of the rows, as runs in row order; empty: every row an insert.
    pub runs: Vec<RowRun>,
    /// The messages, kept until the flush commits (for rows PostgreSQL rejects).
    pub source: BatchBuilder,
    /// Messages of the batch.
    pub messages: u64,
    /// Messages that failed conversion.
    pub dead_letters: Vec<DeadLetter>,
    /// Per partition, the offset after its last message in the batch.
    pub next_offsets: Vec<(String, i32, i64)>,
    /// The converter that converted the batch.
    pub converter: Arc<ConverterId>,
}

/// Which converter produced a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConverterId {
    /// `name version`, as the converter reports it.
    pub label: String,
    /// SHA-256 of the component.
    pub hash: String,
    /// Swap count (0: the converter the sink started with).
    pub version: u64,
}

/// A converted batch waiting for its flush.
struct PendingBatch {
    /// Per table, its rows' COPY text.
    copy_text: Vec<Bytes>,
    /// Per table, the index in `source` of each row's message.
    row_messages: Vec<Vec<u32>>,
    source: BatchBuilder,
}

/// The rows of one message, per table, loaded or rejected together.
pub struct MessageGroup {
    /// Index of its batch in the pending buffer.
    pub batch: usize,
    /// Index of the message in its batch.
    pub message: u32,
    /// (table, its rows of this message), in table order.
    pub rows: Vec<(usize, Bytes)>,
}

/// What is buffered since the last flush.
pub struct Pending {
    /// Per table, whether it is keyed (its rows are tagged for its staging table).
    keyed: Vec<bool>,
    batches: Vec<PendingBatch>,
    pub bytes: usize,
    pub rows: u64,
    /// Per table, rows that delete (keyed write modes).
    deletes: Vec<u64>,
    pub messages: u64,
    pub dead_letters: Vec<DeadLetter>,
    /// The converter of every pending batch (one per flush).
    converter: Arc<ConverterId>,
    /// The place of the next staged row: rows are applied in this order.
    next_seq: u64,
}

impl Pending {
    /// An empty buffer for tables that are `keyed` or not, in the sink's order.
    pub fn new(keyed: Vec<bool>) -> Pending {
        Pending {
            deletes: vec![0; keyed.len()],
            keyed,
            batches: Vec::new(),
            bytes: 0,
            rows: 0,
            messages: 0,
            dead_letters: Vec::new(),
            converter: Arc::default(),
            next_seq: 0,
        }
    }

    /// Empties the buffer (the staging order goes on: it only has to grow within a flush).
    pub fn clear(&mut self) {
        let next_seq = self.next_seq;
        *self = Pending::new(std::mem::take(&mut self.keyed));
        self.next_seq = next_seq;
    }

    /// Buffers a batch; returns the first table's rows as they will be loaded (to stream).
    pub fn add(&mut self, batch: ConvertedBatch) -> Bytes {
        self.rows += batch.rows;
        self.messages += batch.messages;
        self.dead_letters.extend(batch.dead_letters);
        self.converter = batch.converter;
        let single = self.keyed.len() == 1;
        let (texts, row_messages) = if single {
            (vec![batch.copy_text], vec![batch.row_messages])
        } else {
            split_by_table(
                &batch.copy_text,
                &batch.row_messages,
                &batch.runs,
                self.keyed.len(),
            )
        };
        let mut copy_text = Vec::with_capacity(texts.len());
        for (table, text) in texts.into_iter().enumerate() {
            let text = if self.keyed[table] && !text.is_empty() {
                let runs = if single {
                    batch.runs.clone()
                } else {
                    runs_of(&batch.runs, table)
                };
                let (staged, deletes) = stage_rows(&text, &runs, &mut self.next_seq);
                self.deletes[table] += deletes;
                Bytes::from(staged)
            } else {
                text
            };
            self.bytes += text.len();
            copy_text.push(text);
        }
        let first = copy_text[0].clone();
        self.batches.push(PendingBatch {
            copy_text,
            row_messages,
            source: batch.source,
        });
        first
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty() && self.dead_letters.is_empty()
    }

    /// What a flush of these rows writes: `chunks` of them (per table), the dead letters,
    /// `offsets`; `deletes` is filled from the buffer.
    pub fn data<'a>(
        &'a self,
        chunks: &'a [Vec<Bytes>],
        offsets: &'a [OffsetMove],
        deletes: &'a [bool],
    ) -> FlushData<'a> {
        FlushData {
            copy_chunks: chunks,
            dead_letters: &self.dead_letters,
            offsets,
            plugin: &self.converter.label,
            plugin_hash: &self.converter.hash,
            deletes,
        }
    }

    /// Per table, whether any of its pending rows deletes.
    pub fn deletes(&self) -> Vec<bool> {
        self.deletes.iter().map(|&d| d > 0).collect()
    }

    /// Per table, the COPY text of every batch that has rows for it.
    pub fn chunks(&self) -> Vec<Vec<Bytes>> {
        (0..self.keyed.len())
            .map(|t| {
                self.batches
                    .iter()
                    .map(|b| &b.copy_text[t])
                    .filter(|text| !text.is_empty())
                    .cloned()
                    .collect()
            })
            .collect()
    }

    /// The message of a group.
    pub fn source(&self, group: &MessageGroup) -> &BatchBuilder {
        &self.batches[group.batch].source
    }

    /// The rows grouped by message, in message order: a message's rows, in every table, are
    /// loaded or rejected together.
    pub fn message_groups(&self) -> Vec<MessageGroup> {
        let mut groups = Vec::new();
        for (b, batch) in self.batches.iter().enumerate() {
            // Per table, its (message, rows) runs in message order; then merged by message.
            let mut per_table: Vec<std::iter::Peekable<std::vec::IntoIter<(u32, Bytes)>>> = batch
                .copy_text
                .iter()
                .zip(&batch.row_messages)
                .map(|(text, messages)| by_message(text, messages).into_iter().peekable())
                .collect();
            loop {
                let next = per_table
                    .iter_mut()
                    .filter_map(|t| t.peek().map(|(m, _)| *m))
                    .min();
                let Some(message) = next else { break };
                let mut rows = Vec::new();
                for (table, runs) in per_table.iter_mut().enumerate() {
                    if let Some((_, text)) = runs.next_if(|(m, _)| *m == message) {
                        rows.push((table, text));
                    }
                }
                groups.push(MessageGroup {
                    batch: b,
                    message,
                    rows,
                });
            }
        }
        groups
    }
}

/// The rows of `text` cut where the message (`messages`, one per row) changes.
fn by_message(text: &Bytes, messages: &[u32]) -> Vec<(u32, Bytes)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut rows = memchr_iter(b'\n', text).zip(messages).peekable();
    while let Some((end, &message)) = rows.next() {
        if rows.peek().is_none_or(|&(_, &next)| next != message) {
            out.push((message, text.slice(start..end + 1)));
            start = end + 1;
        }
    }
    out
}

/// The runs of table `table` out of a batch's runs (none: every row an insert into table 0).
fn runs_of(runs: &[RowRun], table: usize) -> Vec<RowRun> {
    runs.iter()
        .filter(|r| r.table as usize == table)
        .copied()
        .collect()
}

/// Splits a batch's rows into `tables` COPY texts, by the table of each row's run (no runs:
/// every row goes to table 0), with the message of each row.
pub fn split_by_table(
    text: &[u8],
    row_messages: &[u32],
    runs: &[RowRun],
    tables: usize,
) -> (Vec<Bytes>, Vec<Vec<u32>>) {
    let mut texts = vec![Vec::new(); tables];
    let mut messages = vec![Vec::new(); tables];
    let mut table_of_row = runs
        .iter()
        .flat_map(|r| std::iter::repeat_n(r.table as usize, r.count as usize));
    let mut start = 0;
    for (end, &message) in memchr_iter(b'\n', text).zip(row_messages) {
        let table = table_of_row.next().unwrap_or(0);
        texts[table].extend_from_slice(&text[start..=end]);
        messages[table].push(message);
        start = end + 1;
    }
    (texts.into_iter().map(Bytes::from).collect(), messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::MessageRef;
    use crate::converter::Operation;

    fn run(table: u32, operation: Operation, count: u32) -> RowRun {
        RowRun {
            table,
            operation,
            count,
        }
    }

    fn batch(
        copy_text: &str,
        row_messages: Vec<u32>,
        runs: Vec<RowRun>,
        messages: usize,
    ) -> ConvertedBatch {
        let mut source = BatchBuilder::new();
        for offset in 0..messages {
            source.push(
                MessageRef {
                    topic: "t",
                    partition: 0,
                    offset: offset as i64,
                    timestamp: None,
                    key: None,
                    value: Some(b"{}"),
                },
                [],
            );
        }
        ConvertedBatch {
            copy_text: Bytes::copy_from_slice(copy_text.as_bytes()),
            rows: row_messages.len() as u64,
            row_messages,
            runs,
            source,
            messages: messages as u64,
            dead_letters: Vec::new(),
            next_offsets: vec![("t".into(), 0, messages as i64)],
            converter: Arc::default(),
        }
    }

    /// A message group as (batch, message, (table, rows)).
    type Group<'a> = (usize, u32, Vec<(usize, &'a [u8])>);

    fn texts(groups: &[MessageGroup]) -> Vec<Group<'_>> {
        groups
            .iter()
            .map(|g| {
                let rows = g.rows.iter().map(|(t, r)| (*t, &r[..])).collect();
                (g.batch, g.message, rows)
            })
            .collect()
    }

    #[test]
    fn rows_group_by_message_across_batches() {
        let mut pending = Pending::new(vec![false]);
        pending.add(batch("a\nb\nc\n", vec![0, 0, 2], vec![], 3));
        pending.add(batch("", vec![], vec![], 2));
        pending.add(batch("d\n", vec![1], vec![], 2));
        let groups = pending.message_groups();
        let expected: Vec<Group> = vec![
            (0, 0, vec![(0, b"a\nb\n")]),
            (0, 2, vec![(0, b"c\n")]),
            (2, 1, vec![(0, b"d\n")]),
        ];
        assert_eq!(texts(&groups), expected);
        assert_eq!(
            pending.chunks(),
            vec![vec![Bytes::from("a\nb\nc\n"), Bytes::from("d\n")]]
        );
        assert_eq!(pending.rows, 4);
        assert_eq!(pending.messages, 7);
    }

    #[test]
    fn rows_split_by_table_and_a_message_groups_its_rows_in_every_table() {
        // Message 0: an order and two lines; message 1: a line only; message 2: an order only.
        let runs = vec![
            run(0, Operation::Insert, 1),
            run(1, Operation::Insert, 3),
            run(0, Operation::Upsert, 1),
        ];
        let mut pending = Pending::new(vec![false, false]);
        let first = pending.add(batch("o1\nl1\nl2\nl3\no3\n", vec![0, 0, 0, 1, 2], runs, 3));
        assert_eq!(
            &first[..],
            b"o1\no3\n",
            "the first table's rows are what is streamed"
        );
        assert_eq!(
            pending.chunks(),
            vec![
                vec![Bytes::from("o1\no3\n")],
                vec![Bytes::from("l1\nl2\nl3\n")]
            ]
        );
        let expected: Vec<Group> = vec![
            (0, 0, vec![(0, b"o1\n"), (1, b"l1\nl2\n")]),
            (0, 1, vec![(1, b"l3\n")]),
            (0, 2, vec![(0, b"o3\n")]),
        ];
        assert_eq!(texts(&pending.message_groups()), expected);
    }

    #[test]
    fn a_keyed_table_is_staged_with_its_own_operations_and_one_order() {
        let runs = vec![
            run(1, Operation::Delete, 1),
            run(0, Operation::Insert, 1),
            run(1, Operation::Upsert, 1),
        ];
        let mut pending = Pending::new(vec![false, true]);
        pending.add(batch("k1\na\nk2\n", vec![0, 0, 1], runs, 2));
        pending.add(batch(
            "k3\n",
            vec![0],
            vec![run(1, Operation::Upsert, 1)],
            1,
        ));
        assert_eq!(
            pending.chunks(),
            vec![
                vec![Bytes::from("a\n")],
                vec![
                    Bytes::from("k1\tt\t0\nk2\tf\t1\n"),
                    Bytes::from("k3\tf\t2\n")
                ],
            ]
        );
        assert_eq!(pending.deletes(), vec![false, true]);
        pending.clear();
        assert_eq!(pending.deletes(), vec![false, false]);
        assert!(pending.is_empty());
    }
}
