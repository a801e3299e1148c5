//! Schema compatibility: does a new revision of a schema break the consumers of the old one?
//!
//! busline's rule is **forward compatibility within a version**: every event valid under the new
//! revision must be acceptable to a consumer written against the old one, because consumers are
//! deployed on their own schedule and read whatever producers send. [`breaking_changes`] lists each
//! way the new revision breaks that, under one of these rules:
//!
//! | Rule | Breaks consumers because |
//! |---|---|
//! | [`Rule::RequiredRemoved`] | a field they rely on may be absent |
//! | [`Rule::TypeChanged`] | a value may have a type they do not read (the new type is not within the old) |
//! | [`Rule::EnumWidened`] | a value may be one they do not handle |
//! | [`Rule::ConstraintLoosened`] | a value may be outside bounds they assume (minimum, length, pattern, format) |
//! | [`Rule::ClosedObjectOpened`] | an object they read as closed may carry fields they refuse |
//! | [`Rule::ReferenceChanged`] | a part is now another schema altogether |
//!
//! Adding optional fields, tightening constraints and removing enum values are compatible. A change
//! that is not must be a new version (`….v3`), with an upcaster for the consumers that move to it.
//! The check is structural and conservative: it follows `properties`, `items`, `$defs`,
//! `additionalProperties` and `$ref`s by name, which is what busline's schemas use.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

/// A compatibility rule; see the [module documentation](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Rule {
    /// A required field is no longer required (or no longer there).
    RequiredRemoved,
    /// A value's type is not within its old type.
    TypeChanged,
    /// An enum (or const) allows a value it did not.
    EnumWidened,
    /// A bound, length, pattern or format is looser or gone.
    ConstraintLoosened,
    /// An object closed with `additionalProperties: false` accepts more.
    ClosedObjectOpened,
    /// A `$ref` points elsewhere.
    ReferenceChanged,
}

/// One way a new revision breaks consumers of the old.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Break {
    /// The rule broken.
    pub rule: Rule,
    /// Where, as a JSON pointer into the instance (`/lines/*/quantity`).
    pub path: String,
    /// What changed, in words.
    pub detail: String,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "the document"
        } else {
            &self.path
        };
        write!(f, "{:?} at {path}: {}", self.rule, self.detail)
    }
}

/// Every way `new` breaks consumers of `old`; empty when the change is compatible.
pub fn breaking_changes(old: &Value, new: &Value) -> Vec<Break> {
    let mut breaks = Vec::new();
    compare(old, new, "", &mut breaks);
    breaks
}

const LOWER_BOUNDS: &[&str] = &[
    "minimum",
    "exclusiveMinimum",
    "minLength",
    "minItems",
    "minProperties",
];
const UPPER_BOUNDS: &[&str] = &[
    "maximum",
    "exclusiveMaximum",
    "maxLength",
    "maxItems",
    "maxProperties",
];
const EXACT: &[&str] = &["pattern", "format", "multipleOf"];

fn types(schema: &Map<String, Value>) -> Option<BTreeSet<String>> {
    let names = match schema.get("type")? {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => return None,
    };
    // An integer is a number: a consumer reading numbers reads integers.
    let mut set: BTreeSet<String> = names.into_iter().collect();
    if set.contains("number") {
        set.insert("integer".to_owned());
    }
    Some(set)
}

fn allowed_values(schema: &Map<String, Value>) -> Option<Vec<Value>> {
    if let Some(c) = schema.get("const") {
        return Some(vec![c.clone()]);
    }
    schema.get("enum").and_then(Value::as_array).cloned()
}

