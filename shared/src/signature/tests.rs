use std::collections::HashMap;

use super::*;

const NOW: u64 = 1_800_000_000;
const BODY: &[u8] = br#"{"id":"evt_1","order_id":"SO-1"}"#;

/// The Standard Webhooks specification's own example (its libraries' tests use it).
const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const SW_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
const SW_TIMESTAMP: u64 = 1_649_367_553;
const SW_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
const SW_SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

fn check(
    scheme: Scheme,
    secret: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    now: u64,
) -> Result<Verified, SignatureError> {
    let headers: HashMap<String, &str> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), *v))
        .collect();
    verify(
        scheme,
        &scheme.key(secret).unwrap(),
        |name| headers.get(name).copied(),
        body,
        now,
        300,
    )
}

fn standard(id: &str, timestamp: u64, signature: &str) -> Vec<(&'static str, String)> {
    vec![
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature.to_owned()),
    ]
}

fn refs<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn every_scheme_has_a_name_configuration_can_use() {
    for scheme in Scheme::ALL {
        assert_eq!(Scheme::parse(scheme.name()), Some(scheme));
    }
    assert_eq!(Scheme::parse("hmac"), None);
}

#[test]
fn the_standard_webhooks_example_verifies_and_is_deduplicated_on_its_signed_id() {
    let key = Scheme::StandardWebhooks.key(SW_SECRET).unwrap();
    assert_eq!(
        standard_webhooks_sign(&key, SW_ID, SW_TIMESTAMP as i64, SW_BODY).as_deref(),
        Some(SW_SIGNATURE)
    );
    let verified = check(
        Scheme::StandardWebhooks,
        SW_SECRET,
        &refs(&standard(SW_ID, SW_TIMESTAMP, SW_SIGNATURE)),
        SW_BODY,
        SW_TIMESTAMP + 10,
    )
    .unwrap();
    assert_eq!(verified.delivery_id, SW_ID);
    assert_eq!(verified.single_use, None);
}

#[test]
fn a_standard_webhooks_signature_binds_the_id_the_time_and_the_body() {
    let headers = standard(SW_ID, SW_TIMESTAMP, SW_SIGNATURE);
    let now = SW_TIMESTAMP;
    let fresh_id = standard("msg_fresh", SW_TIMESTAMP, SW_SIGNATURE);
    let moved = standard(SW_ID, SW_TIMESTAMP + 1, SW_SIGNATURE);
    for (case, headers, body) in [
        ("a fresh id", &fresh_id, SW_BODY),
        ("a moved timestamp", &moved, SW_BODY),
        (
            "another body",
            &headers,
            br#"{"email":"x@example.com"}"#.as_slice(),
        ),
    ] {
        assert_eq!(
            check(
                Scheme::StandardWebhooks,
                SW_SECRET,
                &refs(headers),
                body,
                now
            ),
            Err(SignatureError::Mismatch),
            "{case}"
        );
    }
}

