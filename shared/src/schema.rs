//! JSON Schema validation that reports every violation, each with where it is and what is wrong.
//!
//! Schemas live under `infra/schemas/`. A function validates against a validator generated from
//! its schema at build time (`#[jsonschema::validator(path = ...)]`, wrapped by
//! [`Schema::generated`]): nothing to parse or compile at cold start, and faster to run. A schema
//! known only at run time is compiled ([`Schema::compile`]). Remote `$ref`s are not resolved
//! either way (the crate is built without its HTTP resolver), so a schema cannot make a function
//! reach out to the internet.

pub mod compat;

use serde::Serialize;
use serde_json::Value;

/// A schema, ready to validate.
#[derive(Debug)]
pub struct Schema {
    id: Option<String>,
    validator: Validator,
}

/// The `iter_errors` of a validator `#[jsonschema::validator]` generated at build time.
pub type GeneratedValidator = for<'i> fn(&'i Value) -> jsonschema::ErrorIterator<'i>;

#[derive(Debug)]
enum Validator {
    Compiled(Box<jsonschema::Validator>),
    Generated(GeneratedValidator),
}

/// One way an instance breaks its schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// JSON pointer to the offending value (empty for the document itself).
    pub path: String,
    /// What is wrong, in words.
    pub message: String,
}

/// A schema document that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("schema {name} is invalid: {reason}")]
pub struct SchemaError {
    /// The name it was compiled under (a source's, or a canonical event type): only for this
    /// message.
    pub name: String,
    /// Why: the JSON parser's or the schema compiler's error, in words.
    pub reason: String,
}

impl Schema {
    /// Parses and compiles `text`; `name` is only used in the error.
    pub fn compile(name: &str, text: &str) -> Result<Self, SchemaError> {
        let invalid = |reason: String| SchemaError {
            name: name.to_owned(),
            reason,
        };
        let document: Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let validator = jsonschema::validator_for(&document).map_err(|e| invalid(e.to_string()))?;
        let id = document
            .get("$id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Self {
            id,
            validator: Validator::Compiled(Box::new(validator)),
        })
    }

    /// Like [`Schema::compile`], with `$ref`s to other schemas resolved among `references` (each a
    /// schema document with an `$id`), offline.
    pub fn compile_with_references(
        name: &str,
        text: &str,
        references: &[&str],
    ) -> Result<Self, SchemaError> {
        let invalid = |reason: String| SchemaError {
            name: name.to_owned(),
            reason,
        };
        let document: Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut registry = jsonschema::Registry::new();
        for reference in references {
            let reference: Value =
                serde_json::from_str(reference).map_err(|e| invalid(e.to_string()))?;
            let Some(id) = reference
                .get("$id")
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                return Err(invalid("a referenced schema has no $id".to_owned()));
            };
            registry = registry
                .add(id, reference)
                .map_err(|e| invalid(e.to_string()))?;
        }
        let registry = registry.prepare().map_err(|e| invalid(e.to_string()))?;
        let validator = jsonschema::options()
            .with_registry(&registry)
            .build(&document)
            .map_err(|e| invalid(e.to_string()))?;
        let id = document
            .get("$id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Self {
            id,
            validator: Validator::Compiled(Box::new(validator)),
        })
    }

    /// The schema a validator generated at build time checks, with its `$id` (the macro does not
    /// keep it). Costs nothing: the schema was compiled into the binary.
    pub fn generated(id: Option<&str>, iter_errors: GeneratedValidator) -> Self {
        Self {
            id: id.map(str::to_owned),
            validator: Validator::Generated(iter_errors),
        }
    }

    /// The schema's `$id`, used as an envelope's `dataschema`.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Every violation of the schema by `instance`; empty when it conforms.
    pub fn violations(&self, instance: &Value) -> Vec<Violation> {
        let errors = match &self.validator {
            Validator::Compiled(validator) => validator.iter_errors(instance),
            Validator::Generated(iter_errors) => iter_errors(instance),
        };
        errors
            .map(|e| Violation {
                path: e.instance_path().to_string(),
                // What the rule is, never the offending value: it may be personal data, and it goes
                // back to the sender and into dead-letter reasons.
                message: e.masked().to_string(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCHEMA: &str = include_str!("schema/test-order.schema.json");

    #[test]
    fn reports_every_violation_with_its_path() {
        let schema = Schema::compile("order", SCHEMA).unwrap();
        assert_eq!(schema.id(), Some("urn:test:order:v1"));
        assert!(
            schema
                .violations(&json!({"order_id": "A", "lines": [{"sku": "X", "quantity": 1}]}))
                .is_empty()
        );

        let v = schema.violations(
            &json!({"order_id": 7, "lines": [{"sku": "X", "quantity": 0}, {"quantity": 2}]}),
        );
        let paths: Vec<&str> = v.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(
            paths.contains(&"/order_id")
                && paths.contains(&"/lines/0/quantity")
                && paths.contains(&"/lines/1"),
            "{paths:?}"
        );
    }

    /// The same schema, generated at build time.
    #[jsonschema::validator(path = "src/schema/test-order.schema.json")]
    struct GeneratedOrder;

    #[test]
    fn a_generated_validator_reports_what_the_compiled_one_does() {
        let compiled = Schema::compile("order", SCHEMA).unwrap();
        let generated = Schema::generated(Some("urn:test:order:v1"), GeneratedOrder::iter_errors);
        assert_eq!(generated.id(), compiled.id());
        for instance in [
            json!({"order_id": "A", "lines": [{"sku": "X", "quantity": 1}]}),
            json!({"order_id": 7, "lines": [{"sku": "X", "quantity": 0}, {"quantity": 2}]}),
            json!({"lines": []}),
            json!("not an object"),
        ] {
            assert_eq!(
                generated.violations(&instance),
                compiled.violations(&instance),
                "{instance}"
            );
        }
        assert_eq!(
            generated
                .violations(&json!({"order_id": 7, "lines": [{"quantity": 2}]}))
                .len(),
            2
        );
    }

    #[test]
    fn an_invalid_schema_fails_to_compile_with_its_name() {
        let err = Schema::compile("broken", r#"{"type": "nonsense"}"#).unwrap_err();
        assert!(
            err.to_string().starts_with("schema broken is invalid"),
            "{err}"
        );
        assert!(Schema::compile("not-json", "{").is_err());
    }
}
