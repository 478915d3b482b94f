//! Parsers for single values: numbers and lists that may be written as
//! strings, names, `host:port` pairs and the enumerations. They know nothing
//! of files or sinks, do no I/O (except [`MetricsAddress::resolve`], which the
//! metrics server calls when it starts), and return messages without the key,
//! or errors naming the key they are given.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::{ConfigError, Delivery, ErrorTolerance, SslMode, WriteMode, DEFAULT_PORT};

/// A whole number written as an integer or as a string (`8000000` or `"8000000"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Number {
    Int(i64),
    /// Parsed (trimmed) during validation, so that the error names the key.
    Text(String),
}

impl Number {
    fn to_u64(&self) -> Option<u64> {
        match self {
            Number::Int(n) => u64::try_from(*n).ok(),
            Number::Text(s) => s.trim().parse().ok(),
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(n) => write!(f, "{n}"),
            Number::Text(s) => f.write_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;

        impl Visitor<'_> for NumberVisitor {
            type Value = Number;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number, or a string holding one")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number::Int(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                i64::try_from(v)
                    .map(Number::Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Number, E> {
                Ok(Number::Text(v.to_owned()))
            }
        }

        deserializer.deserialize_any(NumberVisitor)
    }
}

/// A list of names written as one comma-separated string or as an array of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StringList {
    Joined(String),
    Items(Vec<String>),
}

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;

        impl<'de> Visitor<'de> for ListVisitor {
            type Value = StringList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a comma-separated string or an array of strings")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringList, E> {
                Ok(StringList::Joined(v.to_owned()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(StringList::Items(items))
            }
        }

        deserializer.deserialize_any(ListVisitor)
    }
}

pub(super) fn non_empty(key: &str, value: &str) -> Result<String, ConfigError> {
    if value.trim().is_empty() {
        Err(ConfigError::invalid(key, "must not be empty"))
    } else {
        Ok(value.to_owned())
    }
}

/// `value` as a whole number; `what` names the unit in the error (`a whole number of bytes`).
pub(super) fn whole_number(
    key: &str,
    value: Option<&Number>,
    what: &str,
) -> Result<Option<u64>, ConfigError> {
    value
        .map(|v| {
            v.to_u64()
                .ok_or_else(|| ConfigError::invalid(key, format!("expected {what}, got `{v}`")))
        })
        .transpose()
}