#[test]
fn standard_webhooks_accepts_any_of_several_signatures_and_skips_other_versions() {
    let old = Scheme::StandardWebhooks
        .key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap();
    let rotated = format!(
        "v1a,bm90LWFzeW1tZXRyaWM= {} {SW_SIGNATURE}",
        standard_webhooks_sign(&old, SW_ID, SW_TIMESTAMP as i64, SW_BODY).unwrap()
    );
    let headers = standard(SW_ID, SW_TIMESTAMP, &rotated);
    assert!(
        check(
            Scheme::StandardWebhooks,
            SW_SECRET,
            &refs(&headers),
            SW_BODY,
            SW_TIMESTAMP
        )
        .is_ok()
    );
    let partial = standard(SW_ID, SW_TIMESTAMP, &SW_SIGNATURE[..12]);
    assert_eq!(
        check(
            Scheme::StandardWebhooks,
            SW_SECRET,
            &refs(&partial),
            SW_BODY,
            SW_TIMESTAMP
        ),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn timestamps_are_accepted_up_to_the_tolerance_and_refused_one_second_past_it() {
    let key = Scheme::StandardWebhooks.key(SW_SECRET).unwrap();
    for (offset, ok) in [(-301i64, false), (-300, true), (300, true), (301, false)] {
        let timestamp = (NOW as i64 + offset) as u64;
        let signature = standard_webhooks_sign(&key, SW_ID, timestamp as i64, BODY).unwrap();
        let headers = standard(SW_ID, timestamp, &signature);
        let result = check(
            Scheme::StandardWebhooks,
            SW_SECRET,
            &refs(&headers),
            BODY,
            NOW,
        );
        assert_eq!(result.is_ok(), ok, "{offset}: {result:?}");
        if !ok {
            assert_eq!(
                result,
                Err(SignatureError::Expired {
                    age_secs: 301,
                    tolerance_secs: 300
                })
            );
        }
        let stripe = timestamped_sign(b"whsec_stripe", timestamp, BODY);
        let result = check(
            Scheme::Stripe,
            "whsec_stripe",
            &[("Stripe-Signature", &stripe)],
            BODY,
            NOW,
        );
        assert_eq!(result.is_ok(), ok, "stripe {offset}: {result:?}");
    }
}

#[test]
fn a_standard_webhooks_secret_is_base64_of_24_to_64_bytes() {
    assert_eq!(
        Scheme::StandardWebhooks.key("whsec_not base64!"),
        Err(KeyError::NotBase64)
    );
    assert_eq!(
        Scheme::StandardWebhooks.key("whsec_c2hvcnQ="),
        Err(KeyError::Length(5))
    );
    // The prefix is optional: a secret generated as plain base64 works as it is.
    assert_eq!(
        Scheme::StandardWebhooks.key("C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
        Scheme::StandardWebhooks.key(SW_SECRET)
    );
    assert_eq!(Scheme::GitHub.key(""), Err(KeyError::Empty));
    assert_eq!(
        format!("{:?}", Scheme::GitHub.key("hunter2").unwrap()),
        "SigningKey(7 bytes)"
    );
}

#[test]
fn missing_or_malformed_standard_webhooks_headers_are_refused() {
    let full = standard(SW_ID, SW_TIMESTAMP, SW_SIGNATURE);
    let no_id: Vec<_> = full
        .iter()
        .filter(|(k, _)| *k != "webhook-id")
        .cloned()
        .collect();
    assert_eq!(
        check(
            Scheme::StandardWebhooks,
            SW_SECRET,
            &refs(&no_id),
            SW_BODY,
            SW_TIMESTAMP
        ),
        Err(SignatureError::DeliveryId("webhook-id"))
    );
    for missing in ["webhook-timestamp", "webhook-signature"] {
        let headers: Vec<_> = full
            .iter()
            .filter(|(k, _)| *k != missing)
            .cloned()
            .collect();
        assert!(
            matches!(
                check(Scheme::StandardWebhooks, SW_SECRET, &refs(&headers), SW_BODY, SW_TIMESTAMP),
                Err(SignatureError::Missing(name)) if name == missing
            ),
            "{missing}"
        );
    }
    let bad_time = standard(SW_ID, 0, SW_SIGNATURE)
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                if k == "webhook-timestamp" {
                    "soon".to_owned()
                } else {
                    v
                },
            )
        })
        .collect::<Vec<_>>();
    assert!(matches!(
        check(
            Scheme::StandardWebhooks,
            SW_SECRET,
            &refs(&bad_time),
            SW_BODY,
            SW_TIMESTAMP
        ),
        Err(SignatureError::Malformed { .. })
    ));
    let key = Scheme::StandardWebhooks.key(SW_SECRET).unwrap();
    let odd_id = "msg 1\n";
    let signature = standard_webhooks_sign(&key, odd_id, SW_TIMESTAMP as i64, SW_BODY).unwrap();
    assert_eq!(
        check(
            Scheme::StandardWebhooks,
            SW_SECRET,
            &refs(&standard(odd_id, SW_TIMESTAMP, &signature)),
            SW_BODY,
            SW_TIMESTAMP
        ),
        Err(SignatureError::DeliveryId("webhook-id"))
    );
}