fn required(schema: &Map<String, Value>) -> BTreeSet<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn compare(old: &Value, new: &Value, path: &str, breaks: &mut Vec<Break>) {
    let mut push = |rule, detail: String| {
        breaks.push(Break {
            rule,
            path: path.to_owned(),
            detail,
        })
    };
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        // `true`/`false` schemas: only `false` → anything is a widening worth naming.
        if old == &Value::Bool(false) && new != &Value::Bool(false) {
            push(Rule::TypeChanged, "was never allowed, now is".to_owned());
        }
        return;
    };

    if old.get("$ref") != new.get("$ref") {
        push(
            Rule::ReferenceChanged,
            format!(
                "$ref {} became {}",
                old.get("$ref").unwrap_or(&Value::Null),
                new.get("$ref").unwrap_or(&Value::Null)
            ),
        );
    }

    if let Some(old_types) = types(old) {
        match types(new) {
            None => push(
                Rule::TypeChanged,
                format!("type {old_types:?} became unconstrained"),
            ),
            Some(new_types) if !new_types.is_subset(&old_types) => push(
                Rule::TypeChanged,
                format!(
                    "type {:?} became {:?}",
                    old_types
                        .iter()
                        .filter(|t| *t != "integer" || !old_types.contains("number"))
                        .collect::<Vec<_>>(),
                    new_types
                        .iter()
                        .filter(|t| *t != "integer" || !new_types.contains("number"))
                        .collect::<Vec<_>>()
                ),
            ),
            Some(_) => {}
        }
    }

    if let Some(old_values) = allowed_values(old) {
        match allowed_values(new) {
            None => push(
                Rule::EnumWidened,
                format!("the values {old_values:?} became unconstrained"),
            ),
            Some(new_values) => {
                let added: Vec<&Value> = new_values
                    .iter()
                    .filter(|v| !old_values.contains(v))
                    .collect();
                if !added.is_empty() {
                    push(Rule::EnumWidened, format!("{added:?} are new values"));
                }
            }
        }
    }

    for key in LOWER_BOUNDS {
        if let Some(o) = old.get(*key).and_then(Value::as_f64) {
            match new.get(*key).and_then(Value::as_f64) {
                Some(n) if n >= o => {}
                n => push(
                    Rule::ConstraintLoosened,
                    format!(
                        "{key} {o} became {}",
                        n.map_or("none".to_owned(), |n| n.to_string())
                    ),
                ),
            }
        }
    }
    for key in UPPER_BOUNDS {
        if let Some(o) = old.get(*key).and_then(Value::as_f64) {
            match new.get(*key).and_then(Value::as_f64) {
                Some(n) if n <= o => {}
                n => push(
                    Rule::ConstraintLoosened,
                    format!(
                        "{key} {o} became {}",
                        n.map_or("none".to_owned(), |n| n.to_string())
                    ),
                ),
            }
        }
    }
    for key in EXACT {
        if let Some(o) = old.get(*key)
            && new.get(*key) != Some(o)
        {
            push(
                Rule::ConstraintLoosened,
                format!("{key} {o} became {}", new.get(*key).unwrap_or(&Value::Null)),
            );
        }
    }

    let new_required = required(new);
    for field in required(old) {
        if !new_required.contains(field) {
            breaks.push(Break {
                rule: Rule::RequiredRemoved,
                path: format!("{path}/{field}"),
                detail: format!("{field} is no longer required"),
            });
        }
    }

    let empty = Map::new();
    let old_props = old
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let new_props = new
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if old.get("additionalProperties") == Some(&Value::Bool(false)) {
        if new.get("additionalProperties") != Some(&Value::Bool(false)) {
            breaks.push(Break {
                rule: Rule::ClosedObjectOpened,
                path: path.to_owned(),
                detail: "additionalProperties false was dropped".to_owned(),
            });
        }
        for field in new_props.keys().filter(|k| !old_props.contains_key(*k)) {
            breaks.push(Break {
                rule: Rule::ClosedObjectOpened,
                path: format!("{path}/{field}"),
                detail: format!("{field} is new in a closed object"),
            });
        }
    } else if let (Some(o), Some(n)) = (
        old.get("additionalProperties"),
        new.get("additionalProperties"),
    ) {
        compare(o, n, &format!("{path}/*"), breaks);
    }

    for (field, old_field) in old_props {
        let child = format!("{path}/{field}");
        match new_props.get(field) {
            Some(new_field) => compare(old_field, new_field, &child, breaks),
            // An optional field that is no longer described may now be anything.
            None if old_field.as_object().is_some_and(|o| !o.is_empty()) => breaks.push(Break {
                rule: Rule::TypeChanged,
                path: child,
                detail: format!("{field} is no longer described, so it may hold anything"),
            }),
            None => {}
        }
    }

    if let (Some(o), Some(n)) = (old.get("items"), new.get("items")) {
        compare(o, n, &format!("{path}/*"), breaks);
    } else if old.get("items").is_some() {
        breaks.push(Break {
            rule: Rule::TypeChanged,
            path: format!("{path}/*"),
            detail: "the items are no longer described".to_owned(),
        });
    }

    let old_defs = old
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let new_defs = new
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (name, old_def) in old_defs {
        let child = format!("{path}#/$defs/{name}");
        match new_defs.get(name) {
            Some(new_def) => compare(old_def, new_def, &child, breaks),
            None => breaks.push(Break {
                rule: Rule::ReferenceChanged,
                path: child,
                detail: format!("definition {name} was removed"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules(old: Value, new: Value) -> Vec<(Rule, String)> {
        let mut found: Vec<(Rule, String)> = breaking_changes(&old, &new)
            .into_iter()
            .map(|b| (b.rule, b.path))
            .collect();
        found.sort_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
        found
    }

    fn order() -> Value {
        json!({
            "type": "object",
            "required": ["id", "lines"],
            "properties": {
                "id": {"type": "string", "minLength": 1},
                "status": {"enum": ["new", "paid"]},
                "lines": {"type": "array", "items": {
                    "type": "object", "required": ["qty"], "additionalProperties": false,
                    "properties": {"qty": {"type": "integer", "minimum": 1}}
                }}
            }
        })
    }

    #[test]
    fn compatible_changes_pass() {
        assert_eq!(rules(order(), order()), vec![]);
        let mut new = order();
        new["required"] = json!(["id", "lines", "note"]); // a new required field
        new["properties"]["note"] = json!({"type": "string"}); // a new optional field
        new["properties"]["id"]["maxLength"] = json!(80); // tighter
        new["properties"]["status"]["enum"] = json!(["new"]); // narrower
        new["properties"]["lines"]["items"]["properties"]["qty"]["type"] = json!("integer");
        assert_eq!(rules(order(), new), vec![]);
        // An integer is a number.
        assert_eq!(
            rules(json!({"type": "number"}), json!({"type": "integer"})),
            vec![]
        );
    }

    #[test]
    fn each_rule_is_caught_where_it_is_broken() {
        let mut new = order();
        new["required"] = json!(["lines"]);
        new["properties"]["id"]["type"] = json!(["string", "null"]);
        new["properties"]["id"]["minLength"] = json!(0);
        new["properties"]["status"]["enum"] = json!(["new", "paid", "void"]);
        let item = &mut new["properties"]["lines"]["items"];
        item["properties"]["qty"]["type"] = json!("string");
        item["properties"]["note"] = json!({"type": "string"});
        assert_eq!(
            rules(order(), new),
            vec![
                (Rule::RequiredRemoved, "/id".to_owned()),
                (Rule::TypeChanged, "/id".to_owned()),
                (Rule::ConstraintLoosened, "/id".to_owned()),
                (Rule::ClosedObjectOpened, "/lines/*/note".to_owned()),
                (Rule::TypeChanged, "/lines/*/qty".to_owned()),
                (Rule::EnumWidened, "/status".to_owned()),
            ]
        );
    }

    #[test]
    fn removing_a_described_field_or_a_reference_target_is_breaking() {
        let mut new = order();
        new["properties"].as_object_mut().unwrap().remove("status");
        assert_eq!(
            rules(order(), new),
            vec![(Rule::TypeChanged, "/status".to_owned())]
        );
        assert_eq!(
            rules(json!({"$ref": "urn:a:v1"}), json!({"$ref": "urn:a:v2"})),
            vec![(Rule::ReferenceChanged, String::new())]
        );
    }
}
