//! The trust every HTTPS client a function builds starts from, configured once per process.
//!
//! By default that is Mozilla's root certificates as compiled into the binary (`webpki-roots`):
//! they are already in the form rustls checks chains against, so a cold start reads no file and
//! parses no certificate. Reading the host's store instead cost a function most of its init: on
//! Lambda one bundle of about 150 PEM certificates, and on a Debian host several hundred files,
//! each decoded and parsed (callgrind put it at 73–81 % of a function's init, twice where a
//! second client loaded the store again).
//!
//! A deployment that must trust a private CA sets [`ROOTS_VARIABLE`] (`BUSLINE_TLS_ROOTS`) to
//! `native`: the process then trusts the system's store as `rustls-native-certs` finds it, which
//! honours `SSL_CERT_FILE` and `SSL_CERT_DIR` (put the private CA in the bundle `SSL_CERT_FILE`
//! names). That store is read once, at cold start.
//!
//! One [`rustls::ClientConfig`], with aws-lc-rs as its one crypto provider, serves the AWS SDK's
//! connector ([`crate::aws::load_config`]) and every reqwest client (pass [`client_config`] to
//! `reqwest::ClientBuilder::tls_backend_preconfigured`).

use std::sync::{Arc, OnceLock};

use crate::config::{ConfigError, Env, ProcessEnv};

/// The variable that chooses the roots: `compiled` (the default) or `native`.
pub const ROOTS_VARIABLE: &str = "BUSLINE_TLS_ROOTS";

/// Which root certificates a process trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots {
    /// Mozilla's roots as compiled into the binary (`webpki-roots`); nothing is read at start.
    Compiled,
    /// The system's store (`rustls-native-certs`: `SSL_CERT_FILE`, `SSL_CERT_DIR`, or the
    /// distribution's bundle), read at start.
    Native,
}

impl Roots {
    /// The roots [`ROOTS_VARIABLE`] names; unset or empty is [`Roots::Compiled`].
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let value = env.get(ROOTS_VARIABLE);
        match value.as_deref().map(str::trim) {
            None | Some("" | "compiled") => Ok(Self::Compiled),
            Some("native") => Ok(Self::Native),
            Some(_) => Err(ConfigError::Invalid {
                name: ROOTS_VARIABLE,
                value: value.unwrap_or_default(),
                expected: "compiled (the default: the roots built into the binary) or native (the system's store, which honours SSL_CERT_FILE and SSL_CERT_DIR)",
            }),
        }
    }
}

/// Why TLS could not be configured; a start that meets one fails with it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    /// [`ROOTS_VARIABLE`] is set to something else than `compiled` or `native`.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The system's store was asked for and holds no certificate rustls can use.
    #[error(
        "{ROOTS_VARIABLE}=native, but the system's certificate store holds no usable certificate ({problems}); set SSL_CERT_FILE to a CA bundle, or unset {ROOTS_VARIABLE} to trust the roots built in"
    )]
    NoNativeRoots {
        /// What `rustls-native-certs` reported, or that it found nothing.
        problems: String,
    },
    /// rustls refused the protocol versions (only a crypto provider without TLS 1.2 or 1.3 would).
    #[error("rustls could not be configured: {0}")]
    Rustls(String),
}

/// The root store for `roots`.
pub fn root_store(roots: Roots) -> Result<rustls::RootCertStore, TlsError> {
    match roots {
        Roots::Compiled => Ok(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
        Roots::Native => {
            let found = rustls_native_certs::load_native_certs();
            let mut store = rustls::RootCertStore::empty();
            let (added, _unparsable) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let problems = if found.errors.is_empty() {
                    "no certificate found".to_owned()
                } else {
                    found
                        .errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                return Err(TlsError::NoNativeRoots { problems });
            }
            if !found.errors.is_empty() {
                tracing::warn!(
                    trusted = added,
                    problems = ?found.errors,
                    "some of the system's certificates could not be read"
                );
            }
            Ok(store)
        }
    }
}

/// A client configuration that trusts `roots`, on aws-lc-rs with rustls's safe default protocol
/// versions (TLS 1.2 and 1.3) and no client certificate.
pub fn build_client_config(roots: Roots) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(root_store(roots)?)
        .with_no_client_auth())
}

/// The process's client configuration, for the roots the environment chooses ([`Roots::from_env`]):
/// built on the first call, the same one (or the same error) after.
pub fn client_config() -> Result<Arc<rustls::ClientConfig>, TlsError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, TlsError>> = OnceLock::new();
    CONFIG
        .get_or_init(|| build_client_config(Roots::from_env(&ProcessEnv)?).map(Arc::new))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(value: Option<&str>) -> [(&str, &str); 1] {
        [value.map_or(("UNRELATED", "x"), |v| (ROOTS_VARIABLE, v))]
    }

    #[test]
    fn the_roots_built_in_are_the_default_and_native_is_chosen_by_name() {
        assert_eq!(Roots::from_env(&env(None)).unwrap(), Roots::Compiled);
        assert_eq!(Roots::from_env(&env(Some(""))).unwrap(), Roots::Compiled);
        assert_eq!(
            Roots::from_env(&env(Some(" compiled "))).unwrap(),
            Roots::Compiled
        );
        assert_eq!(
            Roots::from_env(&env(Some("native"))).unwrap(),
            Roots::Native
        );
    }

    #[test]
    fn an_unknown_choice_fails_the_start_with_the_variable_and_the_choices() {
        let error = Roots::from_env(&env(Some("system")))
            .unwrap_err()
            .to_string();
        assert!(error.contains("BUSLINE_TLS_ROOTS=\"system\""), "{error}");
        assert!(
            error.contains("compiled") && error.contains("native"),
            "{error}"
        );
    }

    #[test]
    fn the_compiled_roots_are_mozillas_whole_set() {
        let store = root_store(Roots::Compiled).unwrap();
        assert_eq!(store.len(), webpki_roots::TLS_SERVER_ROOTS.len());
        // Mozilla's program holds well over a hundred server roots; a build that lost them would
        // trust nothing and fail every handshake.
        assert!(store.len() > 100, "{} roots", store.len());
        build_client_config(Roots::Compiled).unwrap();
    }
}