#[test]
fn a_stripe_event_is_deduplicated_on_the_id_in_its_signed_body() {
    let signature = timestamped_sign(b"whsec_stripe", NOW, BODY);
    let verified = check(
        Scheme::Stripe,
        "whsec_stripe",
        &[("stripe-signature", &signature)],
        BODY,
        NOW,
    )
    .unwrap();
    assert_eq!(verified.delivery_id, "evt_1");
    let no_id = br#"{"object":"event"}"#;
    let signature = timestamped_sign(b"whsec_stripe", NOW, no_id);
    assert_eq!(
        check(
            Scheme::Stripe,
            "whsec_stripe",
            &[("stripe-signature", &signature)],
            no_id,
            NOW
        ),
        Err(SignatureError::DeliveryId("the event's id in the body"))
    );
}

#[test]
fn github_and_shopify_are_deduplicated_on_the_body_never_on_their_unsigned_ids() {
    let github = github_signature(b"gh-secret", BODY);
    let first = check(
        Scheme::GitHub,
        "gh-secret",
        &[
            ("X-Hub-Signature-256", &github),
            ("X-GitHub-Delivery", "guid-1"),
        ],
        BODY,
        NOW,
    )
    .unwrap();
    let replayed = check(
        Scheme::GitHub,
        "gh-secret",
        &[
            ("X-Hub-Signature-256", &github),
            ("X-GitHub-Delivery", "guid-2"),
        ],
        BODY,
        NOW + 86_400,
    )
    .unwrap();
    assert_eq!(first.delivery_id, replayed.delivery_id);
    assert_eq!(first.sender_id.as_deref(), Some("guid-1"));
    assert!(first.delivery_id.starts_with("sha256-"));

    let shopify = shopify_signature(b"shpss_secret", BODY);
    let verified = check(
        Scheme::Shopify,
        "shpss_secret",
        &[
            ("X-Shopify-Hmac-Sha256", &shopify),
            ("X-Shopify-Webhook-Id", "w-1"),
        ],
        BODY,
        NOW,
    )
    .unwrap();
    assert_eq!(verified.delivery_id, first.delivery_id);
    assert_eq!(verified.sender_id.as_deref(), Some("w-1"));

    for (scheme, header, value) in [
        (Scheme::GitHub, "x-hub-signature-256", github.as_str()),
        (Scheme::Shopify, "x-shopify-hmac-sha256", shopify.as_str()),
    ] {
        let secret = if scheme == Scheme::GitHub {
            "gh-secret"
        } else {
            "shpss_secret"
        };
        assert_eq!(
            check(
                scheme,
                secret,
                &[(header, value)],
                br#"{"id":"evt_2"}"#,
                NOW
            ),
            Err(SignatureError::Mismatch),
            "{scheme}"
        );
        assert!(matches!(
            check(scheme, secret, &[(header, "sha1=abc")], BODY, NOW),
            Err(SignatureError::Malformed { .. })
        ));
    }
}

#[test]
fn a_busline_v1_signature_is_single_use_and_keyed_on_its_delivery_id() {
    let signature = timestamped_sign(b"legacy", NOW - 10, BODY);
    let first = check(
        Scheme::BuslineV1,
        "legacy",
        &[
            ("X-Busline-Signature", &signature),
            ("X-Delivery-Id", "d-1"),
        ],
        BODY,
        NOW,
    )
    .unwrap();
    let replay = check(
        Scheme::BuslineV1,
        "legacy",
        &[
            ("X-Busline-Signature", &signature),
            ("X-Delivery-Id", "d-2"),
        ],
        BODY,
        NOW,
    )
    .unwrap();
    assert_eq!(first.delivery_id, "d-1");
    // The same signature under another id carries the same token: the receiver refuses it.
    let token = first.single_use.clone().unwrap();
    assert_eq!(replay.single_use.unwrap(), token);
    assert_eq!(token.expires_at, NOW - 10 + 300);
    assert_eq!(token.token.len(), 64);
    assert!(!signature.contains(&token.token));
    // Junk entries around the matching one do not make a new token.
    let padded = format!("{signature},v1=00,v0=ff");
    let padded = check(
        Scheme::BuslineV1,
        "legacy",
        &[("X-Busline-Signature", &padded), ("X-Delivery-Id", "d-3")],
        BODY,
        NOW,
    )
    .unwrap();
    assert_eq!(padded.single_use.unwrap(), token);
    assert_eq!(
        check(
            Scheme::BuslineV1,
            "legacy",
            &[("X-Busline-Signature", &signature)],
            BODY,
            NOW
        ),
        Err(SignatureError::DeliveryId("X-Delivery-Id"))
    );
}

