//! A table the sink writes: its columns' types, its key and the unique index that key
//! matches.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::{quote_ident, DbError};
use crate::config::{TableConfig, WriteMode};
use crate::converter::{Column, Table};

/// A table the sink writes and the columns each row fills, in order.
#[derive(Debug, Clone)]
pub struct Target {
    /// Schema name, unquoted.
    pub schema: String,
    /// Table name, unquoted.
    pub table: String,
    /// Column names, unquoted, in row order.
    pub columns: Vec<String>,
    /// The PostgreSQL type of each column (`format_type`), in row order.
    pub column_types: Vec<String>,
    /// The type of each column with domains resolved to their base type, in row order: what
    /// a keyed mode's staging table holds (a domain's NOT NULL or CHECK is the table's to
    /// enforce, and a delete's non-key columns are NULL).
    pub base_types: Vec<String>,
    /// The key's columns, as indexes in `columns`, in key order: `db.key.columns`, or the
    /// primary key's. Empty when neither names one the sink fills (possible only in append mode).
    pub key: Vec<u32>,
    /// The unique index over exactly the key's columns (keyed write modes only: it is what
    /// `ON CONFLICT` finds), as `schema.name`.
    pub key_index: Option<String>,
    /// How rows are applied to it.
    pub write_mode: WriteMode,
}

