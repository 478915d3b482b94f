//! How a configuration is shown: the redacted `key = value` listing logged
//! at startup, and `Debug` views that never print secrets. What counts as a
//! secret is one rule ([`is_secret_key`]), used for Kafka properties,
//! converter settings and by the Kafka client's own logging.

use std::fmt;

use super::{ConverterConfig, DbConfig, SinkConfig, JSON_SETTINGS, MEGABYTE};

impl SinkConfig {
    /// A view for logs: `Display` prints the effective configuration as TOML-like
    /// `key = value` lines, `Debug` as [`SinkConfig`]'s `Debug`. Neither shows
    /// the password or secret-looking Kafka properties and converter settings.
    pub fn redacted(&self) -> Redacted<'_> {
        Redacted(self)
    }
}

/// See [`SinkConfig::redacted`].
pub struct Redacted<'a>(&'a SinkConfig);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        if let Some(name) = &c.name {
            writeln!(f, "name = {name:?}")?;
        }
        writeln!(f, "topics = {:?}", c.topics)?;
        writeln!(f, "tasks = {}", c.tasks)?;
        writeln!(f, "db.host = {:?}", c.db.host_port())?;
        writeln!(f, "db.database = {:?}", c.db.database)?;
        writeln!(f, "db.username = {:?}", c.db.username)?;
        if c.db.password.is_some() {
            writeln!(f, "db.password = \"***\"")?;
        }
        if let [t] = &c.db.tables[..] {
            writeln!(f, "db.schema = {:?}", t.schema)?;
            writeln!(f, "db.table = {:?}", t.table)?;
            writeln!(f, "db.columns = {:?}", t.columns)?;
            writeln!(f, "db.write.mode = \"{}\"", t.write_mode)?;
            if let Some(keys) = &t.key_columns {
                writeln!(f, "db.key.columns = {keys:?}")?;
            }
        } else {
            let names: Vec<&str> = c.db.tables.iter().map(|t| t.table.as_str()).collect();
            writeln!(f, "db.tables = {names:?}")?;
            for t in &c.db.tables {
                let name = &t.table;
                writeln!(f, "table.{name:?}.schema = {:?}", t.schema)?;
                writeln!(f, "table.{name:?}.columns = {:?}", t.columns)?;
                writeln!(f, "table.{name:?}.write.mode = \"{}\"", t.write_mode)?;
                if let Some(keys) = &t.key_columns {
                    writeln!(f, "table.{name:?}.key.columns = {keys:?}")?;
                }
                if !t.topics.is_empty() {
                    writeln!(f, "table.{name:?}.topics = {:?}", t.topics)?;
                }
            }
        }
        writeln!(f, "db.sslmode = \"{}\"", c.db.sslmode)?;
        if let Some(ca) = &c.db.sslrootcert {
            writeln!(f, "db.sslrootcert = {:?}", ca.display().to_string())?;
        }
        let (json, settings): (Vec<_>, Vec<_>) = c
            .converter
            .settings
            .iter()
            .partition(|(key, _)| JSON_SETTINGS.contains(&key.as_str()));
        for (key, value) in json {
            writeln!(f, "{key} = {value:?}")?;
        }
        writeln!(f, "db.delivery = \"{}\"", c.delivery)?;
        writeln!(f, "db.buffer.size = {}", c.buffer_size)?;
        writeln!(f, "flush.interval.ms = {}", c.flush_interval.as_millis())?;
        writeln!(f, "errors.tolerance = \"{}\"", c.errors_tolerance)?;
        if let Some(max) = c.max_dead_letters_per_minute {
            writeln!(f, "errors.deadletter.max.per.minute = {max}")?;
        }
        match &c.converter.path {
            Some(path) => writeln!(f, "plugin.path = {:?}", path.display().to_string())?,
            None => writeln!(f, "# plugin.path unset: bundled parse-path converter")?,
        }
        writeln!(
            f,
            "plugin.timeout.ms = {}",
            c.converter.timeout.map_or(0, |t| t.as_millis())
        )?;
        writeln!(
            f,
            "plugin.memory.mb = {}",
            c.converter.memory_limit / MEGABYTE
        )?;
        writeln!(f, "plugin.clock = {}", c.converter.wall_clock)?;
        for (key, value) in settings {
            writeln!(f, "plugin.settings.{key:?} = {:?}", shown(key, value))?;
        }
        let mut kafka = c.kafka.iter().peekable();
        while let Some((key, value)) = kafka.next() {
            write!(f, "kafka.{key:?} = {:?}", shown(key, value))?;
            if kafka.peek().is_some() {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

impl DbConfig {
    /// `host:port`, with brackets around an IPv6 address.
    pub fn host_port(&self) -> String {
        format!("{}:{}", super::values::bracketed(&self.host), self.port)
    }
}

/// Whether a Kafka property or converter setting is hidden from logs.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "passphrase",
        "secret",
        "token",
        "credential",
        "key.pem",
    ]
    .iter()
    .any(|word| key.contains(word))
        || key == "sasl.oauthbearer.config"
}

fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret_key(key) {
        "***"
    } else {
        value
    }
}

/// Debug view of a settings list or map with secret-looking values hidden.
struct SecretsHidden<'a, I>(&'a I);

impl<'a, I> fmt::Debug for SecretsHidden<'a, I>
where
    &'a I: IntoIterator<Item = (&'a String, &'a String)>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.into_iter().map(|(k, v)| (k, shown(k, v))))
            .finish()
    }
}

impl fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tables", &self.tables)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .finish()
    }
}

