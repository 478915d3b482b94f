//! An example pgsink converter, and the template for writing your own.
//!
//! The bundled `path-parser` maps JSON values to columns. When a sink needs
//! more (filtering messages, reading the key, headers or Kafka coordinates,
//! computing values), a converter of a few lines does it. This one:
//!
//! * keeps only the messages whose header `type` equals the setting
//!   `keep.type`, and skips the others (they become no row, which is not an
//!   error);
//! * writes three columns: the message key as text (NULL when there is none),
//!   where the message came from as `topic:partition:offset`, and the byte
//!   length of the value (NULL for a tombstone).
//!
//! # Writing your own
//!
//! Copy this crate, then:
//!
//! 1. In `configure`, read your settings (`settings.require("...")`) and
//!    check the target columns; an error message stops pgsink at start-up.
//! 2. In `convert`, write zero or more rows per message with `rows.row()`,
//!    pushing exactly one field per column. The SDK escapes everything for
//!    COPY. Returning an error sends this one message to the dead-letter table.
//! 3. Test natively with `pgsink_guest::testing` (`cargo test`), then build
//!    the component with `cargo build --release --target wasm32-wasip2` and
//!    point the pgsink configuration at `target/wasm32-wasip2/release/<crate>.wasm`.

use pgsink_guest::{Converter, Message, RowWriter, Settings, Table};

/// Keeps messages with header `type` = `keep.type`; writes key, source and value length.
#[derive(Debug, Clone)]
pub struct Filter {
    /// The header value of the messages to keep.
    keep_type: Vec<u8>,
}

impl Converter for Filter {
    fn configure(settings: &Settings, tables: &[Table]) -> Result<Self, String> {
        tables[0].require_columns(3)?;
        let keep_type = settings.require("keep.type")?.as_bytes().to_vec();
        Ok(Filter { keep_type })
    }

    fn convert(&mut self, message: &Message<'_>, rows: &mut RowWriter<'_>) -> Result<(), String> {
        if message.header("type") != Some(Some(&self.keep_type[..])) {
            return Ok(()); // filtered out: no row
        }
        let key = message.key_str()?;
        let mut row = rows.row();
        row.push_opt(key);
        row.push_display(format_args!(
            "{}:{}:{}",
            message.topic, message.partition, message.offset
        ));
        match message.value {
            Some(value) => row.push_display(value.len()),
            None => row.push_null(),
        };
        Ok(())
    }
}

pgsink_guest::export_converter!(Filter);

#[cfg(test)]
mod tests {
    use super::*;
    use pgsink_guest::testing::convert_messages;
    use pgsink_guest::{Header, Outcome};

    fn filter() -> Filter {
        let settings = Settings::from_iter([("keep.type", "order")]);
        Filter::configure(&settings, &[Table::named(&["key", "source", "size"])]).unwrap()
    }

    const ORDER: &[Header<'static>] = &[
        Header {
            key: b"trace",
            value: None,
        },
        Header {
            key: b"type",
            value: Some(b"order"),
        },
    ];
    const PAYMENT: &[Header<'static>] = &[Header {
        key: b"type",
        value: Some(b"payment"),
    }];
    const NULL_TYPE: &[Header<'static>] = &[Header {
        key: b"type",
        value: None,
    }];

    fn message<'a>(
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
        headers: &'a [Header<'a>],
    ) -> Message<'a> {
        Message {
            topic: "shop",
            partition: 3,
            offset: 42,
            timestamp: Some(1_700_000_000_000),
            key,
            value,
            headers,
        }
    }

    #[test]
    fn keeps_matching_messages_and_computes_columns() {
        let out = convert_messages(
            &mut filter(),
            3,
            &[
                message(Some(b"k\t1"), Some(b"{\"total\":12}"), ORDER),
                message(Some(b"k2"), Some(b"x"), PAYMENT),
                message(None, None, ORDER),
                message(Some(b"k3"), Some(b"x"), &[]),
                message(Some(b"k4"), Some(b"x"), NULL_TYPE),
            ],
        );
        assert_eq!(
            String::from_utf8(out.copy_text).unwrap(),
            "k\\t1\tshop:3:42\t12\n\\N\tshop:3:42\t\\N\n"
        );
        assert_eq!(
            out.outcomes,
            [
                Outcome::Rows(1),
                Outcome::Rows(0),
                Outcome::Rows(1),
                Outcome::Rows(0),
                Outcome::Rows(0)
            ]
        );
    }

    #[test]
    fn a_key_that_is_not_utf8_fails_the_message() {
        let out = convert_messages(
            &mut filter(),
            3,
            &[message(Some(b"\xff"), Some(b""), ORDER)],
        );
        assert!(matches!(&out.outcomes[0], Outcome::Failed(r) if r.contains("UTF-8")));
        assert!(out.copy_text.is_empty());
    }

    #[test]
    fn configuration_is_checked() {
        let settings = Settings::from_iter([("keep.type", "order")]);
        let err = Filter::configure(&settings, &[Table::named(&["a", "b"])]).unwrap_err();
        assert_eq!(
            err,
            "this converter writes 3 column(s) and the table public.test lists 2: a, b"
        );
        let err =
            Filter::configure(&Settings::default(), &[Table::named(&["a", "b", "c"])]).unwrap_err();
        assert!(err.contains("keep.type"), "{err}");
    }
}
