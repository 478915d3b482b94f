//! A borrowed view of one Kafka message.

use std::str;

/// One Kafka record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The header key.
    pub key: &'a [u8],
    /// The header value; `None` for a null value.
    pub value: Option<&'a [u8]>,
}

/// One Kafka message, borrowed from the batch the host passed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// The topic name.
    pub topic: &'a str,
    /// The partition number.
    pub partition: i32,
    /// The offset in the partition.
    pub offset: i64,
    /// Milliseconds since the Unix epoch, when the broker gave a timestamp.
    pub timestamp: Option<i64>,
    /// The key; `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// The value; `None` for a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    /// The headers, in record order.
    pub headers: &'a [Header<'a>],
}

impl<'a> Message<'a> {
    /// A message with only a value, on topic `test`, partition 0, offset 0 (for tests).
    pub fn from_value(value: &'a [u8]) -> Self {
        Message {
            topic: "test",
            partition: 0,
            offset: 0,
            timestamp: None,
            key: None,
            value: Some(value),
            headers: &[],
        }
    }

    /// The value as UTF-8 text; an error if it is not UTF-8.
    pub fn value_str(&self) -> Result<Option<&'a str>, String> {
        self.value.map(|v| utf8(v, "value")).transpose()
    }

    /// The key as UTF-8 text; an error if it is not UTF-8.
    pub fn key_str(&self) -> Result<Option<&'a str>, String> {
        self.key.map(|k| utf8(k, "key")).transpose()
    }

    /// The value of the first header named `key`, if any (`Some(None)` for a null value).
    pub fn header(&self, key: &str) -> Option<Option<&'a [u8]>> {
        self.headers
            .iter()
            .find(|h| h.key == key.as_bytes())
            .map(|h| h.value)
    }
}

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, String> {
    str::from_utf8(bytes).map_err(|e| format!("the message {what} is not valid UTF-8: {e}"))
}
