//! Parse paths: reading the `db.json.parse` setting and compiling its paths
//! into a tree that the scanner follows while it walks a message.

use std::fmt;

/// The setting that lists the parse paths.
pub const SETTING: &str = "db.json.parse";

/// One step of a parse path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `@key`: the member of an object with this exact key.
    Key(String),
    /// `#index`: the array element at this 0-based index.
    Index(u32),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Key(key) => write!(f, "@{key}"),
            Step::Index(index) => write!(f, "#{index}"),
        }
    }
}

/// One parse path: the route from the top of a message to the value of one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsePath {
    /// The steps from the top-level value; none selects the whole document.
    pub steps: Vec<Step>,
}

impl ParsePath {
    /// Parses one path, such as `/@location/@latitude` or `|@a/b|#0`.
    ///
    /// The first character is the delimiter that separates the steps. It must
    /// not be `@` or `#`. A path that is only its delimiter (`/`) selects the
    /// whole document. Every step is `@key` (any text, possibly empty, taken
    /// exactly) or `#index` (decimal digits only). The error explains what is
    /// wrong without naming the path; [`parse_paths`] adds that.
    pub fn parse(text: &str) -> Result<ParsePath, String> {
        let mut chars = text.chars();
        let delimiter = chars.next().ok_or("the path is empty")?;
        if delimiter == '@' || delimiter == '#' {
            return Err(format!(
                "a path starts with its delimiter (usually `/`, as in /@key), not with `{delimiter}`"
            ));
        }
        let rest = chars.as_str();
        if rest.is_empty() {
            return Ok(ParsePath { steps: Vec::new() });
        }
        let steps = rest
            .split(delimiter)
            .map(|element| parse_step(element, delimiter))
            .collect::<Result<_, _>>()?;
        Ok(ParsePath { steps })
    }
}

fn parse_step(element: &str, delimiter: char) -> Result<Step, String> {
    if let Some(key) = element.strip_prefix('@') {
        return Ok(Step::Key(key.to_owned()));
    }
    if let Some(digits) = element.strip_prefix('#') {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "`{element}` is not an array index: write # and a number from 0, as in #0"
            ));
        }
        return digits
            .parse()
            .map(Step::Index)
            .map_err(|_| format!("the array index `{element}` is too large"));
    }
    if element.is_empty() {
        return Err(format!(
            "it has an empty step (a doubled or trailing delimiter `{delimiter}`)"
        ));
    }
    Err(format!(
        "the step `{element}` must start with @ (an object key) or # (an array index)"
    ))
}

/// Splits the `db.json.parse` setting on commas and parses every path.
///
/// Whitespace around each path is trimmed (so `/@a, /@b` works); a key
/// therefore cannot end a path with whitespace, and no key can contain a comma.
pub fn parse_paths(setting: &str) -> Result<Vec<ParsePath>, String> {
    parse_entries(setting, ParsePath::parse)
}

/// Splits the `db.json.parse` setting on commas, trims every entry and reads it with `parse`;
/// an error names the entry by its number and text.
pub fn parse_entries<T>(
    setting: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    setting
        .split(',')
        .enumerate()
        .map(|(i, text)| {
            let text = text.trim();
            if text.is_empty() {
                return Err(format!("{SETTING}: parse path {} is empty", i + 1));
            }
            parse(text).map_err(|reason| {
                format!(
                    "{SETTING}: parse path {} `{text}` is invalid: {reason}",
                    i + 1
                )
            })
        })
        .collect()
}

/// Index of a node in [`PathTree::nodes`].
pub type NodeId = u32;

/// The root node: the top-level value of a message.
pub const ROOT: NodeId = 0;

/// A position that one or more parse paths reach or pass through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// Columns whose path ends here: they take the value at this position.
    pub columns: Vec<u32>,
    /// Columns whose path ends here or below (cleared when a duplicate key
    /// selects this position again, so that the last occurrence wins).
    pub subtree: Vec<u32>,
    /// Children reached by `@key`, with the key's UTF-8 bytes.
    pub keys: Vec<(Box<[u8]>, NodeId)>,
    /// Children reached by `#index`.
    pub indexes: Vec<(u32, NodeId)>,
}

/// The parse paths of all columns merged into one tree of steps.
///
/// Walking a message, the scanner is at most at one node at a time: paths
/// share their common prefixes, so a value is reached by one route only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTree {
    /// The nodes; [`ROOT`] first.
    pub nodes: Vec<Node>,
    /// The number of columns (paths) compiled.
    pub columns: usize,
}

