//! Configuration read once, at cold start, from the environment.
//!
//! A function's `Config::from_env` calls these helpers for each variable; the first missing or
//! malformed one fails the start with the variable's name and what was expected, so a deploy with a
//! typo dies at once in the logs instead of failing every invocation later.

use std::str::FromStr;

/// A variable that is missing or does not parse.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("environment variable {name} is not set; expected {expected}")]
    Missing {
        /// The variable's name, such as `BUS_NAME`.
        name: &'static str,
        /// What a valid value looks like, in the caller's words; the message ends with it.
        expected: &'static str,
    },
    /// A variable is set but does not parse.
    #[error("environment variable {name}={value:?} is invalid; expected {expected}")]
    Invalid {
        /// The variable's name, such as `BUS_NAME`.
        name: &'static str,
        /// The value as set, untrimmed.
        value: String,
        /// What a valid value looks like, in the caller's words; the message ends with it.
        expected: &'static str,
    },
}

/// A source of variables: the process environment in production, a map in tests.
pub trait Env {
    /// The variable's value, if set.
    fn get(&self, name: &str) -> Option<String>;

    /// A required, non-empty string.
    fn require(&self, name: &'static str, expected: &'static str) -> Result<String, ConfigError> {
        self.get(name)
            .filter(|v| !v.trim().is_empty())
            .ok_or(ConfigError::Missing { name, expected })
    }

    /// A required value parsed with [`FromStr`].
    fn parse<T: FromStr>(
        &self,
        name: &'static str,
        expected: &'static str,
    ) -> Result<T, ConfigError> {
        let value = self.require(name, expected)?;
        value.trim().parse().map_err(|_| ConfigError::Invalid {
            name,
            value,
            expected,
        })
    }

    /// An optional value parsed with [`FromStr`], `default` when unset or empty.
    fn parse_or<T: FromStr>(
        &self,
        name: &'static str,
        default: T,
        expected: &'static str,
    ) -> Result<T, ConfigError> {
        match self.get(name).filter(|v| !v.trim().is_empty()) {
            None => Ok(default),
            Some(_) => self.parse(name, expected),
        }
    }
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_variable_names_itself_and_what_was_expected() {
        let err = [("OTHER", "x")]
            .require("BUS_NAME", "the event bus name")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable BUS_NAME is not set; expected the event bus name"
        );
        let err = [("BUS_NAME", "  ")]
            .require("BUS_NAME", "the event bus name")
            .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Missing {
                name: "BUS_NAME",
                ..
            }
        ));
    }

    #[test]
    fn a_malformed_variable_names_itself_its_value_and_what_was_expected() {
        let err = [("TTL", "ten")]
            .parse::<u64>("TTL", "seconds, as a whole number")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable TTL=\"ten\" is invalid; expected seconds, as a whole number"
        );
    }

    #[test]
    fn optional_values_fall_back_to_their_default_only_when_unset() {
        assert_eq!([("A", "")].parse_or("TTL", 7u64, "seconds").unwrap(), 7);
        assert_eq!([("TTL", "9")].parse_or("TTL", 7u64, "seconds").unwrap(), 9);
        assert!([("TTL", "-1")].parse_or("TTL", 7u64, "seconds").is_err());
    }
}
