//! The tables a sink writes, and what its converter is told about each.
//!
//! Three ways to name them, one result (a list of [`TableConfig`], written in that order by
//! every flush, in one transaction):
//!
//! * `db.table` and `db.columns`: one table, as the original connector has.
//! * `db.table` with `${topic}` in it: one table per topic of `topics`, each filled only by
//!   its topic's messages (Kafka Connect's `table.name.format`). Patterns are refused: the
//!   tables must be known, resolved and checked when the sink starts.
//! * `db.tables = ["orders", "order_lines"]` with a `[table.NAME]` section per table: any
//!   number of tables with their own columns, key, write mode and parse paths. The list gives
//!   the order (TOML tables have none): a flush inserts into them in that order and deletes in
//!   the reverse one, so a table that others reference by foreign key comes first.
//!
//! The converter learns each table's parse paths, casts and topics as settings named after the
//! table (`table.NAME.json.parse`, `table.NAME.json.cast`, `table.NAME.topics`); the bundled
//! converter falls back to `db.json.parse` and `db.json.cast` for a table without its own.

use std::collections::BTreeMap;

use super::schema::Schema;
use super::values::{names, non_empty, StringList};
use super::{is_topic_pattern, ConfigError, TableConfig, WriteMode, PARSE_PATHS_SETTING};

/// The sink's tables, and the converter settings that describe them.
type Tables = (Vec<TableConfig>, Vec<(String, String)>);

/// What `db.table` holds where each topic's name goes.
pub const TOPIC_PLACEHOLDER: &str = "${topic}";

/// The longest table name PostgreSQL keeps (it truncates longer ones, so the sink would not
/// find its table).
const MAX_NAME: usize = 63;

fn too_long(name: &str) -> String {
    format!(
        "the table name `{name}` has {} bytes, and PostgreSQL names have at most {MAX_NAME}",
        name.len()
    )
}

/// The keys of a `[table.NAME]` section.
const SECTION_KEYS: &[&str] = &[
    "schema",
    "columns",
    "write.mode",
    "key.columns",
    "topics",
    "json.parse",
    "json.cast",
];

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(key, message)
}

/// The sink's tables, and the per-table settings its converter is given. `schema` is
/// `db.schema` (or its default), `mode` `db.write.mode`, `topics` the sink's.
pub(super) fn tables(
    s: &Schema,
    schema: &str,
    mode: WriteMode,
    topics: &[String],
) -> Result<Tables, ConfigError> {
    if let Some(list) = &s.db_tables {
        return declared(s, list, schema, mode, topics);
    }
    let table = non_empty("db.table", present(&s.db_table).as_str())?;
    let columns = names("db.columns", "column", present(&s.db_columns))?;
    let key_columns = key_columns(
        ["db.key.columns", "db.write.mode", "db.columns"],
        s.db_key_columns.as_ref(),
        mode,
        &columns,
    )?;
    let one = |table: String, topics: Vec<String>| TableConfig {
        schema: schema.to_owned(),
        table,
        columns: columns.clone(),
        write_mode: mode,
        key_columns: key_columns.clone(),
        topics,
    };
    if !table.contains(TOPIC_PLACEHOLDER) {
        return Ok((vec![one(table, Vec::new())], Vec::new()));
    }
    if let Some(pattern) = topics.iter().find(|t| is_topic_pattern(t)) {
        return Err(invalid(
            "db.table",
            format!(
                "{TOPIC_PLACEHOLDER} makes a table per topic, and `{pattern}` is a pattern \
                 whose topics are not known when the sink starts; list the topics"
            ),
        ));
    }
    let mut tables = Vec::with_capacity(topics.len());
    let mut settings = Vec::with_capacity(topics.len());
    for topic in topics {
        let name = table.replace(TOPIC_PLACEHOLDER, topic);
        if name.len() > MAX_NAME {
            return Err(invalid("db.table", too_long(&name)));
        }
        settings.push((format!("table.{name}.topics"), topic.clone()));
        tables.push(one(name, vec![topic.clone()]));
    }
    Ok((tables, settings))
}

/// A key [`super::validate`] checked for when `db.tables` is absent.
fn present<T>(value: &Option<T>) -> &T {
    value.as_ref().expect("required keys are checked first")
}

