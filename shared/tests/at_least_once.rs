//! Property: under any interleaving of duplicate deliveries, handler failures, crashes after the
//! side effect, and redeliveries of N messages through an SQS queue with a redrive policy, the batch
//! and idempotency layers together give `processed + dead-lettered = sent`, and no side effect
//! happens twice.
//!
//! The queue is modelled as SQS behaves: a receive makes a message invisible and counts it; a message
//! received more than `maxReceiveCount` times moves to the dead-letter queue instead; a batch
//! response deletes what succeeded; a crashed invocation deletes nothing. Standard queues may also
//! deliver a message again after it was deleted, and to two consumers at once.
//!
//! The model assumes what at-least-once delivery cannot repair and idempotency does not claim to: a
//! healthy message is not failed or crashed on its last allowed receive (it would be dead-lettered
//! with its effect applied), and a crash happens after the idempotency record completes, not between
//! the side effect and that write.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code, which fails by panicking"
)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use busline::batch::BatchProcessor;
use busline::error::{Classify, ErrorClass};
use busline::idempotency::{Idempotency, InMemoryIdempotencyStore, Selector};
use proptest::prelude::*;
use serde_json::json;

const MAX_RECEIVE_COUNT: u32 = 3;

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("message {0} is poison")]
    Poison(usize),
    #[error("message {0} failed this time")]
    Transient(usize),
}

impl Classify for Failure {
    fn class(&self) -> ErrorClass {
        ErrorClass::Retryable
    }
    fn error_type(&self) -> &'static str {
        "Failure"
    }
}

/// One step of the schedule.
#[derive(Clone, Debug)]
enum Step {
    /// Receive up to `size` visible messages and invoke the consumer; `fail` picks messages of the
    /// batch (by position) whose handler fails this time; `crash` loses the invocation's answer.
    Deliver {
        size: usize,
        fail: Vec<usize>,
        crash: bool,
    },
    /// Deliver an already-deleted message again.
    Ghost { pick: usize },
    /// Two consumers receive the same visible message at once.
    Concurrent { pick: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1..6usize, prop::collection::vec(0..6usize, 0..3), prop::bool::weighted(0.2))
            .prop_map(|(size, fail, crash)| Step::Deliver { size, fail, crash }),
        1 => (0..64usize).prop_map(|pick| Step::Ghost { pick }),
        1 => (0..64usize).prop_map(|pick| Step::Concurrent { pick }),
    ]
}

#[derive(Default)]
struct Queue {
    visible: BTreeSet<usize>,
    receives: BTreeMap<usize, u32>,
    deleted: BTreeSet<usize>,
    dead_letters: BTreeSet<usize>,
}

impl Queue {
    /// Receives `id` as SQS would: counted, or moved to the DLQ past `maxReceiveCount`.
    fn receive(&mut self, id: usize) -> bool {
        self.visible.remove(&id);
        let count = self.receives.entry(id).or_default();
        *count += 1;
        if *count > MAX_RECEIVE_COUNT {
            self.dead_letters.insert(id);
            return false;
        }
        true
    }

    /// Whether `id` can be received `extra` more times and still get a clean receive after.
    fn can_afford(&self, id: usize, extra: u32) -> bool {
        self.receives.get(&id).copied().unwrap_or(0) + extra < MAX_RECEIVE_COUNT
    }
}

