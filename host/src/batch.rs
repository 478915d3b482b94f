//! Building the flat WIT batch from Kafka messages, reusing its buffers.

use crate::converter::{Batch, Header, Message, Span};

/// A batch under construction. [`clear`](Self::clear) keeps the allocations,
/// so a long-running pipeline builds every batch in the same buffers.
#[derive(Debug)]
pub struct BatchBuilder {
    batch: Batch,
}

/// The Kafka coordinates and payload of one message, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct MessageRef<'a> {
    pub topic: &'a str,
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Milliseconds since the epoch, if known.
    pub timestamp: Option<i64>,
    /// Key bytes, if any.
    pub key: Option<&'a [u8]>,
    /// Value bytes, if any.
    pub value: Option<&'a [u8]>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty batch.
    pub fn new() -> Self {
        BatchBuilder {
            batch: Batch {
                topics: Vec::new(),
                data: Vec::new(),
                headers: Vec::new(),
                messages: Vec::new(),
            },
        }
    }

    /// Appends a message and its headers (key, optional value).
    pub fn push<'h>(
        &mut self,
        message: MessageRef<'_>,
        headers: impl IntoIterator<Item = (&'h str, Option<&'h [u8]>)>,
    ) {
        let topic = match self.batch.topics.iter().position(|t| t == message.topic) {
            Some(i) => i as u32,
            None => {
                self.batch.topics.push(message.topic.to_string());
                (self.batch.topics.len() - 1) as u32
            }
        };
        let header_start = self.batch.headers.len() as u32;
        for (key, value) in headers {
            let key = self.append(key.as_bytes());
            let value = value.map(|v| self.append(v));
            self.batch.headers.push(Header { key, value });
        }
        let key = message.key.map(|k| self.append(k));
        let value = message.value.map(|v| self.append(v));
        self.batch.messages.push(Message {
            topic,
            partition: message.partition,
            offset: message.offset,
            timestamp: message.timestamp,
            key,
            value,
            header_start,
            header_count: self.batch.headers.len() as u32 - header_start,
        });
    }

    fn append(&mut self, bytes: &[u8]) -> Span {
        let start = self.batch.data.len() as u32;
        self.batch.data.extend_from_slice(bytes);
        Span {
            start,
            len: bytes.len() as u32,
        }
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.batch.messages.len()
    }

    /// True when the batch holds no message.
    pub fn is_empty(&self) -> bool {
        self.batch.messages.is_empty()
    }

    /// Bytes of keys, values and headers held.
    pub fn data_len(&self) -> usize {
        self.batch.data.len()
    }

    /// Takes the batch, leaving an empty one with room for as much: the next batch is
    /// likely the same size, and growing its buffers by doubling would copy them again.
    pub fn take_presized(&mut self) -> BatchBuilder {
        let room = BatchBuilder {
            batch: Batch {
                topics: Vec::new(),
                data: Vec::with_capacity(self.batch.data.len()),
                headers: Vec::with_capacity(self.batch.headers.len()),
                messages: Vec::with_capacity(self.batch.messages.len()),
            },
        };
        std::mem::replace(self, room)
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.batch.topics.clear();
        self.batch.data.clear();
        self.batch.headers.clear();
        self.batch.messages.clear();
    }

    /// The batch as the converter receives it.
    pub fn batch(&self) -> &Batch {
        &self.batch
    }

    /// Message `i` as a borrowed view (for dead letters and error messages).
    pub fn message(&self, i: usize) -> MessageRef<'_> {
        let m = &self.batch.messages[i];
        let bytes = |s: Option<Span>| {
            s.map(|s| &self.batch.data[s.start as usize..(s.start + s.len) as usize])
        };
        MessageRef {
            topic: &self.batch.topics[m.topic as usize],
            partition: m.partition,
            offset: m.offset,
            timestamp: m.timestamp,
            key: bytes(m.key),
            value: bytes(m.value),
        }
    }

    /// Keeps only the messages for which `keep(topic, partition)` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, i32) -> bool) {
        let dropped = (0..self.len()).any(|i| {
            let m = &self.batch.messages[i];
            !keep(&self.batch.topics[m.topic as usize], m.partition)
        });
        if !dropped {
            return;
        }
        let mut kept = BatchBuilder::new();
        for i in 0..self.len() {
            let m = &self.batch.messages[i];
            if keep(&self.batch.topics[m.topic as usize], m.partition) {
                kept.append_from(self, i);
            }
        }
        *self = kept;
    }

    /// A batch of just message `i` of this one (to retry a message alone).
    pub fn single(&self, i: usize) -> BatchBuilder {
        let mut one = BatchBuilder::new();
        one.append_from(self, i);
        one
    }

    /// Appends message `i` of `other`, headers included.
    pub fn append_from(&mut self, other: &BatchBuilder, i: usize) {
        let m = &other.batch.messages[i];
        let headers = &other.batch.headers
            [m.header_start as usize..(m.header_start + m.header_count) as usize];
        let data = &other.batch.data;
        let text = |s: Span| &data[s.start as usize..(s.start + s.len) as usize];
        self.push(
            other.message(i),
            headers.iter().map(|h| {
                (
                    std::str::from_utf8(text(h.key)).unwrap_or_default(),
                    h.value.map(text),
                )
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<'a>(topic: &'a str, offset: i64, value: &'a [u8]) -> MessageRef<'a> {
        MessageRef {
            topic,
            partition: 1,
            offset,
            timestamp: Some(5),
            key: None,
            value: Some(value),
        }
    }

    #[test]
    fn messages_share_one_buffer_and_topics_are_interned() {
        let mut b = BatchBuilder::new();
        b.push(msg("a", 10, b"{}"), [("h", Some(&b"v"[..]))]);
        b.push(msg("b", 11, b"[1]"), []);
        b.push(msg("a", 12, b"x"), []);
        assert_eq!(b.batch().topics, ["a", "b"]);
        assert_eq!(b.batch().data, b"hv{}[1]x");
        assert_eq!(b.message(1).value, Some(&b"[1]"[..]));
        assert_eq!(b.message(2).topic, "a");
        let one = b.single(0);
        assert_eq!(one.batch().data, b"hv{}");
        assert_eq!(one.batch().messages[0].header_count, 1);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.data_len(), 0);
    }

    #[test]
    fn taking_a_batch_leaves_room_for_the_next() {
        let mut b = BatchBuilder::new();
        b.push(msg("a", 1, b"{}"), [("h", None)]);
        let taken = b.take_presized();
        assert_eq!((taken.len(), taken.data_len()), (1, 3));
        assert!(b.is_empty() && b.batch().topics.is_empty());
        assert!(b.batch.data.capacity() >= 3);
        assert!(b.batch.messages.capacity() >= 1 && b.batch.headers.capacity() >= 1);
    }

    #[test]
    fn revoked_partitions_leave_the_batch() {
        let mut b = BatchBuilder::new();
        for (partition, offset) in [(0, 5), (1, 9), (0, 6)] {
            b.push(
                MessageRef {
                    partition,
                    ..msg("a", offset, b"{}")
                },
                [],
            );
        }
        b.retain(|t, p| !(t == "a" && p == 0));
        assert_eq!(b.len(), 1);
        assert_eq!(b.message(0).offset, 9);
    }
}
