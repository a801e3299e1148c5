//! What the function is told and what it builds from that at cold start: the sources it knows, the
//! ones configured live with their schemes and secrets, and why it could not start.

use std::collections::HashMap;

use busline::EventType;
use busline::config::{ConfigError, Env};
use busline::envelope::EnvelopeError;
use busline::schema::{GeneratedValidator, Schema};
use busline::signature::{self, Scheme, SigningKey};

/// A source system busline knows how to ingest: its schema and the event type its webhooks become.
#[derive(Debug)]
pub struct SourceSpec {
    /// The name in the path, `/webhooks/{name}`.
    pub name: &'static str,
    /// The versioned event type published for it.
    pub event_type: &'static str,
    /// The JSON Schema of the body, from `infra/schemas/webhooks/`.
    pub schema: &'static str,
    /// Its `$id`, the envelope's `dataschema` (a test checks it against the schema's).
    pub schema_id: &'static str,
    /// The validator generated from it at build time (a test checks it against the schema
    /// compiled at run time).
    pub validator: GeneratedValidator,
    /// JSON pointer to the field used as the envelope's `subject` (the ordering key).
    pub subject: &'static str,
}

// Each source's schema, compiled into the binary: at start there is nothing to parse or compile
// (compiling the five at run time was most of the function's init after the certificate store).
#[jsonschema::validator(path = "../../infra/schemas/webhooks/shop-order.v1.json", methods = { is_valid = false, validate = false })]
struct ShopOrderSchema;
#[jsonschema::validator(path = "../../infra/schemas/webhooks/crm-customer.v1.json", methods = { is_valid = false, validate = false })]
struct CrmCustomerSchema;
#[jsonschema::validator(path = "../../infra/schemas/webhooks/marketplace-order.v1.json", methods = { is_valid = false, validate = false })]
struct MarketplaceOrderSchema;
#[jsonschema::validator(path = "../../infra/schemas/webhooks/helpdesk-user.v1.json", methods = { is_valid = false, validate = false })]
struct HelpdeskUserSchema;
#[jsonschema::validator(path = "../../infra/schemas/webhooks/payments-event.v1.json", methods = { is_valid = false, validate = false })]
struct PaymentsEventSchema;

/// Every source the binary can ingest. Which of them are live, and with which secret, is
/// configuration (`WEBHOOK_SOURCES`).
pub const SOURCES: &[SourceSpec] = &[
    SourceSpec {
        name: "shop",
        event_type: "io.busline.shop.order.placed.v1",
        schema: include_str!("../../../infra/schemas/webhooks/shop-order.v1.json"),
        schema_id: "urn:busline:schema:webhook:shop:order:v1",
        validator: ShopOrderSchema::iter_errors,
        subject: "/order_id",
    },
    SourceSpec {
        name: "crm",
        event_type: "io.busline.crm.customer.updated.v1",
        schema: include_str!("../../../infra/schemas/webhooks/crm-customer.v1.json"),
        schema_id: "urn:busline:schema:webhook:crm:customer:v1",
        validator: CrmCustomerSchema::iter_errors,
        subject: "/customer_id",
    },
    SourceSpec {
        name: "marketplace",
        event_type: "io.busline.marketplace.order.placed.v1",
        schema: include_str!("../../../infra/schemas/webhooks/marketplace-order.v1.json"),
        schema_id: "urn:busline:schema:webhook:marketplace:order:v1",
        validator: MarketplaceOrderSchema::iter_errors,
        subject: "/payload/orderNumber",
    },
    SourceSpec {
        name: "helpdesk",
        event_type: "io.busline.helpdesk.user.updated.v1",
        schema: include_str!("../../../infra/schemas/webhooks/helpdesk-user.v1.json"),
        schema_id: "urn:busline:schema:webhook:helpdesk:user:v1",
        validator: HelpdeskUserSchema::iter_errors,
        subject: "/detail/external_id",
    },
    SourceSpec {
        name: "payments",
        event_type: "io.busline.payments.event.v1",
        schema: include_str!("../../../infra/schemas/webhooks/payments-event.v1.json"),
        schema_id: "urn:busline:schema:webhook:payments:event:v1",
        validator: PaymentsEventSchema::iter_errors,
        subject: "/data/object/id",
    },
];