#[test]
fn the_timestamped_scheme_refuses_malformed_headers_and_other_secrets() {
    for bad in [
        "",
        "v1=abcd",
        "t=now,v1=abcd",
        "t=1800000000",
        "t=1800000000,v1=zz",
        "garbage",
    ] {
        assert!(
            matches!(
                check(Scheme::Stripe, "s", &[("stripe-signature", bad)], BODY, NOW),
                Err(SignatureError::Malformed { .. })
            ),
            "{bad:?}"
        );
    }
    let other = timestamped_sign(b"someone-else", NOW, BODY);
    assert_eq!(
        check(
            Scheme::Stripe,
            "s",
            &[("stripe-signature", &other)],
            BODY,
            NOW
        ),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        check(Scheme::Stripe, "s", &[], BODY, NOW),
        Err(SignatureError::Missing("stripe-signature"))
    );
}

#[test]
fn the_timestamped_scheme_matches_a_known_vector() {
    // printf '1800000000.{"order_id":"SO-1"}' | openssl dgst -sha256 -hmac whsec_test
    assert_eq!(
        timestamped_sign(b"whsec_test", NOW, br#"{"order_id":"SO-1"}"#),
        "t=1800000000,v1=316d1a330558d3671198e08ea56eaf519a0c5a097111fc2f7299cb3dd9ebd22b"
    );
}

#[test]
fn github_matches_its_documented_test_vector() {
    // docs.github.com, "Validating webhook deliveries": secret, payload and expected signature.
    assert_eq!(
        github_signature(b"It's a Secret to Everybody", b"Hello, World!"),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
}

#[test]
fn standard_webhooks_matches_the_vector_its_official_libraries_share() {
    // standard-webhooks `libraries/python/tests/test_webhooks.py::test_sign_function`, the same in
    // the Go, JavaScript, Java and PHP suites.
    let key = Scheme::StandardWebhooks
        .key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap();
    assert_eq!(
        standard_webhooks_sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#
        )
        .as_deref(),
        Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    );
}

#[test]
fn shopify_matches_the_vector_of_its_app_library() {
    // Shopify/shopify-app-js `packages/apps/shopify-api/lib/webhooks/__tests__/validate.test.ts`,
    // with the suite's `apiSecretKey`.
    assert_eq!(
        shopify_signature(b"test_secret_key", br#"{"foo": "bar"}"#),
        "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="
    );
}

#[test]
fn stripe_keys_with_the_whole_secret_text_as_its_libraries_do() {
    // Stripe's libraries compute their expected headers at test time, so there is no published
    // vector; this one was made with Python's hmac and verified by the official `stripe` package
    // (16.1.0, `WebhookSignature.verify_header`), which keys with the secret's UTF-8 bytes,
    // `whsec_` included.
    let body = br#"{"id":"evt_test_webhook","object":"event"}"#;
    let header = "t=1700000000,v1=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990";
    assert_eq!(
        timestamped_sign(b"whsec_test_secret", 1_700_000_000, body),
        header
    );
    let verified = check(
        Scheme::Stripe,
        "whsec_test_secret",
        &[("Stripe-Signature", header)],
        body,
        1_700_000_100,
    )
    .unwrap();
    assert_eq!(verified.delivery_id, "evt_test_webhook");
    // The HMAC alone, against stripe-node's `test/crypto/helpers.ts` fixtures (key `test_secret`).
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"test_secret").unwrap();
    mac.update(br#"{"obj1":"hello","obj2":"world"}"#);
    assert_eq!(
        hex::encode(mac.finalize().into_bytes()),
        "bebb1a643997f419b315ddba19e6f5411e1ce7f810ba6d3617ce72823092f363"
    );
}
