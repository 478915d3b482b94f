//! The three ways to name a sink's tables, and what is refused.

use super::super::test_support::{assert_contains, err_text, settings};
use super::super::{parse_toml, SinkConfig, WriteMode};

const CONNECTION: &str = r#"
db.database = "shop"
db.username = "sink"
"#;

fn ok(text: &str) -> SinkConfig {
    parse_toml(&format!("{CONNECTION}{text}")).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    err_text(&format!("{CONNECTION}{text}"))
}

/// Orders and their lines: one message makes an order row and line rows.
const ORDERS: &str = r#"
name = "shop"
topics = ["orders", "returns"]
db.write.mode = "upsert"
db.tables = ["orders", "order_lines"]

[table.order_lines]
columns = ["order_id", "line", "sku"]
json.parse = "/@id,/@line,/@sku"
write.mode = "append"
schema = "sales"

[table.orders]
columns = "id,total"
json.parse = "/@id,/@total"
json.cast = "total:numeric"
key.columns = "id"
"#;

#[test]
fn declared_tables_keep_the_order_of_db_tables() {
    let c = ok(ORDERS);
    let names: Vec<&str> = c.db.tables.iter().map(|t| t.table.as_str()).collect();
    assert_eq!(names, ["orders", "order_lines"], "not the sections' order");
    let (orders, lines) = (&c.db.tables[0], &c.db.tables[1]);
    assert_eq!(orders.schema, "public");
    assert_eq!(orders.columns, ["id", "total"]);
    assert_eq!(
        orders.write_mode,
        WriteMode::Upsert,
        "db.write.mode is the default"
    );
    assert_eq!(orders.key_columns.as_deref(), Some(&["id".to_string()][..]));
    assert_eq!(lines.schema, "sales");
    assert_eq!(
        lines.columns,
        ["order_id", "line", "sku"],
        "an array joined"
    );
    assert_eq!(lines.write_mode, WriteMode::Append);
    assert!(orders.topics.is_empty() && lines.takes("returns"));
    assert_eq!(
        c.converter.write_modes,
        [WriteMode::Upsert, WriteMode::Append]
    );
    assert_eq!(
        settings(&c),
        [
            ("table.orders.json.parse", "/@id,/@total"),
            ("table.orders.json.cast", "total:numeric"),
            ("table.order_lines.json.parse", "/@id,/@line,/@sku"),
        ]
    );
    assert_eq!(c.identity(), "shop");
    assert_eq!(c.kafka["group.id"], "connect-shop");
}

#[test]
fn the_first_table_that_takes_a_topic_speaks_for_its_positions() {
    let c = ok(&ORDERS
        .replace(
            "schema = \"sales\"",
            "schema = \"sales\"\ntopics = \"returns\"",
        )
        .replace(
            "key.columns = \"id\"",
            "key.columns = \"id\"\ntopics = \"orders\"",
        ));
    assert_eq!(c.db.position_table("orders").table, "orders");
    assert_eq!(c.db.position_table("returns").table, "order_lines");
    let settings = &c.converter.settings;
    assert!(settings.contains(&("table.order_lines.topics".into(), "returns".into())));
}