impl PathTree {
    /// Compiles `paths`; column `i` takes the value at `paths[i]`.
    pub fn compile(paths: &[ParsePath]) -> PathTree {
        let mut nodes = vec![Node::default()];
        for (column, path) in paths.iter().enumerate() {
            let column = u32::try_from(column).expect("fewer than 2^32 columns");
            let mut node = ROOT as usize;
            nodes[node].subtree.push(column);
            for step in &path.steps {
                let existing = match step {
                    Step::Key(key) => nodes[node]
                        .keys
                        .iter()
                        .find(|(k, _)| **k == *key.as_bytes())
                        .map(|&(_, id)| id),
                    Step::Index(index) => nodes[node]
                        .indexes
                        .iter()
                        .find(|(i, _)| i == index)
                        .map(|&(_, id)| id),
                };
                let child = match existing {
                    Some(id) => id,
                    None => {
                        let id = NodeId::try_from(nodes.len()).expect("fewer than 2^32 steps");
                        nodes.push(Node::default());
                        match step {
                            Step::Key(key) => nodes[node].keys.push((key.as_bytes().into(), id)),
                            Step::Index(index) => nodes[node].indexes.push((*index, id)),
                        }
                        id
                    }
                };
                node = child as usize;
                nodes[node].subtree.push(column);
            }
            nodes[node].columns.push(column);
        }
        PathTree {
            nodes,
            columns: paths.len(),
        }
    }

    /// The node at `id`.
    #[inline]
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(text: &str) -> Vec<Step> {
        ParsePath::parse(text).unwrap().steps
    }

    fn key(k: &str) -> Step {
        Step::Key(k.into())
    }

    #[test]
    fn parses_keys_and_indexes() {
        assert_eq!(steps("/@identity"), vec![key("identity")]);
        assert_eq!(
            steps("/@location/@longitude"),
            vec![key("location"), key("longitude")]
        );
        assert_eq!(
            steps("/@acceleration/#0"),
            vec![key("acceleration"), Step::Index(0)]
        );
        assert_eq!(steps("/#12/#007"), vec![Step::Index(12), Step::Index(7)]);
    }

    #[test]
    fn the_first_character_is_the_delimiter() {
        assert_eq!(steps("|@a/b|#0"), vec![key("a/b"), Step::Index(0)]);
        assert_eq!(steps("é@x yé@z"), vec![key("x y"), key("z")]);
        assert_eq!(steps(".@a.@b"), vec![key("a"), key("b")]);
    }

    #[test]
    fn keys_are_exact_and_may_be_empty() {
        assert_eq!(
            steps("/@ spaced key /@"),
            vec![key(" spaced key "), key("")]
        );
        assert_eq!(steps("/@@#"), vec![key("@#")]);
    }

    #[test]
    fn a_lone_delimiter_is_the_whole_document() {
        assert_eq!(steps("/"), vec![]);
        assert_eq!(steps("|"), vec![]);
    }

    #[test]
    fn rejects_malformed_paths() {
        let err = |text| ParsePath::parse(text).unwrap_err();
        assert!(err("").contains("empty"));
        assert!(err("@a").contains("starts with its delimiter"));
        assert!(err("#0").contains("starts with its delimiter"));
        assert!(err("/@a/").contains("empty step"));
        assert!(err("//@a").contains("empty step"));
        assert!(err("/a").contains("must start with @"));
        assert!(err("/@a/b").contains("`b` must start with @"));
        assert!(err("/#x").contains("`#x` is not an array index"));
        assert!(err("/#-1").contains("`#-1` is not an array index"));
        assert!(err("/#+1").contains("not an array index"));
        assert!(err("/#").contains("not an array index"));
        assert!(err("/# 1").contains("not an array index"));
        assert!(err("/#1.5").contains("not an array index"));
        assert!(err("/#99999999999").contains("too large"));
    }

    #[test]
    fn the_setting_is_split_on_commas_and_trimmed() {
        let paths = parse_paths("/@a, /@b ,\t|@c|#1").unwrap();
        let all: Vec<_> = paths.into_iter().map(|p| p.steps).collect();
        assert_eq!(
            all,
            vec![
                vec![key("a")],
                vec![key("b")],
                vec![key("c"), Step::Index(1)]
            ]
        );
    }

    #[test]
    fn setting_errors_name_the_path() {
        assert_eq!(
            parse_paths("/@a,,/@b").unwrap_err(),
            "db.json.parse: parse path 2 is empty"
        );
        assert_eq!(
            parse_paths("").unwrap_err(),
            "db.json.parse: parse path 1 is empty"
        );
        assert_eq!(
            parse_paths("/@a, /@b/#x").unwrap_err(),
            "db.json.parse: parse path 2 `/@b/#x` is invalid: `#x` is not an array index: \
             write # and a number from 0, as in #0"
        );
    }

    #[test]
    fn compiles_shared_prefixes_into_one_tree() {
        let paths = parse_paths("/@loc/@lat,/@loc/@lon,/@loc,/@acc/#0,/@loc/@lat,/").unwrap();
        let tree = PathTree::compile(&paths);
        assert_eq!(tree.columns, 6);
        let root = tree.node(ROOT);
        assert_eq!(root.columns, vec![5]);
        assert_eq!(root.subtree, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(root.keys.len(), 2);
        let loc = tree.node(root.keys[0].1);
        assert_eq!(&*root.keys[0].0, b"loc");
        assert_eq!(loc.columns, vec![2]);
        assert_eq!(loc.subtree, vec![0, 1, 2, 4]);
        let lat = tree.node(loc.keys[0].1);
        assert_eq!(
            lat.columns,
            vec![0, 4],
            "a repeated path feeds both columns"
        );
        let acc = tree.node(root.keys[1].1);
        assert_eq!(acc.indexes.len(), 1);
        assert_eq!(tree.node(acc.indexes[0].1).columns, vec![3]);
    }
}