/// Splits and checks a list of names: items trimmed, none empty, no duplicates.
pub(super) fn names(key: &str, what: &str, list: &StringList) -> Result<Vec<String>, ConfigError> {
    let (items, written): (Vec<String>, _) = match list {
        StringList::Joined(s) => (
            s.split(',').map(|i| i.trim().to_owned()).collect(),
            s.clone(),
        ),
        StringList::Items(v) => (
            v.iter().map(|i| i.trim().to_owned()).collect(),
            format!("{v:?}"),
        ),
    };
    let invalid = |message: String| ConfigError::invalid(key, message);
    if items.iter().all(String::is_empty) {
        return Err(invalid(format!("must list at least one {what}")));
    }
    if items.iter().any(String::is_empty) {
        return Err(invalid(format!("empty {what} name in `{written}`")));
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = items.iter().find(|i| !seen.insert(i.as_str())) {
        return Err(invalid(format!("{what} `{dup}` is listed twice")));
    }
    Ok(items)
}

/// Kafka's rule for topic names.
pub(super) fn is_valid_topic(topic: &str) -> bool {
    topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Splits `db.host` (`host`, `host:port`, `[ipv6]:port` or a bare IPv6
/// address) into host and port; the message says what is wrong.
pub(super) fn parse_host(value: &str) -> Result<(String, u16), String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.chars().any(char::is_whitespace) {
        return Err(format!("`{value}` contains whitespace"));
    }
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("`{p}` in `{value}` is not a port number (1-65535)"))
    };
    if let Some(rest) = value.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{value}` lacks the `]` closing the IPv6 address"))?;
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(format!("`{addr}` in `{value}` is not an IPv6 address"));
        }
        let port = match after {
            "" => DEFAULT_PORT,
            _ => port(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("expected `:port` after `]` in `{value}`"))?,
            )?,
        };
        return Ok((addr.to_owned(), port));
    }
    match value.split_once(':') {
        None => Ok((value.to_owned(), DEFAULT_PORT)),
        Some(_) if value.parse::<Ipv6Addr>().is_ok() => Ok((value.to_owned(), DEFAULT_PORT)),
        Some((_, rest)) if rest.contains(':') => Err(format!(
            "`{value}`: write an IPv6 address in brackets, e.g. `[::1]:5432`"
        )),
        Some(("", _)) => Err(format!("`{value}` has no host name before `:`")),
        Some((host, p)) => Ok((host.to_owned(), port(p)?)),
    }
}

/// `host` for a `host:port` string: IPv6 addresses in brackets.
pub(super) fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

const METRICS_ADDRESS: &str = "metrics.address";

/// Where to serve Prometheus metrics (`metrics.address`): an IP address or a
/// host name, and a port. Parsing checks the syntax only; the name is
/// resolved by [`MetricsAddress::resolve`] when the endpoint starts, so that
/// reading a configuration never waits for DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsAddress {
    /// IP address or host name, without brackets.
    host: String,
    port: u16,
}

impl MetricsAddress {
    /// The address to listen on: the IP address, or the host name's first address.
    pub fn resolve(&self) -> Result<SocketAddr, ConfigError> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        let host = &self.host;
        let invalid = |message: String| ConfigError::invalid(METRICS_ADDRESS, message);
        (host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| invalid(format!("cannot resolve `{host}`: {e}")))?
            .next()
            .ok_or_else(|| invalid(format!("`{host}` resolves to no address")))
    }
}

impl From<SocketAddr> for MetricsAddress {
    fn from(address: SocketAddr) -> Self {
        MetricsAddress {
            host: address.ip().to_string(),
            port: address.port(),
        }
    }
}

impl fmt::Display for MetricsAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", bracketed(&self.host), self.port)
    }
}

impl FromStr for MetricsAddress {
    type Err = ConfigError;

    /// `host:port` (an IP address, `[ipv6]:port`, or a name), surrounding
    /// whitespace ignored; errors name `metrics.address`.
    fn from_str(value: &str) -> Result<Self, ConfigError> {
        let value = value.trim();
        let invalid = |message: String| ConfigError::invalid(METRICS_ADDRESS, message);
        let example = "e.g. \"127.0.0.1:9187\"";
        let address = match value.parse::<SocketAddr>() {
            Ok(address) => MetricsAddress::from(address),
            Err(_) => {
                let Some((host, port)) = value.rsplit_once(':') else {
                    return Err(invalid(format!(
                        "`{value}` lacks a port; write host:port, {example}"
                    )));
                };
                if host.is_empty() {
                    return Err(invalid(format!(
                        "`{value}` has no host; write 0.0.0.0:{port} to listen on every IPv4 \
                         address, or 127.0.0.1:{port} for this machine only"
                    )));
                }
                if host.contains(':') {
                    return Err(invalid(format!(
                        "`{value}` is not host:port; write an IPv6 address in brackets, \
                         e.g. \"[::1]:9187\""
                    )));
                }
                let port = port.parse::<u16>().map_err(|_| {
                    invalid(format!(
                        "`{port}` in `{value}` is not a port number (1-65535)"
                    ))
                })?;
                MetricsAddress {
                    host: host.to_owned(),
                    port,
                }
            }
        };
        if address.port == 0 {
            return Err(invalid(format!(
                "`{value}`: port 0 would pick a random port; choose one, {example}"
            )));
        }
        Ok(address)
    }
}

/// Error returned by [`Delivery::from_str`], [`ErrorTolerance::from_str`]
/// and [`SslMode::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value `{value}`; expected {expected}")]
pub struct ParseEnumError {
    value: String,
    expected: &'static str,
}

/// The enumerations written in configuration files by a lowercase name,
/// read case-insensitively with surrounding whitespace ignored.
trait Named: Copy + 'static {
    const ALL: &'static [Self];
    /// The accepted names, for the error message.
    const EXPECTED: &'static str;
    fn name(self) -> &'static str;

    fn parse_name(s: &str) -> Result<Self, ParseEnumError> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseEnumError {
                value: s.to_owned(),
                expected: Self::EXPECTED,
            })
    }
}

