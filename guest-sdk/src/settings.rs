//! Converter settings and the sink's tables as a converter sees them.

/// The converter settings from the pgsink configuration, as key and value strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    entries: Vec<(String, String)>,
}

impl Settings {
    /// Settings from key and value pairs.
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Settings { entries }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("the converter setting `{key}` is required"))
    }

    /// All settings, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Settings {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Settings::new(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// A table the sink writes: rows for it give one field per column, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Schema name, unquoted.
    pub schema: String,
    /// Table name, unquoted.
    pub name: String,
    pub columns: Vec<Column>,
    /// The key columns (the primary key), as indexes in `columns`; empty when unknown.
    pub key: Vec<usize>,
}

impl Table {
    /// A table `test` in schema `public` with these columns, no types and no key (for tests).
    pub fn named(columns: &[&str]) -> Table {
        Table {
            schema: "public".into(),
            name: "test".into(),
            columns: Column::names(columns),
            key: Vec::new(),
        }
    }

    /// Declares the key: the columns named, in key order (for tests). Unknown names are ignored.
    pub fn with_key(mut self, key: &[&str]) -> Table {
        self.key = key
            .iter()
            .filter_map(|k| self.columns.iter().position(|c| c.name == *k))
            .collect();
        self
    }

    /// An error unless the table has exactly `count` columns, naming them, for `configure`.
    pub fn require_columns(&self, count: usize) -> Result<(), String> {
        if self.columns.len() == count {
            return Ok(());
        }
        let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        Err(format!(
            "this converter writes {count} column(s) and the table {}.{} lists {}: {}",
            self.schema,
            self.name,
            names.len(),
            names.join(", ")
        ))
    }

    /// The index of the column named `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// A column of a table the sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column name, exactly as in the table.
    pub name: String,
    /// The PostgreSQL type name, when the host knows it.
    pub type_name: Option<String>,
}

impl Column {
    /// Columns with these names and unknown types (handy in tests).
    pub fn names(names: &[&str]) -> Vec<Column> {
        names
            .iter()
            .map(|name| Column {
                name: name.to_string(),
                type_name: None,
            })
            .collect()
    }
}
