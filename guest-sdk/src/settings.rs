//! Converter settings and target columns as a converter sees them.

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

/// A target column of the sink table.
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
