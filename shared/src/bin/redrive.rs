//! `make redrive`: lists what sits in each of the stack's dead-letter queues, with the reason, and
//! moves chosen letters back to the queue they came from.
//!
//! ```text
//! redrive [list] [--peek N]                       every *DeadLetterQueueUrl output: depth, N letters
//! redrive move <output key | queue URL> [--error-type T] [--message-id ID]... [--limit N]
//! ```
//!
//! It reads the stack `busline` (or `STACK_NAME`) with the usual AWS settings (`AWS_ENDPOINT_URL`
//! for LocalStack).

use busline::redrive::{Selection, depth, peek, redrive};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn usage() -> ! {
    eprintln!(
        "usage: redrive [list] [--peek N]\n       redrive move <output key | queue URL> [--error-type T] [--message-id ID]... [--limit N]"
    );
    std::process::exit(2)
}

async fn dead_letter_queues(aws: &aws_config::SdkConfig) -> Result<Vec<(String, String)>, Error> {
    let stack = std::env::var("STACK_NAME").unwrap_or_else(|_| "busline".to_owned());
    let out = aws_sdk_cloudformation::Client::new(aws)
        .describe_stacks()
        .stack_name(&stack)
        .send()
        .await
        .map_err(|e| {
            format!("stack {stack} not found (deploy it first: make deploy-local): {e}")
        })?;
    let mut queues: Vec<(String, String)> = out
        .stacks()
        .first()
        .map(|s| s.outputs())
        .unwrap_or_default()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .filter(|(key, _)| key.ends_with("DeadLetterQueueUrl"))
        .collect();
    queues.sort();
    Ok(queues)
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max).collect::<String>())
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let aws = busline::aws::load_config().await?;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let value = |flag: &str| -> Vec<String> {
        args.windows(2)
            .filter_map(|w| match w {
                [name, value] if name == flag => Some(value.clone()),
                _ => None,
            })
            .collect()
    };
    let number = |flag: &str| -> Option<usize> {
        value(flag)
            .first()
            .map(|n| n.parse().unwrap_or_else(|_| usage()))
    };
    match args.first().map(String::as_str) {
        None | Some("list") | Some("--peek") => {
            let show = number("--peek").unwrap_or(5);
            for (key, url) in dead_letter_queues(&aws).await? {
                let count = depth(&sqs, &url).await?;
                println!("{key}: {count} message(s)  {url}");
                for letter in peek(&sqs, &url, show.min(count as usize)).await? {
                    println!(
                        "  {}  {}  received {}x  from {}\n      reason: {}\n      body: {}",
                        letter.message_id,
                        letter
                            .error_type
                            .as_deref()
                            .unwrap_or("(moved by SQS after maxReceiveCount)"),
                        letter.receive_count,
                        letter.source.as_deref().unwrap_or("(its source queue)"),
                        one_line(letter.reason.as_deref().unwrap_or("-"), 200),
                        one_line(&letter.body, 120),
                    );
                }
            }
            println!(
                "\nRedrive with: make redrive ARGS=\"move <queue> [--error-type T] [--message-id ID] [--limit N]\""
            );
        }
        Some("move") => {
            let Some(queue) = args.get(1).filter(|q| !q.starts_with("--")) else {
                usage()
            };
            let url = if queue.starts_with("http") {
                queue.clone()
            } else {
                dead_letter_queues(&aws)
                    .await?
                    .into_iter()
                    .find(|(key, _)| key == queue)
                    .map(|(_, url)| url)
                    .ok_or_else(|| format!("the stack has no output {queue}"))?
            };
            let selection = Selection {
                error_type: value("--error-type").into_iter().next(),
                message_ids: value("--message-id"),
                limit: number("--limit"),
            };
            let total = depth(&sqs, &url).await?;
            println!("redriving from {url} ({total} message(s) in it) with {selection:?}");
            let done = redrive(&sqs, &url, &selection, |so_far| {
                println!(
                    "  … {} moved, {} skipped",
                    so_far.moved,
                    so_far.skipped.len()
                );
            })
            .await?;
            for (id, why) in &done.skipped {
                println!("  skipped {id}: {why}");
            }
            println!(
                "{} moved back to their source queue, {} skipped",
                done.moved,
                done.skipped.len()
            );
        }
        _ => usage(),
    }
    Ok(())
}
