//! The stack `make deploy-local` deployed, read from its outputs.

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use busline::signature::Scheme;
use serde_json::Value;

use crate::{DEFAULT_ENDPOINT, Headers, signed_headers_as};

/// The stack `make deploy-local` deployed from `template.yaml`, read from its outputs.
#[derive(Clone, Debug)]
pub struct DeployedStack {
    /// Every output, by key.
    pub outputs: std::collections::HashMap<String, String>,
}

impl DeployedStack {
    /// The name `samconfig.toml` gives the stack.
    pub const NAME: &str = "busline";

    /// Reads the deployed stack, failing with the command that deploys it.
    pub async fn read(config: &SdkConfig) -> Result<Self> {
        let stacks = aws_sdk_cloudformation::Client::new(config)
            .describe_stacks()
            .stack_name(Self::NAME)
            .send()
            .await
            .context("the busline stack is not deployed on LocalStack; run `make deploy-local` (`make test` does)")?;
        let outputs = stacks
            .stacks()
            .first()
            .context("no busline stack")?
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
            .collect();
        Ok(Self { outputs })
    }

    /// An output's value.
    pub fn output(&self, key: &str) -> Result<&str> {
        self.outputs
            .get(key)
            .map(String::as_str)
            .with_context(|| format!("the stack has no output {key}"))
    }

    /// Closes deliver-webhook's circuit to `subscription` (deletes its state): deliveries that
    /// earlier found no one listening leave it open, and the next ones would wait out its cool-off.
    pub async fn close_circuit(&self, config: &SdkConfig, subscription: &str) -> Result<()> {
        aws_sdk_dynamodb::Client::new(config)
            .delete_item()
            .table_name(self.output("CircuitTableName")?)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("circuit#{subscription}")),
            )
            .send()
            .await?;
        Ok(())
    }

    /// POSTs `body` to the deployed ingest function's URL at `path`.
    pub async fn post_webhook(
        &self,
        path: &str,
        body: &str,
        headers: &Headers,
    ) -> Result<(u16, Value)> {
        self.call(
            "WebhookUrl",
            reqwest::Method::POST,
            path,
            Some(body),
            headers,
        )
        .await
    }

    /// The scheme the deployed ingest function verifies `source` with (output `WebhookSchemes`,
    /// the function's `WEBHOOK_SCHEMES`; a source not named there is on Standard Webhooks).
    pub fn scheme_of(&self, source: &str) -> Result<Scheme> {
        let schemes = self.output("WebhookSchemes")?;
        match schemes
            .split(',')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == source)
        {
            None => Ok(Scheme::StandardWebhooks),
            Some((_, scheme)) => Scheme::parse(scheme)
                .with_context(|| format!("output WebhookSchemes names an unknown scheme {scheme}")),
        }
    }

    /// POSTs `body` to `/webhooks/{source}` signed with the secret in output `secret_output`, as
    /// the source system would (in the source's scheme), for delivery `delivery_id`.
    pub async fn post_signed(
        &self,
        config: &SdkConfig,
        source: &str,
        secret_output: &str,
        body: &Value,
        delivery_id: &str,
    ) -> Result<(u16, Value)> {
        let secret = self.secret(config, secret_output).await?;
        let text = body.to_string();
        let headers = signed_headers_as(
            self.scheme_of(source)?,
            &secret,
            &text,
            delivery_id,
            chrono::Utc::now().timestamp(),
        );
        self.post_webhook(&format!("/webhooks/{source}"), &text, &headers)
            .await
    }

    /// Calls the Function URL in output `url_output` at `path`, through LocalStack's gateway (the
    /// Function URL's host is named in the `Host` header, as DNS would route it), and returns the
    /// status and the JSON body (or the text as a JSON string).
    pub async fn call(
        &self,
        url_output: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
        headers: &Headers,
    ) -> Result<(u16, Value)> {
        let url = self.output(url_output)?;
        let host = url.trim_start_matches("http://").trim_end_matches('/');
        let endpoint =
            std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| DEFAULT_ENDPOINT.to_owned());
        let mut request = reqwest::Client::new()
            .request(method.clone(), format!("{endpoint}{path}"))
            .header("host", host);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path} on {url_output}"))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// The value of the secret whose ARN is in output `key`.
    pub async fn secret(&self, config: &SdkConfig, key: &str) -> Result<String> {
        aws_sdk_secretsmanager::Client::new(config)
            .get_secret_value()
            .secret_id(self.output(key)?)
            .send()
            .await?
            .secret_string
            .context("secret has no string")
    }
}
