//! Turns a key path (`route[1].upstream`) into a line and column of the original file, so that every
//! config error can point at the text the user wrote. Owns the span walk over `toml_edit`'s
//! span-preserving document; knows nothing about rampart's keys.

use std::fmt;

use toml_edit::{Array, ArrayOfTables, Document, InlineTable, Item, Table, Value};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path from the document root to a key, printed as `route[1].upstream`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }
    pub fn key(&self, key: &str) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.to_owned()));
        next
    }
    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(index));
        next
    }
    /// Appends a relative path written as `a.b[2].c` (as module-level settings report it).
    pub fn join(&self, relative: &str) -> Self {
        let mut next = self.clone();
        for part in relative.split('.').filter(|p| !p.is_empty()) {
            let (key, indices) = part
                .split_once('[')
                .map_or((part, ""), |(k, rest)| (k, rest));
            if !key.is_empty() {
                next.0.push(Segment::Key(key.to_owned()));
            }
            for index in indices.split('[') {
                if let Ok(i) = index.trim_end_matches(']').parse() {
                    next.0.push(Segment::Index(i));
                }
            }
        }
        next
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A node while walking: tables and arrays may be written inline or as headers.
enum Node<'a> {
    Table(&'a Table),
    Inline(&'a InlineTable),
    Tables(&'a ArrayOfTables),
    Array(&'a Array),
    Leaf,
}

impl<'a> Node<'a> {
    fn of_item(item: &'a Item) -> Self {
        match item {
            Item::Table(table) => Node::Table(table),
            Item::ArrayOfTables(tables) => Node::Tables(tables),
            Item::Value(value) => Node::of_value(value),
            Item::None => Node::Leaf,
        }
    }
    fn of_value(value: &'a Value) -> Self {
        match value {
            Value::InlineTable(table) => Node::Inline(table),
            Value::Array(array) => Node::Array(array),
            _ => Node::Leaf,
        }
    }
}

/// The byte offset in the source of the deepest part of `path` that exists in `doc`.
pub fn offset_of(doc: &Document<String>, path: &KeyPath) -> Option<usize> {
    let mut node = Node::Table(doc.as_table());
    let mut best = None;
    for segment in &path.0 {
        let next = match (segment, &node) {
            (Segment::Key(key), Node::Table(table)) => table
                .get_key_value(key)
                .map(|(k, v)| (k.span().or_else(|| v.span()), Node::of_item(v))),
            (Segment::Key(key), Node::Inline(table)) => table
                .get_key_value(key)
                .map(|(k, v)| (k.span().or_else(|| v.span()), Node::of_item(v))),
            (Segment::Index(index), Node::Tables(tables)) => tables
                .get(*index)
                .map(|table| (table.span(), Node::Table(table))),
            (Segment::Index(index), Node::Array(array)) => array
                .get(*index)
                .map(|value| (value.span(), Node::of_value(value))),
            _ => None,
        };
        let Some((span, found)) = next else { break };
        if let Some(span) = span {
            best = Some(span.start);
        }
        node = found;
    }
    best
}

/// 1-based line and column of a byte offset.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
