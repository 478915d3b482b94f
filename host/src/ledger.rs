//! The delivery ledger: per partition, what this process has read, handed to the writer and
//! committed — and so where the partition must resume when anything goes wrong.
//!
//! Why a ledger without I/O: exactly once fails in interleavings that a test against a real
//! broker produces rarely (a rebalance in the middle of a batch, a fence trip while another
//! partition has no stored offset yet, a commit whose outcome is unknown, a zombie that lost
//! its partitions without being told). Every delivery decision is made here, from events, so
//! the model test (`ledger_model.rs`) can drive it through any sequence of them; the consume
//! loop (`pipeline.rs`) and the rebalance callbacks (`kafka.rs`) only carry events in and
//! actions out.
//!
//! The invariant: for each partition, a commit loads exactly the messages the consumer
//! delivered in `[from, next)`, in order, since its last assignment or seek, and `from` is
//! where the stored offset must stand for the commit to be accepted (`pgsink.commit_offsets`
//! refuses anything else, so even a wrong `from` cannot load a message twice or skip one).
//! Whenever what the writer holds and what the consumer reads may disagree (a failed commit, a
//! fence trip, data of a re-assigned partition), every assigned partition is rewound: the
//! buffered data is discarded, the epoch moves on (the writer drops anything of an older one)
//! and each partition is sought back to a concrete offset — the stored one, or the first offset
//! this process read of it.

use std::collections::BTreeMap;

/// A topic and partition.
pub type Partition = (String, i32);

/// A partition's part of one commit: the messages `[from, next)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetMove {
    pub topic: String,
    pub partition: i32,
    /// Where the data of the commit starts, and so where the stored offset must stand.
    pub from: i64,
    /// The offset after the last message of the commit.
    pub next: i64,
}

/// What the ledger knows of one assigned partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Range {
    /// Where the data not yet committed starts: the stored offset, the offset the consumer was
    /// sought to, or the first offset it delivered. None until one of these is known (no stored
    /// row: the consumer starts at Kafka's committed offset or `auto.offset.reset`).
    from: Option<i64>,
    /// The offset after the last message handed to the writer since `from`.
    sent: Option<i64>,
    /// The offset after the last message read (handed to the writer or still being batched).
    read: Option<i64>,
    /// The consumer delivered a message of it since it was assigned or sought (so its
    /// position is no longer `from`), whether or not the message was kept.
    moved: bool,
}

impl Range {
    fn pending(&self) -> Option<(i64, i64)> {
        match (self.from, self.sent) {
            (Some(from), Some(sent)) if sent > from => Some((from, sent)),
            _ => None,
        }
    }
}

/// The delivery state of one consumer.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Assigned partitions by topic (looked up by `&str` for every message).
    parts: BTreeMap<String, BTreeMap<i32, Range>>,
    /// Data was handed to the writer since the last [`plan`](Self::plan).
    fresh: bool,
    /// The writer holds rows of partitions released without a commit, kept on purpose (fastest
    /// delivery: their offsets are auto-committed, so the rows are loaded, not read again).
    released_rows: bool,
    /// Those partitions (their messages may still be in the batch being built).
    released: Vec<Partition>,
    /// Moves on with every rewind; the writer drops data of older epochs.
    epoch: u64,
    /// The commit handed to the writer whose outcome is not known yet.
    inflight: Option<Vec<OffsetMove>>,
    /// The writer's data and the consumer's positions may disagree: rewind before reading on.
    rewind_due: bool,
}

impl Ledger {
    /// A ledger with nothing assigned.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// The current epoch: data read from now on belongs to it.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The assigned partitions, in order.
    pub fn partitions(&self) -> Vec<(&str, i32)> {
        self.ranges().map(|(t, p, _)| (t.as_str(), p)).collect()
    }

    /// True while `partition` is assigned.
    #[cfg(test)]
    pub fn is_assigned(&self, partition: &Partition) -> bool {
        self.get(partition).is_some()
    }

    fn get(&self, (topic, partition): &Partition) -> Option<&Range> {
        self.parts.get(topic)?.get(partition)
    }

    fn get_mut(&mut self, topic: &str, partition: i32) -> Option<&mut Range> {
        self.parts.get_mut(topic)?.get_mut(&partition)
    }