/// `as_str`, `Display` and `FromStr` of an enumeration from its names.
macro_rules! named {
    ($ty:ident, $expected:literal, $($variant:ident => $name:literal),+ $(,)?) => {
        impl Named for $ty {
            const ALL: &'static [Self] = &[$($ty::$variant),+];
            const EXPECTED: &'static str = $expected;
            fn name(self) -> &'static str {
                self.as_str()
            }
        }

        impl $ty {
            /// The lowercase name used in configuration files.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = ParseEnumError;

            /// Case-insensitive, surrounding whitespace ignored.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse_name(s)
            }
        }
    };
}

named!(
    Delivery,
    "`fastest`, `guaranteed` or `synchronized`",
    Fastest => "fastest",
    Guaranteed => "guaranteed",
    Synchronized => "synchronized",
);
named!(ErrorTolerance, "`none` or `all`", None => "none", All => "all");
named!(
    WriteMode,
    "`append`, `upsert` or `ignore`",
    Append => "append",
    Upsert => "upsert",
    Ignore => "ignore",
);
named!(
    SslMode,
    "`disable`, `prefer`, `require` or `verify-full`",
    Disable => "disable",
    Prefer => "prefer",
    Require => "require",
    VerifyFull => "verify-full",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_parses_case_insensitively_and_prints_lowercase() {
        assert_eq!("FASTEST".parse::<Delivery>(), Ok(Delivery::Fastest));
        assert_eq!(" Guaranteed ".parse::<Delivery>(), Ok(Delivery::Guaranteed));
        assert_eq!("synchronized".parse(), Ok(Delivery::Synchronized));
        assert_eq!(Delivery::Guaranteed.to_string(), "guaranteed");
        let err = "exactly-once".parse::<Delivery>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown value `exactly-once`; expected `fastest`, `guaranteed` or `synchronized`"
        );
        assert_eq!(Delivery::default(), Delivery::Synchronized);
    }

    #[test]
    fn error_tolerance_parses_case_insensitively() {
        assert_eq!("NONE".parse(), Ok(ErrorTolerance::None));
        assert_eq!("All".parse(), Ok(ErrorTolerance::All));
        assert_eq!(ErrorTolerance::None.to_string(), "none");
        assert!("some".parse::<ErrorTolerance>().is_err());
    }

    #[test]
    fn ssl_mode_parses_case_insensitively_and_prints_lowercase() {
        assert_eq!("disable".parse(), Ok(SslMode::Disable));
        assert_eq!(" Prefer ".parse(), Ok(SslMode::Prefer));
        assert_eq!("REQUIRE".parse(), Ok(SslMode::Require));
        assert_eq!("Verify-Full".parse(), Ok(SslMode::VerifyFull));
        assert_eq!(SslMode::VerifyFull.to_string(), "verify-full");
        assert_eq!(SslMode::Disable.to_string(), "disable");
        assert_eq!(SslMode::default(), SslMode::Prefer);
        for bad in ["verify_full", "verify-ca", "allow", ""] {
            assert!(bad.parse::<SslMode>().is_err(), "{bad}");
        }
    }

    /// Resolution happens when the endpoint starts, and fails there with a
    /// message naming the key.
    #[test]
    fn metrics_address_resolves_when_asked() {
        let resolved = "localhost:9187"
            .parse::<MetricsAddress>()
            .unwrap()
            .resolve()
            .unwrap();
        assert!(resolved.ip().is_loopback(), "{resolved}");
        assert_eq!(resolved.port(), 9187);
        let address: MetricsAddress = "no-such-host.invalid:9187".parse().unwrap();
        let err = address.resolve().unwrap_err().to_string();
        assert!(
            err.contains("metrics.address: cannot resolve `no-such-host.invalid`"),
            "{err}"
        );
        assert_eq!(address.to_string(), "no-such-host.invalid:9187");
        let v6: MetricsAddress = "[::1]:9187".parse().unwrap();
        assert_eq!(v6.to_string(), "[::1]:9187");
        assert_eq!(v6.resolve().unwrap(), "[::1]:9187".parse().unwrap());
    }
}
