//! Loading files: formats, paths relative to the file, the password variable.

use super::test_support::{err_text, minimal_with, settings, MINIMAL};
use super::*;
use std::net::SocketAddr;

/// The error without the [`ConfigError::InFile`] wrapper.
fn root(error: &ConfigError) -> &ConfigError {
    match error {
        ConfigError::InFile { error, .. } => root(error),
        other => other,
    }
}

#[test]
fn plugin_config_default_has_the_default_limits() {
    let plugin = ConverterConfig::default();
    assert_eq!(plugin.path, None);
    assert!(plugin.settings.is_empty());
    assert_eq!(plugin.timeout, Some(Duration::from_secs(10)));
    assert_eq!(plugin.memory_limit, 512 << 20);
    assert_eq!(minimal_with("").converter, plugin_with_parse_paths());

    fn plugin_with_parse_paths() -> ConverterConfig {
        ConverterConfig {
            settings: vec![("db.json.parse".into(), "/@a,/@b".into())],
            write_modes: vec![super::WriteMode::Append],
            ..ConverterConfig::default()
        }
    }
}

#[test]
fn error_labels() {
    assert_eq!(
        sinks::sink_label(2, Some("orders")),
        "sink[2] (name \"orders\")"
    );
    assert_eq!(sinks::sink_label(1, None), "sink[1]");
    let err = ConfigError::InSink {
        index: 3,
        name: None,
        inherited: false,
        error: Box::new(ConfigError::Missing {
            keys: vec!["db.table"],
        }),
    };
    assert_eq!(err.to_string(), "sink[3]: missing required key `db.table`");
}