    fn ranges(&self) -> impl Iterator<Item = (&String, i32, &Range)> {
        self.parts
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |(p, r)| (t, *p, r)))
    }

    /// Partitions were assigned; each starts at `start` (the stored offset), or where Kafka
    /// says (None). A partition assigned again without being revoked makes a rewind due.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = (Partition, Option<i64>)>) {
        for (partition, start) in partitions {
            self.released.retain(|r| *r != partition);
            let (topic, partition) = partition;
            let ranges = self.parts.entry(topic).or_default();
            let old = ranges.get(&partition).and_then(|r| r.from);
            let again = ranges.contains_key(&partition);
            ranges.insert(
                partition,
                Range {
                    // Assigned again without a revocation (never, by the protocol): librdkafka
                    // may not have repositioned it, so the rewind must seek, and without a
                    // stored offset it must seek to where the uncommitted data began.
                    from: start.or(old),
                    moved: again,
                    ..Range::default()
                },
            );
            if again {
                // What was read of it under the old assignment cannot be told from the new.
                self.rewind_due = true;
            }
        }
    }

    /// Partitions are being revoked. Returns true when the writer holds data (of any
    /// partition) that must be committed before they are released; then the caller settles
    /// the commit in flight, commits, and calls [`forget`](Self::forget) whatever the outcome.
    /// Messages of these partitions not yet handed to the writer are dropped by the caller.
    pub fn revoke(&mut self, partitions: &[Partition]) -> bool {
        let owns_data = partitions
            .iter()
            .any(|p| self.get(p).is_some_and(|r| r.pending().is_some()));
        owns_data || self.inflight.is_some()
    }

    /// Partitions are released in fastest delivery, where Kafka has auto-committed what was
    /// read: the rows the writer holds of them are loaded with the next commit (reading them
    /// again is up to the new owner, who starts after them).
    pub fn release_keeping_rows(&mut self, partitions: &[Partition]) {
        self.released.extend(partitions.iter().cloned());
        for (topic, partition) in partitions {
            if let Some(ps) = self.parts.get_mut(topic) {
                if ps.remove(partition).is_some_and(|r| r.pending().is_some()) {
                    self.released_rows = true;
                }
                if ps.is_empty() {
                    self.parts.remove(topic);
                }
            }
        }
    }

    /// Partitions are released (after [`revoke`](Self::revoke) and its commit). If the writer
    /// still holds data of one of them (the commit failed or was not made), that data must
    /// never be committed — no later commit covers it — so a rewind becomes due: the epoch
    /// moves on and the writer discards everything it holds.
    pub fn forget(&mut self, partitions: &[Partition]) {
        for (topic, partition) in partitions {
            if let Some(ps) = self.parts.get_mut(topic) {
                let held = ps.get(partition).is_some_and(|r| r.pending().is_some());
                if held || self.inflight.is_some() {
                    self.rewind_due = true;
                }
                ps.remove(partition);
                if ps.is_empty() {
                    self.parts.remove(topic);
                }
            }
        }
    }

    /// A message the consumer delivered: true if it belongs to the batch being built. A message
    /// of a partition not assigned, or at or before what was already read, is dropped (a stale
    /// fetch after a seek or a revocation; it is read again from its own position, by whoever
    /// owns the partition).
    pub fn admit(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        let rewind_due = self.rewind_due;
        let Some(range) = self.get_mut(topic, partition) else {
            return false;
        };
        let from = *range.from.get_or_insert(offset);
        range.moved = true;
        if rewind_due || offset < from || range.read.is_some_and(|read| offset < read) {
            return false;
        }
        range.read = Some(offset + 1);
        true
    }

    /// A batch went to the writer; `next` is, per partition, the offset after its last message.
    pub fn sent<'a>(&mut self, next: impl IntoIterator<Item = (&'a str, i32, i64)>) {
        for (topic, partition, next) in next {
            let released = self
                .released
                .iter()
                .any(|(t, p)| t == topic && *p == partition);
            match self.get_mut(topic, partition) {
                Some(range) if range.read.is_some_and(|read| next <= read) => {
                    range.sent = Some(range.sent.map_or(next, |sent| sent.max(next)));
                    self.fresh = true;
                }
                None if released => {
                    self.released_rows = true;
                    self.fresh = true;
                }
                // Data the ledger did not admit reached the writer: it must not be committed.
                _ => self.rewind_due = true,
            }
        }
    }

    /// True when the writer holds data that no commit covers yet.
    pub fn has_pending(&self) -> bool {
        self.fresh && !self.rewind_due
    }

    /// True when a commit is in flight (its outcome must be settled before the next one).
    pub fn in_flight(&self) -> bool {
        self.inflight.is_some()
    }

    /// The next commit: every partition with data handed to the writer since its last commit.
    /// None while a commit is in flight, a rewind is due, or nothing is pending. The caller
    /// hands exactly this to the writer, then reports the outcome.
    pub fn plan(&mut self) -> Option<Vec<OffsetMove>> {
        if self.inflight.is_some() || self.rewind_due {
            return None;
        }
        self.fresh = false;
        let moves: Vec<OffsetMove> = self
            .ranges()
            .filter_map(|(topic, partition, range)| {
                range.pending().map(|(from, next)| OffsetMove {
                    topic: topic.clone(),
                    partition,
                    from,
                    next,
                })
            })
            .collect();
        if moves.is_empty() && !std::mem::take(&mut self.released_rows) {
            return None;
        }
        self.released_rows = false;
        self.inflight = Some(moves.clone());
        Some(moves)
    }

    /// The commit in flight is in the database. Returns its moves (for Kafka's copy of them).
    pub fn committed(&mut self) -> Vec<OffsetMove> {
        let moves = self.inflight.take().unwrap_or_default();
        for m in &moves {
            if let Some(range) = self.get_mut(&m.topic, m.partition) {
                if range.from == Some(m.from) {
                    range.from = Some(m.next);
                }
            }
        }
        moves
    }

    /// The commit in flight was rolled back (fence trip) or its data discarded: what the
    /// writer held is gone, so every partition must be read again from where it stands.
    pub fn failed(&mut self) {
        self.inflight = None;
        self.rewind_due = true;
    }

    /// True when [`rewind`](Self::rewind) must run before anything more is read.
    pub fn rewind_due(&self) -> bool {
        self.rewind_due
    }

    /// Starts a rewind: a new epoch, nothing read or sent, and for each assigned partition
    /// where its data started. The caller seeks each partition to its stored offset, else to
    /// `from` — unless it is there already ([`Resume::must_seek`]) — then reports each with
    /// [`resumed`](Self::resumed).
    ///
    /// Settle the commit in flight first: its outcome moves the stored offsets, and an outcome
    /// that arrives after the rewind would be taken for the next commit's.
    pub fn rewind(&mut self) -> Vec<Resume> {
        debug_assert!(self.inflight.is_none(), "rewind with a commit in flight");
        self.epoch += 1;
        self.rewind_due = false;
        self.fresh = false;
        self.released_rows = false;
        self.released.clear();
        self.inflight = None;
        self.parts
            .iter_mut()
            .flat_map(|(topic, ps)| {
                ps.iter_mut().map(move |(partition, range)| {
                    range.sent = None;
                    range.read = None;
                    Resume {
                        partition: (topic.clone(), *partition),
                        from: range.from,
                        moved: range.moved,
                    }
                })
            })
            .collect()
    }

    /// `partition` was sought to `offset` (None: left where it was, see [`rewind`](Self::rewind)).
    pub fn resumed(&mut self, (topic, partition): &Partition, offset: Option<i64>) {
        if let Some(range) = self.get_mut(topic, *partition) {
            *range = Range {
                from: offset,
                ..Range::default()
            };
        }
    }
}

