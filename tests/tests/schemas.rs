//! Schema evolution rules, enforced on the real schemas.
//!
//! **Rule (forward compatibility within a version):** a published canonical schema
//! (`infra/schemas/canonical/<type>.v<N>.json`) may only change in ways every consumer written
//! against any earlier revision of it accepts: no required field removed, no type changed, no enum
//! widened, no constraint loosened, no closed object opened (see `busline::schema::compat`). A
//! change that breaks a consumer is a new version, `v<N+1>`, with an upcaster. "Earlier revisions"
//! are every revision of the file committed to this repository, read from git.

use std::path::{Path, PathBuf};
use std::process::Command;

use busline::canonical::SCHEMAS;
use busline::schema::compat::{Rule, breaking_changes};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn git(args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("git runs: the compatibility check reads the schemas' history from git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn file_of(event_type: &str) -> String {
    let name = event_type.trim_start_matches("io.busline.");
    format!("infra/schemas/canonical/{name}.json")
}

#[test]
fn no_committed_revision_of_a_canonical_schema_is_broken_by_the_current_one() {
    let mut checked = 0;
    let mut breaks = Vec::new();
    for (event_type, _, text) in SCHEMAS {
        let path = file_of(event_type);
        let current: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            std::fs::read_to_string(repo().join(&path)).unwrap(),
            *text,
            "{path} is the schema of {event_type}"
        );
        for commit in git(&["log", "--format=%H", "--", &path]).lines() {
            let old: Value =
                serde_json::from_str(&git(&["show", &format!("{commit}:{path}")])).unwrap();
            checked += 1;
            for b in breaking_changes(&old, &current) {
                breaks.push(format!("{path} against {}: {b}", &commit[..10]));
            }
        }
    }
    assert!(
        breaks.is_empty(),
        "breaking changes:\n{}",
        breaks.join("\n")
    );
    // Every canonical schema is committed at least once (a new schema is published by its commit).
    println!("checked {checked} committed revisions");
}

#[test]
fn the_check_catches_a_deliberately_breaking_change() {
    let current: Value = serde_json::from_str(
        SCHEMAS
            .iter()
            .find(|(t, _, _)| *t == "io.busline.order.placed.v2")
            .unwrap()
            .2,
    )
    .unwrap();
    let breaking: Value = serde_json::from_str(include_str!(
        "../fixtures/schemas/order.placed.v2.breaking.json"
    ))
    .unwrap();
    let mut found: Vec<(Rule, String)> = breaking_changes(&current, &breaking)
        .into_iter()
        .map(|b| (b.rule, b.path))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (Rule::RequiredRemoved, "/customer/email".to_owned()),
            (Rule::TypeChanged, "/total_cents".to_owned()),
            (Rule::ConstraintLoosened, "/total_cents".to_owned()),
        ]
    );
}

#[test]
fn v2_breaks_v1_so_it_is_a_new_version_with_an_upcaster() {
    let schema = |t: &str| -> Value {
        serde_json::from_str(SCHEMAS.iter().find(|(n, _, _)| *n == t).unwrap().2).unwrap()
    };
    // A consumer of v2 cannot read a v1 event (v1 lacks the channel and line numbers v2 requires),
    // so the change had to be a new version, and v2's consumers upcast v1 events.
    let v1 = schema("io.busline.order.placed.v1");
    let v2 = schema("io.busline.order.placed.v2");
    assert!(
        breaking_changes(&v2, &v1)
            .iter()
            .any(|b| b.rule == Rule::RequiredRemoved)
    );
}