/// A configured source: its name, the Secrets Manager id of its signing secret, and its scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceConfig {
    /// The source's name, one of [`SOURCES`].
    pub name: String,
    /// The Secrets Manager id of its signing secret.
    pub secret_id: String,
    /// How its sender signs: from `WEBHOOK_SCHEMES`, Standard Webhooks when not named there.
    pub scheme: Scheme,
}

/// The function's configuration, read once at cold start (see the README for each variable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `BUS_NAME`: the event bus to publish to.
    pub bus_name: String,
    /// `IDEMPOTENCY_TABLE`: the idempotency records' table.
    pub idempotency_table: String,
    /// `WEBHOOK_SOURCES` (`source=secret-id` pairs, comma separated) with `WEBHOOK_SCHEMES`
    /// (`source=scheme` pairs; a source not named there is on Standard Webhooks).
    pub sources: Vec<SourceConfig>,
    /// `SIGNATURE_TOLERANCE_SECONDS`, default 300.
    pub tolerance_secs: u64,
    /// `IDEMPOTENCY_TTL_SECONDS`: how long a handled delivery is remembered, default 72 h (senders
    /// such as Stripe retry for up to three days).
    pub idempotency_ttl_secs: u64,
}

impl Config {
    /// Reads and checks every variable.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        const SOURCES_EXPECTED: &str = "comma-separated source=secret-id pairs naming known sources, such as shop=busline/webhooks/shop";
        let raw = env.require("WEBHOOK_SOURCES", SOURCES_EXPECTED)?;
        let invalid = || ConfigError::Invalid {
            name: "WEBHOOK_SOURCES",
            value: raw.clone(),
            expected: SOURCES_EXPECTED,
        };
        let pairs = |raw: &str| -> Option<Vec<(String, String)>> {
            if raw.trim().is_empty() {
                return Some(Vec::new());
            }
            raw.split(',')
                .map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    let (name, value) = (name.trim(), value.trim());
                    (SOURCES.iter().any(|s| s.name == name) && !value.is_empty())
                        .then(|| (name.to_owned(), value.to_owned()))
                })
                .collect()
        };
        const SCHEMES_EXPECTED: &str = "comma-separated source=scheme pairs for configured sources, the schemes being standard-webhooks, stripe, github, shopify or busline-v1";
        let raw_schemes = env.get("WEBHOOK_SCHEMES").unwrap_or_default();
        let invalid_schemes = || ConfigError::Invalid {
            name: "WEBHOOK_SCHEMES",
            value: raw_schemes.clone(),
            expected: SCHEMES_EXPECTED,
        };
        let schemes = pairs(&raw_schemes)
            .ok_or_else(invalid_schemes)?
            .into_iter()
            .map(|(name, scheme)| Scheme::parse(&scheme).map(|s| (name, s)))
            .collect::<Option<HashMap<_, _>>>()
            .ok_or_else(invalid_schemes)?;
        let sources: Vec<SourceConfig> = pairs(&raw)
            .filter(|p| !p.is_empty())
            .ok_or_else(invalid)?
            .into_iter()
            .map(|(name, secret_id)| SourceConfig {
                scheme: schemes
                    .get(&name)
                    .copied()
                    .unwrap_or(Scheme::StandardWebhooks),
                name,
                secret_id,
            })
            .collect();
        if schemes
            .keys()
            .any(|name| !sources.iter().any(|s| &s.name == name))
        {
            return Err(invalid_schemes());
        }
        Ok(Self {
            bus_name: env.require("BUS_NAME", "the name or ARN of the event bus to publish to")?,
            idempotency_table: env.require(
                "IDEMPOTENCY_TABLE",
                "the name of the DynamoDB idempotency table",
            )?,
            sources,
            tolerance_secs: env.parse_or(
                "SIGNATURE_TOLERANCE_SECONDS",
                signature::DEFAULT_TOLERANCE_SECS,
                "seconds, a whole number",
            )?,
            idempotency_ttl_secs: env.parse_or(
                "IDEMPOTENCY_TTL_SECONDS",
                72 * 3600,
                "seconds, a whole number",
            )?,
        })
    }
}

