//! Which records a storage call touches: upstream's scope, category, metadata
//! and age predicates, with Python's equality on JSON values.

use super::Row;
use crate::serialization::Value;

/// Which scopes a filter admits.
#[derive(Debug, Clone, PartialEq)]
pub enum ScopeMatch {
    Any,
    /// `scope.startswith(prefix)` (LanceDB's `LIKE 'prefix%'`).
    Prefix(String),
    /// A prefix, or the root scope `/` (upstream's scoped delete); in a
    /// `Filter`, `created_before` limits the root scope only.
    PrefixOrRoot(String),
    /// `low <= scope < high` (upstream's scoped reset).
    Range(String, String),
}

impl ScopeMatch {
    pub(super) fn admits(&self, scope: &str) -> bool {
        match self {
            ScopeMatch::Any => true,
            ScopeMatch::Prefix(p) => scope.starts_with(p.as_str()),
            ScopeMatch::PrefixOrRoot(p) => scope.starts_with(p.as_str()) || scope == "/",
            ScopeMatch::Range(low, high) => scope >= low.as_str() && scope < high.as_str(),
        }
    }
}

/// The row predicates upstream's storage methods use, evaluated before ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub scope: ScopeMatch,
    /// Any of these among the record's categories; empty admits all.
    pub categories: Vec<String>,
    /// Every key equal (Python `==` on JSON values; a missing key is `None`); empty admits all.
    pub metadata: Vec<(String, Value)>,
    /// `created_key < created_before`.
    pub created_before: Option<i64>,
}

impl Filter {
    pub fn scope(scope: ScopeMatch) -> Filter {
        Filter { scope, categories: Vec::new(), metadata: Vec::new(), created_before: None }
    }

    pub(super) fn admits(&self, row: &Row) -> bool {
        (self.categories.is_empty() || self.categories.iter().any(|c| row.categories.contains(c)))
            && self.admits_besides_categories(row)
    }

    pub(super) fn admits_besides_categories(&self, row: &Row) -> bool {
        let older = self.created_before.map_or(true, |before| row.data.created_key < before);
        let scope_and_age = match &self.scope {
            // Upstream's scoped delete writes `scope LIKE 'p%' OR scope = '/' AND
            // created_at < t`: by SQL's precedence the age limits the root scope only.
            ScopeMatch::PrefixOrRoot(prefix) => row.data.scope.starts_with(prefix.as_str()) || (row.data.scope == "/" && older),
            scope => scope.admits(&row.data.scope) && older,
        };
        scope_and_age
            && self.metadata.iter().all(|(key, expected)| {
                let actual = match &row.metadata {
                    Some(Value::Object(entries)) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                    _ => None,
                };
                python_eq(actual.unwrap_or(&Value::Null), expected)
            })
    }
}

/// Python's `==` between two JSON-decoded values (`True == 1 == 1.0`, NaN unequal to itself).
pub fn python_eq(a: &Value, b: &Value) -> bool {
    use Value::*;
    match (a, b) {
        (Null, Null) => true,
        (Str(x), Str(y)) => x == y,
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| python_eq(p, q)),
        (Object(x), Object(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| y.iter().any(|(k2, v2)| k == k2 && python_eq(v, v2)))
        }
        (BigInt(x), BigInt(y)) => x == y,
        (BigInt(x), Float(f)) | (Float(f), BigInt(x)) => x.parse::<f64>().map_or(false, |v| v == *f),
        _ => match (as_number(a), as_number(b)) {
            (Some(Number::Int(x)), Some(Number::Int(y))) => x == y,
            (Some(Number::Int(i)), Some(Number::Float(f))) | (Some(Number::Float(f)), Some(Number::Int(i))) => {
                // Exact, as CPython compares int and float.
                f.fract() == 0.0 && f.abs() < 1e19 && (f as i128) == i as i128
            }
            (Some(Number::Float(x)), Some(Number::Float(y))) => x == y,
            _ => false,
        },
    }
}

enum Number {
    Int(i64),
    Float(f64),
}

fn as_number(v: &Value) -> Option<Number> {
    match v {
        Value::Bool(b) => Some(Number::Int(*b as i64)),
        Value::Int(i) => Some(Number::Int(*i)),
        Value::Float(f) => Some(Number::Float(*f)),
        _ => None,
    }
}