#[test]
fn password_env_overrides_only_when_non_empty() {
    let mut config = minimal_with(r#"db.password = "file""#);
    config.apply_password_env(None);
    assert_eq!(config.db.password.as_deref(), Some("file"));
    config.apply_password_env(Some(String::new()));
    assert_eq!(config.db.password.as_deref(), Some("file"));
    config.apply_password_env(Some("env".into()));
    assert_eq!(config.db.password.as_deref(), Some("env"));

    let mut config = minimal_with("");
    assert_eq!(config.db.password, None);
    config.apply_password_env(Some("env".into()));
    assert_eq!(config.db.password.as_deref(), Some("env"));
}

#[test]
fn missing_message_lists_keys() {
    let err = ConfigError::Missing {
        keys: vec!["topics", "db.table"],
    };
    assert_eq!(
        err.to_string(),
        "missing required keys `topics`, `db.table`"
    );
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pgsink-config-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn load_picks_format_by_extension_and_resolves_plugin_path() {
    let dir = temp_dir("load");
    let toml_path = dir.join("sink.toml");
    std::fs::write(
        &toml_path,
        format!("{MINIMAL}\nplugin.path = \"plugins/conv.wasm\"\n"),
    )
    .unwrap();
    let config = load(&toml_path).unwrap();
    assert_eq!(config.converter.path, Some(dir.join("plugins/conv.wasm")));

    let abs = dir.join("abs.toml");
    std::fs::write(
        &abs,
        format!("{MINIMAL}\nplugin.path = \"/opt/conv.wasm\"\n"),
    )
    .unwrap();
    assert_eq!(
        load(&abs).unwrap().converter.path,
        Some(PathBuf::from("/opt/conv.wasm"))
    );

    let props = dir.join("sink.properties");
    std::fs::write(
        &props,
        "topics=t\ndb.database=d\ndb.username=u\ndb.table=tab\ndb.columns=a,b\ndb.json.parse=/@a,/@b\n",
    )
    .unwrap();
    let from_props = load(&props).unwrap();
    let mut expected = parse_toml(MINIMAL).unwrap();
    expected.db.password.clone_from(&from_props.db.password); // PGSINK_DB_PASSWORD may be set
    assert_eq!(from_props, expected);

    // The same properties text read as TOML is a TOML error naming the file.
    let wrong = dir.join("sink.conf");
    std::fs::copy(&props, &wrong).unwrap();
    let err = load(&wrong).unwrap_err();
    assert!(matches!(root(&err), ConfigError::Toml(_)), "{err:?}");
    assert!(
        err.to_string().starts_with(&wrong.display().to_string()),
        "{err}"
    );

    let err = load(&dir.join("absent.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("absent.toml"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn load_process_reads_every_sink_and_resolves_paths() {
    let dir = temp_dir("process");
    let path = dir.join("sinks.toml");
    let text = r#"
        db.database = "d"
        db.username = "u"
        db.sslmode = "verify-full"
        db.sslrootcert = "certs/ca.pem"
        metrics.address = "127.0.0.1:9187"

        [[sink]]
        name = "a"
        topics = "a"
        db.table = "a"
        db.columns = "x"
        db.json.parse = "/@x"
        plugin.path = "conv.wasm"

        [[sink]]
        name = "b"
        topics = "b"
        db.table = "b"
        db.columns = "x"
        db.json.parse = "/@x"
        db.sslrootcert = "/etc/ssl/pg.pem"
    "#;
    std::fs::write(&path, text).unwrap();
    let process = load_process(&path).unwrap();
    assert_eq!(
        process.metrics_address,
        Some(SocketAddr::from(([127, 0, 0, 1], 9187)).into())
    );
    let [a, b] = &process.sinks[..] else {
        panic!("{process:?}");
    };
    assert_eq!(a.converter.path, Some(dir.join("conv.wasm")));
    assert_eq!(a.db.sslrootcert, Some(dir.join("certs/ca.pem")));
    assert_eq!(b.converter.path, None);
    assert_eq!(b.db.sslrootcert, Some(PathBuf::from("/etc/ssl/pg.pem")));

    // load wants exactly one sink.
    let err = load(&path).unwrap_err();
    assert!(
        matches!(root(&err), ConfigError::SeveralSinks { count: 2 }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{}: this file declares 2 sinks ([[sink]] sections); only a file with a single \
             sink can be used here",
            path.display()
        )
    );

    // Errors name the file, then the sink.
    let broken = dir.join("broken.toml");
    std::fs::write(&broken, text.replace("db.table = \"b\"", "")).unwrap();
    let err = load_process(&broken).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: sink[2] (name \"b\"): missing required key `db.table`",
            broken.display()
        )
    );

    // A properties file is a process with one sink and no metrics endpoint.
    let props = dir.join("sink.properties");
    std::fs::write(
        &props,
        "topics=t\ndb.database=d\ndb.username=u\ndb.table=tab\ndb.columns=a,b\n\
         db.json.parse=/@a,/@b\ndb.sslmode=verify-full\ndb.sslrootcert=ca.pem\n",
    )
    .unwrap();
    let process = load_process(&props).unwrap();
    assert_eq!(process.metrics_address, None);
    assert_eq!(process.sinks.len(), 1);
    assert_eq!(process.sinks[0].db.sslrootcert, Some(dir.join("ca.pem")));
    assert_eq!(load(&props).unwrap(), process.sinks[0]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn load_reads_latin1_properties() {
    let dir = temp_dir("latin1");
    let path = dir.join("sink.properties");
    let mut bytes =
        b"topics=t\ndb.database=d\ndb.username=u\ndb.table=tab\ndb.columns=caf".to_vec();
    bytes.push(0xE9); // é in ISO-8859-1, as Java writes it
    bytes.extend_from_slice(b"\ndb.json.parse=/@c\n");
    std::fs::write(&path, bytes).unwrap();
    assert_eq!(load(&path).unwrap().db.tables[0].columns, ["café"]);
    std::fs::remove_dir_all(dir).unwrap();
}

/// `pgsink convert --plugin` overrides `plugin.path` however the file spells it.
#[test]
fn load_with_converter_overrides_every_spelling_of_plugin_path() {
    let dir = temp_dir("with-converter");
    for spelling in [
        "plugin.path = \"old.wasm\"",
        "\"plugin.path\" = \"old.wasm\"",
        "",
    ] {
        let path = dir.join("sink.toml");
        std::fs::write(&path, format!("{spelling}\n{MINIMAL}")).unwrap();
        let config = load_with_converter(&path, Path::new("/opt/new.wasm"))
            .unwrap_or_else(|e| panic!("{spelling:?}: {e}"));
        assert_eq!(config.converter.path, Some(PathBuf::from("/opt/new.wasm")));
    }
}

#[test]
fn json_settings_reach_the_converter_checked() {
    let config = minimal_with(
        "db.json.envelope = \" Debezium \"\ndb.json.tombstone = \"delete\"\ndb.json.cast = \"a:epoch-ms\"",
    );
    assert_eq!(
        settings(&config),
        [
            ("db.json.parse", "/@a,/@b"),
            ("db.json.envelope", "debezium"),
            ("db.json.tombstone", "delete"),
            ("db.json.cast", "a:epoch-ms"),
        ]
    );
    let error = err_text(&format!("{MINIMAL}db.json.envelope = \"avro\"\n"));
    assert!(
        error.contains("must be one of none, debezium, connect, got \"avro\""),
        "{error}"
    );
    let error = err_text(&format!(
        "{MINIMAL}plugin.settings.\"db.json.cast\" = \"a:array\"\n"
    ));
    assert!(
        error.contains("set the top-level db.json.cast instead"),
        "{error}"
    );
}