impl fmt::Debug for ConverterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings: Vec<_> = self
            .settings
            .iter()
            .map(|(k, v)| (k.as_str(), shown(k, v)))
            .collect();
        f.debug_struct("ConverterConfig")
            .field("path", &self.path)
            .field("settings", &settings)
            .field("timeout", &self.timeout)
            .field("memory_limit", &self.memory_limit)
            .field("write_modes", &self.write_modes)
            .finish()
    }
}

impl fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkConfig")
            .field("name", &self.name)
            .field("topics", &self.topics)
            .field("tasks", &self.tasks)
            .field("db", &self.db)
            .field("delivery", &self.delivery)
            .field("buffer_size", &self.buffer_size)
            .field("flush_interval", &self.flush_interval)
            .field("errors_tolerance", &self.errors_tolerance)
            .field(
                "max_dead_letters_per_minute",
                &self.max_dead_letters_per_minute,
            )
            .field("converter", &self.converter)
            .field("kafka", &SecretsHidden(&self.kafka))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_process_toml;
    use super::super::test_support::TWO_SINKS;
    use super::super::test_support::{minimal_with, MINIMAL};
    use super::*;

    #[test]
    fn debug_and_redacted_hide_secrets() {
        let config = minimal_with(
            r#"
            name = "orders"
            db.password = "hunter2"
            kafka.sasl.password = "kafkapw"
            kafka.ssl.key.password = "keypw"
            plugin.settings.api_token = "tok"
            plugin.settings.mode = "strict"
            "#,
        );
        let debug = format!("{config:?}");
        let db_debug = format!("{:?}", config.db);
        let redacted_debug = format!("{:?}", config.redacted());
        let display = config.redacted().to_string();
        for text in [&debug, &db_debug, &redacted_debug, &display] {
            for secret in ["hunter2", "kafkapw", "keypw", "tok\""] {
                assert!(!text.contains(secret), "{secret} shown in {text}");
            }
        }
        assert!(db_debug.contains(r#"password: Some("***")"#), "{db_debug}");
        assert!(debug.contains("strict"), "{debug}");
        assert!(display.contains("db.password = \"***\""), "{display}");
        assert!(
            display.contains("kafka.\"group.id\" = \"connect-orders\""),
            "{display}"
        );
        assert!(
            display.contains("db.host = \"localhost:5432\""),
            "{display}"
        );
        assert!(
            display.contains("\ndb.json.parse = \"/@a,/@b\"\n"),
            "{display}"
        );
        assert!(
            display.contains("plugin.settings.\"mode\" = \"strict\""),
            "{display}"
        );
        assert!(
            !display.contains("plugin.settings.\"db.json.parse\""),
            "{display}"
        );
    }

    /// The secrets librdkafka itself marks sensitive (passwords, private keys, OAuth client
    /// secrets and configs) are hidden in every view of a configuration that can reach a log:
    /// `Debug` of the sink, of its process configuration, and the redacted `Display`; the
    /// non-secret TLS settings next to them stay visible.
    #[test]
    fn librdkafka_secrets_are_hidden_in_every_view() {
        let secrets = [
            ("sasl.password", "s1-sasl"),
            ("ssl.key.password", "s2-keypass"),
            ("ssl.key.pem", "s3-keypem"),
            ("ssl.keystore.password", "s4-keystore"),
            ("sasl.oauthbearer.config", "s5-oauthcfg"),
            ("sasl.oauthbearer.client.secret", "s6-clientsecret"),
            (
                "sasl.oauthbearer.client.credentials.client.secret",
                "s7-credsecret",
            ),
            ("sasl.oauthbearer.assertion.private.key.pem", "s8-assertpem"),
        ];
        let mut text = format!("{MINIMAL}\ndb.password = \"s0-dbpass\"\n[kafka]\n");
        for (key, value) in secrets {
            text.push_str(&format!("{key:?} = {value:?}\n"));
        }
        text.push_str("\"security.protocol\" = \"SASL_SSL\"\n\"ssl.ca.location\" = \"/ca.pem\"\n");
        let process = parse_process_toml(&text).unwrap();
        let sink = &process.sinks[0];
        let views = [
            format!("{sink:?}"),
            format!("{process:?}"),
            format!("{:?}", sink.redacted()),
            sink.redacted().to_string(),
        ];
        for view in &views {
            for secret in std::iter::once("s0-dbpass").chain(secrets.iter().map(|(_, v)| *v)) {
                assert!(!view.contains(secret), "{secret} shown in {view}");
            }
            assert!(
                view.contains("SASL_SSL") && view.contains("/ca.pem"),
                "{view}"
            );
        }
        for (key, _) in secrets {
            assert!(is_secret_key(key), "{key}");
            assert!(
                views[3].contains(&format!("kafka.{key:?} = \"***\"")),
                "{key} in {}",
                views[3]
            );
        }
    }

    #[test]
    fn redacted_shows_the_new_keys() {
        let p = parse_process_toml(TWO_SINKS).unwrap();
        let orders = p.sinks[0].redacted().to_string();
        let payments = p.sinks[1].redacted().to_string();
        for line in [
            "db.sslmode = \"require\"\n",
            "errors.deadletter.max.per.minute = 100\n",
            "plugin.timeout.ms = 10000\n",
            "plugin.memory.mb = 512\n",
        ] {
            assert!(orders.contains(line), "{line} not in {orders}");
        }
        assert!(!orders.contains("sslrootcert"), "{orders}");
        assert!(
            payments.contains("db.sslmode = \"verify-full\"\ndb.sslrootcert = \"ca.pem\"\n"),
            "{payments}"
        );
        let unlimited = minimal_with("plugin.timeout.ms = 0").redacted().to_string();
        assert!(unlimited.contains("plugin.timeout.ms = 0\n"), "{unlimited}");
        assert!(!unlimited.contains("deadletter"), "{unlimited}");
        assert!(!format!("{p:?}").contains("\"pw\""), "{p:?}");
    }
}