/// Where a partition stands at a rewind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The partition.
    pub partition: Partition,
    /// Where its uncommitted data started (None: no stored offset and nothing delivered yet).
    pub from: Option<i64>,
    /// The consumer delivered messages of it since it was last positioned.
    pub moved: bool,
}

impl Resume {
    /// Whether the consumer must be sought to `target` (the stored offset, else `from`): not
    /// when nothing was delivered since it was positioned at `target` already.
    pub fn must_seek(&self, target: Option<i64>) -> bool {
        target.is_some() && (self.moved || target != self.from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("t".to_string(), n)
    }

    fn moves(m: &[OffsetMove]) -> Vec<(i32, i64, i64)> {
        m.iter().map(|m| (m.partition, m.from, m.next)).collect()
    }

    #[test]
    fn a_commit_covers_what_was_sent_from_the_stored_offset() {
        let mut l = Ledger::new();
        l.assign([(p(0), Some(5)), (p(1), None)]);
        assert!(l.admit("t", 0, 5) && l.admit("t", 0, 6) && l.admit("t", 1, 40));
        l.sent([("t", 0, 7), ("t", 1, 41)]);
        assert!(l.admit("t", 0, 7));
        let plan = l.plan().expect("plan");
        assert_eq!(moves(&plan), [(0, 5, 7), (1, 40, 41)]);
        assert_eq!(l.plan(), None, "one commit in flight");
        l.committed();
        l.sent([("t", 0, 8)]);
        assert_eq!(moves(&l.plan().expect("plan")), [(0, 7, 8)]);
    }

    #[test]
    fn stale_and_foreign_messages_are_dropped() {
        let mut l = Ledger::new();
        l.assign([(p(0), Some(5))]);
        assert!(!l.admit("t", 0, 4), "before the stored offset");
        assert!(
            l.admit("t", 0, 9),
            "a gap is a compacted or transactional log"
        );
        assert!(!l.admit("t", 0, 9), "read already");
        assert!(!l.admit("t", 1, 0), "not assigned");
    }

    /// Defect 1 of the review: after a fence trip, a partition without a stored row is sought
    /// back to the first offset read of it, not left where the consumer stands.
    #[test]
    fn a_rewind_names_a_concrete_offset_for_a_partition_without_a_stored_row() {
        let mut l = Ledger::new();
        l.assign([(p(0), None), (p(1), Some(3))]);
        assert!(l.admit("t", 0, 100) && l.admit("t", 0, 101) && l.admit("t", 1, 3));
        l.sent([("t", 0, 102), ("t", 1, 4)]);
        l.plan();
        l.failed();
        assert!(!l.admit("t", 0, 102), "nothing is read before the rewind");
        let epoch = l.epoch();
        let resume = l.rewind();
        let got: Vec<_> = resume
            .iter()
            .map(|r| (r.partition.1, r.from, r.moved))
            .collect();
        assert_eq!(got, [(0, Some(100), true), (1, Some(3), true)]);
        assert_eq!(l.epoch(), epoch + 1);
        l.resumed(&p(0), Some(100));
        l.resumed(&p(1), Some(3));
        assert!(l.admit("t", 0, 100));
    }

    #[test]
    fn a_revocation_commits_what_the_writer_holds_first() {
        let mut l = Ledger::new();
        l.assign([(p(0), Some(0)), (p(1), Some(0))]);
        assert!(!l.revoke(&[p(0)]), "nothing held");
        assert!(l.admit("t", 1, 0));
        assert!(
            !l.revoke(&[p(0)]),
            "read but not sent: dropped with the batch"
        );
        l.sent([("t", 1, 1)]);
        assert!(l.revoke(&[p(1)]));
        l.plan();
        assert!(l.revoke(&[p(0)]), "a commit in flight is settled first");
        l.committed();
        l.forget(&[p(1)]);
        assert!(!l.is_assigned(&p(1)));
    }

    /// A revocation whose commit was not made (at shutdown, or the writer failed) must not let
    /// the released partition's rows reach a later commit of the kept ones.
    #[test]
    fn forgetting_a_partition_whose_rows_the_writer_holds_forces_a_rewind() {
        let mut l = Ledger::new();
        l.assign([(p(0), Some(10)), (p(1), Some(0))]);
        assert!(l.admit("t", 0, 10) && l.admit("t", 1, 0));
        l.sent([("t", 0, 11), ("t", 1, 1)]);
        l.forget(&[p(0)]);
        assert!(l.rewind_due());
        assert_eq!(l.plan(), None);
        let resume = l.rewind();
        assert_eq!(resume.len(), 1);
        assert_eq!(resume[0].partition, p(1));
    }

    /// Fastest delivery: what was read of a revoked partition is already auto-committed in
    /// Kafka, so its rows are loaded with the next commit rather than dropped.
    #[test]
    fn fastest_delivery_loads_the_rows_of_released_partitions() {
        let mut l = Ledger::new();
        l.assign([(p(0), None)]);
        assert!(l.admit("t", 0, 7));
        l.sent([("t", 0, 8)]);
        assert!(
            l.admit("t", 0, 8),
            "still in the batch being built at the revocation"
        );
        l.release_keeping_rows(&[p(0)]);
        assert!(!l.rewind_due());
        assert_eq!(l.plan(), Some(vec![]), "a commit of the held rows");
        l.committed();
        assert_eq!(l.plan(), None);
        l.sent([("t", 0, 9)]);
        assert!(!l.rewind_due());
        assert_eq!(
            l.plan(),
            Some(vec![]),
            "and of the batch read before the revocation"
        );
    }

    #[test]
    fn data_the_ledger_did_not_admit_forces_a_rewind() {
        let mut l = Ledger::new();
        l.assign([(p(0), Some(0))]);
        l.sent([("t", 0, 3)]);
        assert!(l.rewind_due());
        assert_eq!(l.plan(), None);
    }

    #[test]
    fn reassigned_without_a_revocation_forces_a_rewind() {
        let mut l = Ledger::new();
        l.assign([(p(0), Some(0))]);
        assert!(l.admit("t", 0, 0));
        l.assign([(p(0), Some(0))]);
        assert!(l.rewind_due());
        assert!(!l.admit("t", 0, 0), "nothing is read before the rewind");
        let resume = l.rewind();
        assert!(
            resume[0].must_seek(Some(0)),
            "librdkafka may not have repositioned it"
        );
    }
}