#[test]
fn a_table_per_topic() {
    let c = ok(r#"
name = "events"
topics = ["clicks", "page-views"]
db.table = "raw_${topic}"
db.columns = "id,body"
db.json.parse = "/@id,/"
"#);
    let tables: Vec<(&str, &[String])> =
        c.db.tables
            .iter()
            .map(|t| (t.table.as_str(), &t.topics[..]))
            .collect();
    assert_eq!(
        tables,
        [
            ("raw_clicks", &["clicks".to_string()][..]),
            ("raw_page-views", &["page-views".to_string()][..]),
        ]
    );
    assert_eq!(c.db.position_table("page-views").table, "raw_page-views");
    assert!(c
        .converter
        .settings
        .contains(&("table.raw_clicks.topics".into(), "clicks".into())));
    assert_contains(
        &err(&format!(
            "name = \"events\"\n{}",
            per_topic("\"clicks\", \"^page-.*\"")
        )),
        "db.table: ${topic} makes a table per topic, and `^page-.*` is a pattern",
    );
}

/// A table per topic of `topics` (a TOML array's items), one column.
fn per_topic(topics: &str) -> String {
    format!("topics = [{topics}]\ndb.table = \"raw_${{topic}}\"\ndb.columns = \"id\"\ndb.json.parse = \"/@id\"\n")
}

#[test]
fn a_sink_of_several_tables_has_a_name() {
    assert_contains(
        &err(&ORDERS.replace("name = \"shop\"", "")),
        "name: is required for a sink that writes several tables",
    );
    assert_contains(&err(&per_topic("\"clicks\"")), "name: is required");
}

#[test]
fn declared_tables_refuse_what_they_cannot_mean() {
    let cases = [
        (
            ORDERS.replace("db.tables = [\"orders\", \"order_lines\"]", "db.tables = [\"orders\"]"),
            "table.order_lines.columns: `order_lines` is not listed in db.tables (orders)",
        ),
        (
            ORDERS.replace("db.tables = [", "db.tables = [\"refunds\", "),
            "table.refunds.columns: is required",
        ),
        (
            ORDERS.replace("schema = \"sales\"", "colums = \"x\""),
            "table.order_lines.colums: unknown key; a table takes schema, columns",
        ),
        (
            format!("db.table = \"x\"\n{ORDERS}"),
            "db.table: cannot be used with db.tables",
        ),
        (
            ORDERS.replace("schema = \"sales\"", "topics = \"payments\""),
            "table.order_lines.topics: `payments` is not one of the sink's topics",
        ),
        (
            ORDERS.replace("schema = \"sales\"", "topics = \"returns\"").replace(
                "key.columns = \"id\"",
                "key.columns = \"id\"\ntopics = \"returns\"",
            ),
            "db.tables: no table takes the messages of `orders`",
        ),
        (
            ORDERS.replace("/@id,/@line,/@sku", "/@id,/@line"),
            "table.order_lines.json.parse: has 2 parse paths and the table 3 columns",
        ),
        (
            ORDERS.replace("write.mode = \"append\"", "write.mode = \"append\"\nkey.columns = \"sku\""),
            "table.order_lines.key.columns: is used only with table.order_lines.write.mode = \"upsert\"",
        ),
        (
            ORDERS.replace("key.columns = \"id\"", "key.columns = \"sku\""),
            "table.orders.key.columns: `sku` is not one of table.orders.columns",
        ),
        (
            ORDERS.replace("json.parse = \"/@id,/@line,/@sku\"\n", ""),
            "table.order_lines.json.parse: is required",
        ),
        (
            ORDERS.replace("db.tables = [\"orders\", \"order_lines\"]", ""),
            "table.order_lines.columns: a [table.NAME] section is read only when db.tables lists NAME",
        ),
    ];
    let long = format!("t{}", "x".repeat(63));
    let mut cases = cases.to_vec();
    cases.push((
        ORDERS.replace("order_lines", &long),
        "has 64 bytes, and PostgreSQL names have at most 63",
    ));
    cases.push((
        ORDERS.replace("\"order_lines\"]", "\"sales.lines\"]"),
        "db.tables: `sales.lines` has a dot",
    ));
    cases.push((
        ORDERS.replace(
            "[\"order_id\", \"line\", \"sku\"]",
            "[\"order_id\", \"line,sku\"]",
        ),
        "table.order_lines.columns: an array holds names, and a name here cannot contain a comma",
    ));
    cases.push((
        format!("plugin.settings.\"table.orders.topics\" = \"x\"\n{ORDERS}"),
        "plugin.settings.table.orders.topics: a table's settings go in its [table.NAME] section",
    ));
    for (text, expected) in cases {
        assert_contains(&err(&text), expected);
    }
    // Another converter reads what it likes: no parse paths needed.
    let c = ok(&format!(
        "plugin.path = \"c.wasm\"\n{}",
        ORDERS.replace("json.parse = \"/@id,/@line,/@sku\"\n", "")
    ));
    assert_eq!(c.db.tables.len(), 2);
}