fn sqs_event(ids: &[usize]) -> SqsEvent {
    let records: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({
                "messageId": format!("delivery-{i}-of-{id}"),
                "body": json!({"order_id": id}).to_string(),
                "attributes": {}, "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:orders",
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn order_id(message: &SqsMessage) -> usize {
    let body: serde_json::Value =
        serde_json::from_str(message.body.as_deref().unwrap_or_default()).unwrap();
    body["order_id"].as_u64().unwrap() as usize
}

struct Consumer {
    idempotency: Idempotency<InMemoryIdempotencyStore, SqsMessage>,
    processor: BatchProcessor,
    poison: BTreeSet<usize>,
    /// How many times each order's side effect happened.
    effects: RefCell<BTreeMap<usize, u32>>,
    claimed_mode: bool,
}

impl Consumer {
    /// Invokes the consumer on `ids`; returns the ids whose messages the response deletes.
    async fn invoke(&self, ids: &[usize], failing: &BTreeSet<usize>) -> BTreeSet<usize> {
        let event = sqs_event(ids);
        let effect = async |id: usize| -> Result<u32, Failure> {
            tokio::task::yield_now().await;
            if self.poison.contains(&id) {
                return Err(Failure::Poison(id));
            }
            if failing.contains(&id) {
                return Err(Failure::Transient(id));
            }
            let mut effects = self.effects.borrow_mut();
            let count = effects.entry(id).or_default();
            *count += 1;
            Ok(*count)
        };
        let report = if self.claimed_mode {
            self.processor
                .sqs_claimed(
                    &event,
                    &self.idempotency,
                    None,
                    |m| Ok::<_, Failure>(m.clone()),
                    async |m: &SqsMessage| effect(order_id(m)).await,
                )
                .await
        } else {
            self.processor
                .sqs(&event, async |m| {
                    let id = order_id(m);
                    self.idempotency.run(m, None, || effect(id)).await
                })
                .await
        };
        let failed: BTreeSet<&str> = report
            .response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        event
            .records
            .iter()
            .filter(|m| !failed.contains(m.message_id.as_deref().unwrap()))
            .map(order_id)
            .collect()
    }

    /// Receives `ids` from `queue` and invokes the consumer; `crash` loses the answer.
    async fn deliver(
        &self,
        queue: &mut Queue,
        ids: Vec<usize>,
        fail: &BTreeSet<usize>,
        crash: bool,
    ) {
        let received: Vec<usize> = ids.into_iter().filter(|id| queue.receive(*id)).collect();
        if received.is_empty() {
            return;
        }
        let deleted = self.invoke(&received, fail).await;
        for id in received {
            if !crash && deleted.contains(&id) {
                queue.deleted.insert(id);
            } else {
                queue.visible.insert(id);
            }
        }
    }
}

fn run(sent: usize, poison: BTreeSet<usize>, schedule: Vec<Step>, claimed_mode: bool) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let consumer = Consumer {
            idempotency: Idempotency::new(
                InMemoryIdempotencyStore::new(),
                "orders",
                Selector::function(|m: &SqsMessage| Some(order_id(m).to_string())),
            ),
            processor: BatchProcessor::new().concurrency(3),
            poison: poison.clone(),
            effects: RefCell::default(),
            claimed_mode,
        };
        let mut queue = Queue {
            visible: (0..sent).collect(),
            ..Queue::default()
        };
        let healthy = |id: &usize| !poison.contains(id);

        for step in schedule {
            match step {
                Step::Deliver { size, fail, crash } => {
                    let batch: Vec<usize> = queue.visible.iter().copied().take(size).collect();
                    let fail: BTreeSet<usize> = fail
                        .iter()
                        .filter_map(|i| batch.get(*i).copied())
                        .filter(|id| queue.can_afford(*id, 1))
                        .collect();
                    let crash = crash
                        && batch
                            .iter()
                            .all(|id| !healthy(id) || queue.can_afford(*id, 1));
                    consumer.deliver(&mut queue, batch, &fail, crash).await;
                }
                Step::Ghost { pick } => {
                    let Some(&id) = queue.deleted.iter().nth(pick % queue.deleted.len().max(1))
                    else {
                        continue;
                    };
                    let deleted = consumer.invoke(&[id], &BTreeSet::new()).await;
                    assert!(
                        deleted.contains(&id),
                        "a ghost redelivery of a handled message is acknowledged"
                    );
                }
                Step::Concurrent { pick } => {
                    let Some(&id) = queue.visible.iter().nth(pick % queue.visible.len().max(1))
                    else {
                        continue;
                    };
                    // Both receives count, and the loser fails: only while the message can afford it.
                    if healthy(&id) && !queue.can_afford(id, 2) {
                        continue;
                    }
                    if !(queue.receive(id) && queue.receive(id)) {
                        queue.visible.remove(&id);
                        continue;
                    }
                    let (none, ids) = (BTreeSet::new(), [id]);
                    let (a, b) =
                        tokio::join!(consumer.invoke(&ids, &none), consumer.invoke(&ids, &none));
                    if a.contains(&id) || b.contains(&id) {
                        queue.deleted.insert(id);
                    } else {
                        queue.visible.insert(id);
                    }
                }
            }
        }
        // Drain: SQS keeps redelivering until every message is deleted or dead-lettered.
        while !queue.visible.is_empty() {
            let batch: Vec<usize> = queue.visible.iter().copied().take(10).collect();
            consumer
                .deliver(&mut queue, batch, &BTreeSet::new(), false)
                .await;
        }

        let effects = consumer.effects.borrow();
        assert!(
            effects.values().all(|&n| n == 1),
            "a side effect happened twice: {effects:?}"
        );
        let processed: BTreeSet<usize> = effects.keys().copied().collect();
        assert!(
            processed.is_disjoint(&queue.dead_letters),
            "{processed:?} {:?}",
            queue.dead_letters
        );
        assert_eq!(processed.len() + queue.dead_letters.len(), sent);
        assert_eq!(
            queue.dead_letters, poison,
            "exactly the poison messages are dead-lettered"
        );
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn processed_plus_dead_lettered_equals_sent_and_no_effect_happens_twice(
        sent in 1..12usize,
        poison in prop::collection::btree_set(0..12usize, 0..3),
        schedule in prop::collection::vec(step(), 0..24),
        claimed_mode in any::<bool>(),
    ) {
        let poison = poison.into_iter().filter(|id| *id < sent).collect();
        run(sent, poison, schedule, claimed_mode);
    }
}