/// A live source: its spec, compiled schema, scheme and signing key.
#[derive(Debug)]
pub struct Source {
    pub(crate) spec: &'static SourceSpec,
    pub(crate) event_type: EventType,
    pub(crate) schema: Schema,
    pub(crate) scheme: Scheme,
    pub(crate) key: SigningKey,
}

impl Source {
    /// Compiles the source `name`, signed under `scheme` with `secret`.
    pub fn new(name: &str, scheme: Scheme, secret: &str) -> Result<Self, StartupError> {
        let spec = SOURCES
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| StartupError::UnknownSource(name.to_owned()))?;
        Ok(Self {
            spec,
            event_type: EventType::parse(spec.event_type).map_err(StartupError::EventType)?,
            schema: Schema::generated(Some(spec.schema_id), spec.validator),
            scheme,
            key: scheme
                .key(secret)
                .map_err(|source| StartupError::BadSecret {
                    source_name: name.to_owned(),
                    scheme,
                    source,
                })?,
        })
    }
}

/// Why the function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A variable is missing or does not parse (see [`Config::from_env`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A configured source has no spec in [`SOURCES`].
    #[error("source {0:?} is not one this binary can ingest")]
    UnknownSource(String),
    /// A built-in event type is not versioned.
    #[error("a built-in event type is invalid")]
    EventType(#[source] EnvelopeError),
    /// A signing secret is not a key of its source's scheme.
    #[error("the signing secret of source {source_name} is not a {scheme} secret: {source}")]
    BadSecret {
        /// The source's name, as in `WEBHOOK_SOURCES`.
        source_name: String,
        /// The scheme `WEBHOOK_SCHEMES` gives it (Standard Webhooks when it gives none).
        scheme: Scheme,
        /// What is wrong with it.
        #[source]
        source: signature::KeyError,
    },
    /// Two sources share a signing secret, so a request signed for one would pass for the other.
    #[error(
        "sources {0} and {1} share a signing secret; give each source its own, or a request for one can be replayed to the other"
    )]
    SharedSecret(String, String),
    /// A signing secret could not be read.
    #[error(
        "could not read signing secret {secret_id} for source {source_name}; check that it exists and that the function may read it"
    )]
    Secret {
        /// The source's name, as in `WEBHOOK_SOURCES`.
        source_name: String,
        /// The secret's name or ARN.
        secret_id: String,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Reads every configured source's signing secret from Secrets Manager, in one round trip
/// (`BatchGetSecretValue`): each read sits on the cold-start path.
pub async fn fetch_secrets(
    client: &aws_sdk_secretsmanager::Client,
    config: &Config,
) -> Result<Vec<(String, String)>, StartupError> {
    let ids: Vec<&str> = config
        .sources
        .iter()
        .map(|s| s.secret_id.as_str())
        .collect();
    let secrets = busline::aws::secret_strings(client, &ids)
        .await
        .map_err(|e| {
            let failed = match &e {
                busline::aws::SecretError::Unreadable { secret_id, .. }
                | busline::aws::SecretError::Empty { secret_id } => secret_id.as_str(),
            };
            // The source whose secret failed; when the whole call failed, every source's.
            let source_name = config
                .sources
                .iter()
                .find(|s| s.secret_id == failed)
                .map_or_else(
                    || {
                        config
                            .sources
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                    |s| s.name.clone(),
                );
            StartupError::Secret {
                source_name,
                secret_id: failed.to_owned(),
                source: Box::new(e),
            }
        })?;
    Ok(config
        .sources
        .iter()
        .map(|s| s.name.clone())
        .zip(secrets)
        .collect())
}
