//! A converter for the hot-reload tests (`tests/e2e/converters.rs`), not an example.
//!
//! It turns a message `{"id":N}` into one row of four columns: the id, the
//! setting `version` (any string), and the message's Kafka partition and
//! offset, so that a test can tell which converter version loaded each
//! message. Two more settings make it misbehave on purpose:
//!
//! * `reject = "true"`: `configure` fails (a candidate whose init fails);
//! * `trap_on_canary = "true"`: `convert` panics on every message (the
//!   candidate traps on its canary batch).
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p versioned-plugin`.

use pgsink_guest::{Converter, Message, RowWriter, Settings, Table};

/// Writes (id, version, partition, offset) for `{"id":N}`.
#[derive(Debug, Clone)]
pub struct Versioned {
    version: String,
    trap: bool,
}

/// A boolean setting: absent or "false" is false, "true" is true.
fn flag(settings: &Settings, key: &str) -> Result<bool, String> {
    match settings.get(key) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(format!(
            "the setting {key} must be true or false, not {other:?}"
        )),
    }
}

impl Converter for Versioned {
    fn configure(settings: &Settings, tables: &[Table]) -> Result<Self, String> {
        if flag(settings, "reject")? {
            return Err("rejected on purpose (setting reject = true)".into());
        }
        tables[0].require_columns(4)?;
        Ok(Versioned {
            version: settings.require("version")?.to_string(),
            trap: flag(settings, "trap_on_canary")?,
        })
    }

    fn convert(&mut self, message: &Message<'_>, rows: &mut RowWriter<'_>) -> Result<(), String> {
        if self.trap {
            panic!("trapping on purpose (setting trap_on_canary = true)");
        }
        let Some(value) = message.value_str()? else {
            return Ok(());
        };
        let id = parse_id(value).ok_or_else(|| format!("expected {{\"id\":N}}, got {value:?}"))?;
        rows.row()
            .push_display(id)
            .push_str(&self.version)
            .push_display(message.partition)
            .push_display(message.offset);
        Ok(())
    }
}

/// N of `{"id":N}` (whitespace allowed around the tokens).
fn parse_id(value: &str) -> Option<i64> {
    let rest = value.trim().strip_prefix('{')?.trim_start();
    let rest = rest
        .strip_prefix("\"id\"")?
        .trim_start()
        .strip_prefix(':')?;
    let number = rest.trim().strip_suffix('}')?.trim_end();
    number.parse().ok()
}

pgsink_guest::export_converter!(Versioned);

#[cfg(test)]
mod tests {
    use super::*;
    use pgsink_guest::testing::convert_value;

    fn columns() -> Vec<Table> {
        vec![Table::named(&[
            "id",
            "version",
            "kafka_partition",
            "kafka_offset",
        ])]
    }

    #[test]
    fn rows_carry_the_version_and_the_kafka_position() {
        let settings = Settings::from_iter([("version", "v7")]);
        let mut c = Versioned::configure(&settings, &columns()).unwrap();
        assert_eq!(
            convert_value(&mut c, 4, None, b"{\"id\":42}").unwrap(),
            "42\tv7\t0\t0\n"
        );
        assert_eq!(
            convert_value(&mut c, 4, None, b" { \"id\" : -3 } ").unwrap(),
            "-3\tv7\t0\t0\n"
        );
        let err = convert_value(&mut c, 4, None, b"{\"id\":\"x\"}").unwrap_err();
        assert!(err.starts_with("expected {\"id\":N}"), "{err}");
    }

    #[test]
    fn misbehaviour_on_request() {
        let reject = Settings::from_iter([("version", "v"), ("reject", "true")]);
        assert!(Versioned::configure(&reject, &columns())
            .unwrap_err()
            .contains("on purpose"));
        let missing = Versioned::configure(&Settings::default(), &columns()).unwrap_err();
        assert!(missing.contains("version"), "{missing}");
        let trap = Settings::from_iter([("version", "v"), ("trap_on_canary", "true")]);
        let mut c = Versioned::configure(&trap, &columns()).unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            convert_value(&mut c, 4, None, b"{\"id\":1}")
        }));
        assert!(panicked.is_err());
        let bad = Settings::from_iter([("version", "v"), ("trap_on_canary", "yes")]);
        assert!(Versioned::configure(&bad, &columns()).is_err());
    }
}