impl Target {
    /// Looks the table up, checks that every configured column exists and, in a keyed write
    /// mode, that the key is loaded and has a unique index over exactly its columns.
    pub async fn resolve(client: &Client, db: &TableConfig) -> Result<Target, DbError> {
        let (schema, table, columns) = (&db.schema, &db.table, &db.columns);
        let other = |e: tokio_postgres::Error| DbError::Other(e.to_string());
        let rows = client
            .query(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod),
                        (WITH RECURSIVE d(t, m) AS (
                              SELECT a.atttypid, a.atttypmod
                              UNION ALL
                              SELECT y.typbasetype, y.typtypmod FROM d JOIN pg_type y ON y.oid = d.t
                               WHERE y.typtype = 'd')
                         SELECT format_type(d.t, d.m) FROM d JOIN pg_type y ON y.oid = d.t
                          WHERE y.typtype <> 'd'),
                        CASE WHEN a.attgenerated <> '' THEN 'GENERATED ALWAYS AS (…)'
                             WHEN a.attidentity = 'a' THEN 'GENERATED ALWAYS AS IDENTITY'
                             ELSE '' END
                   FROM pg_attribute a
                   JOIN pg_class c ON c.oid = a.attrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
                    AND a.attnum > 0 AND NOT a.attisdropped
                  ORDER BY a.attnum",
                &[schema, table],
            )
            .await
            .map_err(other)?;
        let name = format!("{}.{}", quote_ident(schema), quote_ident(table));
        if rows.is_empty() {
            return Err(DbError::Table(format!(
                "the table {name} does not exist (create it first; db.schema and db.table name it)"
            )));
        }
        // Per column: its type, its base type, how the database writes it itself ('' if not).
        let existing: HashMap<String, (String, String, String)> = rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
            .collect();
        let missing: Vec<&str> = columns
            .iter()
            .filter(|c| !existing.contains_key(c.as_str()))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            let have: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
            return Err(DbError::Table(format!(
                "the table {name} has no column {} (its columns: {}; names are case-sensitive)",
                missing.join(", "),
                have.join(", ")
            )));
        }
        // Every unique index without expressions or a predicate, the primary key first, each
        // with its key columns in index order and whether ON CONFLICT can use it (valid, not
        // deferrable).
        let unique: Vec<(String, bool, Vec<String>, bool)> = client
            .query(
                "SELECT i.indexrelid::regclass::text, i.indisprimary,
                        array(SELECT a.attname
                                FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n)
                                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                               WHERE k.n <= i.indnkeyatts ORDER BY k.n),
                        i.indisvalid AND i.indislive AND i.indimmediate
                   FROM pg_index i
                   JOIN pg_class c ON c.oid = i.indrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique
                    AND i.indpred IS NULL AND i.indexprs IS NULL
                  ORDER BY i.indisprimary DESC, 1",
                &[schema, table],
            )
            .await
            .map_err(other)?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let primary_key = unique.iter().find(|(_, primary, _, _)| *primary);
        let position = |k: &String| columns.iter().position(|c| c == k).map(|i| i as u32);
        let (key, key_index) = if db.write_mode.is_keyed() {
            let names: &[String] = match (&db.key_columns, primary_key) {
                (Some(names), _) => names,
                (None, Some((_, _, names, _))) => names,
                (None, None) => {
                    return Err(DbError::Table(format!(
                        "db.write.mode = \"{}\" needs a key, and {name} has no primary key \
                         (set db.key.columns to the columns of a unique index)",
                        db.write_mode
                    )))
                }
            };
            let Some(key) = names.iter().map(position).collect::<Option<Vec<u32>>>() else {
                let absent: Vec<&str> = names
                    .iter()
                    .filter(|k| position(k).is_none())
                    .map(String::as_str)
                    .collect();
                return Err(DbError::Table(format!(
                    "the key of {name} is ({}) and db.columns lacks {} (a key must be loaded \
                     to be matched; add it, or set db.key.columns)",
                    names.join(", "),
                    absent.join(", ")
                )));
            };
            let mut wanted = names.to_vec();
            wanted.sort();
            let over_key = |(_, _, columns, _): &&(String, bool, Vec<String>, bool)| {
                let mut columns = columns.clone();
                columns.sort();
                columns == wanted
            };
            let index = unique
                .iter()
                .filter(over_key)
                .find(|(_, _, _, usable)| *usable);
            if let (None, Some((unusable, ..))) = (index, unique.iter().find(over_key)) {
                return Err(DbError::Table(format!(
                    "the unique index {unusable} over the key of {name} is deferrable or not valid, \
                     and ON CONFLICT cannot use it (make it NOT DEFERRABLE, or rebuild it)"
                )));
            }
            let Some((index, ..)) = index else {
                let quoted: Vec<String> = names.iter().map(|k| quote_ident(k)).collect();
                return Err(DbError::Table(format!(
                    "{name} has no unique index over exactly ({}), which db.write.mode = \"{}\" \
                     needs to find a key's row (CREATE UNIQUE INDEX ON {name} ({}))",
                    names.join(", "),
                    db.write_mode,
                    quoted.join(", ")
                )));
            };
            // The staging tags have these names; a column the database writes itself cannot be
            // given a value by INSERT … SELECT (COPY refuses it in every mode).
            if let Some(clash) = columns
                .iter()
                .find(|c| c.as_str() == "pgsink delete" || c.as_str() == "pgsink seq")
            {
                return Err(DbError::Table(format!(
                    "db.columns has a column named \"{clash}\", which db.write.mode = \"{}\" uses for its staging table; rename it",
                    db.write_mode
                )));
            }
            // A generated column cannot be written at all; an identity column can be inserted
            // (OVERRIDING SYSTEM VALUE) but not updated, so upsert cannot change one.
            let written_by_db = |i: usize| {
                let how = &existing[columns[i].as_str()].2;
                let updated = db.write_mode == WriteMode::Upsert && !key.contains(&(i as u32));
                (how.starts_with("GENERATED ALWAYS AS (") || (!how.is_empty() && updated))
                    .then_some(how)
            };
            if let Some((i, how)) =
                (0..columns.len()).find_map(|i| written_by_db(i).map(|h| (i, h)))
            {
                return Err(DbError::Table(format!(
                    "the column {} of {name} is {how}: db.write.mode = \"{}\" cannot write it (remove it from db.columns)",
                    columns[i], db.write_mode
                )));
            }
            (key, Some(index.clone()))
        } else {
            let key = primary_key
                .and_then(|(_, _, names, _)| names.iter().map(position).collect::<Option<_>>());
            (key.unwrap_or_default(), None)
        };
        Ok(Target {
            schema: schema.to_string(),
            table: table.to_string(),
            columns: columns.to_vec(),
            column_types: columns.iter().map(|c| existing[c].0.clone()).collect(),
            base_types: columns.iter().map(|c| existing[c].1.clone()).collect(),
            key,
            key_index,
            write_mode: db.write_mode,
        })
    }

    /// The table as a converter is told about it: columns with their types, in row order,
    /// and the key.
    pub fn converter_table(&self) -> Table {
        Table {
            schema: self.schema.clone(),
            name: self.table.clone(),
            columns: self
                .columns
                .iter()
                .zip(&self.column_types)
                .map(|(name, type_name)| Column {
                    name: name.clone(),
                    type_name: Some(type_name.clone()),
                })
                .collect(),
            key: self.key.clone(),
        }
    }

    /// `"schema"."table"`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }

    /// The `COPY … FROM STDIN` statement of this target.
    pub fn copy_statement(&self) -> String {
        let columns: Vec<String> = self.columns.iter().map(|c| quote_ident(c)).collect();
        format!(
            "COPY {} ({}) FROM STDIN",
            self.qualified(),
            columns.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_always_quoted() {
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(
            quote_ident("My \"odd\"; table"),
            "\"My \"\"odd\"\"; table\""
        );
        let target = Target {
            schema: "S p".into(),
            table: "t\"1".into(),
            columns: vec!["Id".into(), "a;b".into()],
            column_types: vec!["bigint".into(), "text".into()],
            base_types: vec!["bigint".into(), "text".into()],
            key: vec![0],
            key_index: None,
            write_mode: WriteMode::Append,
        };
        assert_eq!(
            target.copy_statement(),
            "COPY \"S p\".\"t\"\"1\" (\"Id\", \"a;b\") FROM STDIN"
        );
    }
}