/// `db.tables` and the `[table.NAME]` sections.
fn declared(
    s: &Schema,
    list: &StringList,
    schema: &str,
    mode: WriteMode,
    topics: &[String],
) -> Result<Tables, ConfigError> {
    for (present, key) in [
        (s.db_table.is_some(), "db.table"),
        (s.db_columns.is_some(), "db.columns"),
        (s.db_key_columns.is_some(), "db.key.columns"),
    ] {
        if present {
            return Err(invalid(
                key,
                "cannot be used with db.tables: each [table.NAME] section gives its own",
            ));
        }
    }
    let listed = names("db.tables", "table", list)?;
    if let Some(dotted) = listed.iter().find(|name| name.contains('.')) {
        return Err(invalid(
            "db.tables",
            format!("`{dotted}` has a dot, which its [table.NAME] section cannot name; set the section's `schema` for another schema"),
        ));
    }
    let mut sections: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for (key, value) in &s.table {
        let (name, field) = key.split_once('.').unwrap_or((key, ""));
        if !listed.iter().any(|l| l == name) {
            return Err(invalid(
                &format!("table.{key}"),
                format!(
                    "`{name}` is not listed in db.tables ({}); a table's name cannot contain a dot",
                    listed.join(", ")
                ),
            ));
        }
        if !SECTION_KEYS.contains(&field) {
            return Err(invalid(
                &format!("table.{key}"),
                format!("unknown key; a table takes {}", SECTION_KEYS.join(", ")),
            ));
        }
        sections.entry(name).or_default().insert(field, value);
    }
    let mut tables = Vec::with_capacity(listed.len());
    let mut settings = Vec::new();
    for name in &listed {
        let section = sections.get(name.as_str()).cloned().unwrap_or_default();
        let key = |field: &str| format!("table.{name}.{field}");
        let text = |field: &str| {
            section
                .get(field)
                .map(|v| StringList::Joined(v.to_string()))
        };
        let Some(columns) = text("columns") else {
            return Err(invalid(
                &key("columns"),
                "is required: the columns each row of the table fills",
            ));
        };
        let columns = names(&key("columns"), "column", &columns)?;
        let mode = match section.get("write.mode") {
            Some(written) => written
                .parse()
                .map_err(|e| invalid(&key("write.mode"), format!("{e}")))?,
            None => mode,
        };
        let key_columns = key_columns(
            [&key("key.columns"), &key("write.mode"), &key("columns")],
            text("key.columns").as_ref(),
            mode,
            &columns,
        )?;
        let table_topics = match text("topics") {
            Some(list) => names(&key("topics"), "topic", &list)?,
            None => Vec::new(),
        };
        if let Some(stray) = table_topics
            .iter()
            .find(|t| is_topic_pattern(t) || !topics.contains(t))
        {
            return Err(invalid(
                &key("topics"),
                format!("`{stray}` is not one of the sink's topics (patterns cannot be used here)"),
            ));
        }
        if let Some(paths) = section.get("json.parse") {
            let count = paths.split(',').count();
            if paths.trim().is_empty() || count != columns.len() {
                return Err(invalid(
                    &key("json.parse"),
                    format!(
                        "has {count} parse paths and the table {} columns",
                        columns.len()
                    ),
                ));
            }
        } else if s.plugin_path.is_none() {
            match &s.db_json_parse {
                Some(paths) if paths.split(',').count() == columns.len() => {}
                Some(_) => {
                    return Err(invalid(
                        &key("json.parse"),
                        format!(
                            "is required: {PARSE_PATHS_SETTING} has another number of paths than the table's {} columns",
                            columns.len()
                        ),
                    ))
                }
                None => {
                    return Err(invalid(
                        &key("json.parse"),
                        "is required: one parse path per column (or set plugin.path)",
                    ))
                }
            }
        }
        for field in ["json.parse", "json.cast", "topics"] {
            if let Some(value) = section.get(field) {
                settings.push((key(field), value.to_string()));
            }
        }
        tables.push(TableConfig {
            schema: match section.get("schema") {
                Some(schema) => non_empty(&key("schema"), schema)?,
                None => schema.to_owned(),
            },
            table: name.clone(),
            columns,
            write_mode: mode,
            key_columns,
            topics: table_topics,
        });
    }
    // A message no table takes would be consumed and make no row.
    if let Some(long) = tables.iter().find(|t| t.table.len() > MAX_NAME) {
        return Err(invalid(
            &format!("table.{}", long.table),
            too_long(&long.table),
        ));
    }
    if tables.iter().all(|t| !t.topics.is_empty()) {
        if let Some(left) = topics
            .iter()
            .find(|t| !tables.iter().any(|table| table.takes(t)))
        {
            return Err(invalid(
                "db.tables",
                format!(
                    "no table takes the messages of `{left}`: give one table no `topics`, or \
                     name it in a table's `topics`"
                ),
            ));
        }
    }
    Ok((tables, settings))
}

/// The key columns `list` of a table with `columns`, written in `mode`; `[key, mode_key,
/// columns_key]` are the names of the three keys in the file.
fn key_columns(
    [key, mode_key, columns_key]: [&str; 3],
    list: Option<&StringList>,
    mode: WriteMode,
    columns: &[String],
) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(list) = list else {
        return Ok(None);
    };
    if !mode.is_keyed() {
        return Err(invalid(
            key,
            format!(
                "is used only with {mode_key} = \"upsert\" or \"ignore\"; \"append\" loads \
                 every row as it is"
            ),
        ));
    }
    let keys = names(key, "column", list)?;
    if let Some(stray) = keys.iter().find(|k| !columns.contains(k)) {
        return Err(invalid(
            key,
            format!("`{stray}` is not one of {columns_key} (the key must be loaded to be matched)"),
        ));
    }
    Ok(Some(keys))
}

#[cfg(test)]
mod tests;
