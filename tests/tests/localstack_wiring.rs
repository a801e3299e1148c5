//! LocalStack's own wiring driving real function processes: an SQS event-source mapping with
//! partial batch responses and a dead-letter queue, and a Step Functions `lambda:invoke` task whose
//! `Catch` matches the function's `errorType`.

use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_lambda::types::FunctionResponseType;
use aws_sdk_sqs::types::QueueAttributeName;
use busline_tests::{PATIENCE, create_queue, deploy_process_function, localstack, receive};
use serde_json::{Value, json};

const PROBE: &str = env!("CARGO_BIN_EXE_probe-function");

fn unique(kind: &str) -> String {
    format!(
        "{kind}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

async fn queue(
    aws: &SdkConfig,
    name: &str,
    attributes: &[(QueueAttributeName, String)],
) -> (String, String) {
    create_queue(aws, name, attributes).await.unwrap()
}

#[tokio::test]
async fn an_sqs_mapping_redelivers_only_the_failed_record_until_it_lands_in_the_dlq() {
    let aws = localstack().await.unwrap();
    let name = unique("consumer");
    deploy_process_function(&aws, &name, PROBE, 3, &[])
        .await
        .unwrap();

    let (dlq_url, dlq_arn) = queue(&aws, &format!("{name}-dlq"), &[]).await;
    let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}).to_string();
    let (queue_url, queue_arn) = queue(
        &aws,
        &name,
        &[
            (QueueAttributeName::RedrivePolicy, redrive),
            (QueueAttributeName::VisibilityTimeout, "1".into()),
        ],
    )
    .await;
    aws_sdk_lambda::Client::new(&aws)
        .create_event_source_mapping()
        .function_name(&name)
        .event_source_arn(&queue_arn)
        .batch_size(10)
        .function_response_types(FunctionResponseType::ReportBatchItemFailures)
        .send()
        .await
        .unwrap();

    let sqs = aws_sdk_sqs::Client::new(&aws);
    for body in [
        json!({"order": "good"}),
        json!({"order": "poison", "fail": true}),
    ] {
        sqs.send_message()
            .queue_url(&queue_url)
            .message_body(body.to_string())
            .send()
            .await
            .unwrap();
    }

    // Only the record the function reported as failed is retried, twice, then dead-lettered.
    let dead = receive(&aws, &dlq_url, 1, Duration::from_secs(3), PATIENCE)
        .await
        .unwrap();
    let orders: Vec<&Value> = dead.iter().map(|m| &m["order"]).collect();
    assert_eq!(orders, [&json!("poison")]);

    let left = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert!(
        left.values().all(|count| count == "0"),
        "the source queue still holds messages: {left:?}"
    );
}

#[tokio::test]
async fn a_step_functions_catch_on_the_functions_error_type_takes_its_branch() {
    let aws = localstack().await.unwrap();
    let name = unique("reserve");
    deploy_process_function(&aws, &name, PROBE, 3, &[])
        .await
        .unwrap();
    let function_arn = format!("arn:aws:lambda:us-east-1:000000000000:function:{name}");
    let definition = json!({
        "StartAt": "Reserve",
        "States": {
            "Reserve": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": function_arn, "Payload.$": "$"},
                "OutputPath": "$.Payload",
                "Catch": [{"ErrorEquals": ["OutOfStock"], "ResultPath": "$.error", "Next": "Compensate"}],
                "End": true
            },
            "Compensate": {"Type": "Pass", "Result": "compensated", "ResultPath": "$.outcome", "End": true}
        }
    });
    let sfn = aws_sdk_sfn::Client::new(&aws);
    let machine = sfn
        .create_state_machine()
        .name(&name)
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::000000000000:role/busline-test")
        .send()
        .await
        .unwrap()
        .state_machine_arn;

    let run = async |input: Value| -> Value {
        let execution = sfn
            .start_execution()
            .state_machine_arn(&machine)
            .input(input.to_string())
            .send()
            .await
            .unwrap()
            .execution_arn;
        let started = Instant::now();
        loop {
            let out = sfn
                .describe_execution()
                .execution_arn(&execution)
                .send()
                .await
                .unwrap();
            if out.status().as_str() != "RUNNING" {
                assert_eq!(out.status().as_str(), "SUCCEEDED", "{out:?}");
                return serde_json::from_str(out.output().unwrap()).unwrap();
            }
            assert!(started.elapsed() < PATIENCE, "execution still running");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };

    let caught = run(json!({"fail": "OutOfStock"})).await;
    assert_eq!(caught["outcome"], "compensated");
    assert_eq!(caught["error"]["Error"], "OutOfStock");

    let passed = run(json!({"echo": "reserved"})).await;
    assert_eq!(passed["echo"], "reserved");
    assert_eq!(passed.get("outcome"), None);
}

#[tokio::test]
async fn a_dynamodb_stream_mapping_invokes_the_function_and_its_logs_reach_cloudwatch() {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
        ScalarAttributeType, StreamSpecification, StreamViewType,
    };
    let aws = localstack().await.unwrap();
    let name = unique("cdc");
    deploy_process_function(&aws, &name, PROBE, 3, &[])
        .await
        .unwrap();

    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let table = dynamodb
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let stream_arn = table.table_description.unwrap().latest_stream_arn.unwrap();
    aws_sdk_lambda::Client::new(&aws)
        .create_event_source_mapping()
        .function_name(&name)
        .event_source_arn(&stream_arn)
        .starting_position(aws_sdk_lambda::types::EventSourcePosition::TrimHorizon)
        .send()
        .await
        .unwrap();
    // A stream-enabled table loses its first record if written to at once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    dynamodb
        .put_item()
        .table_name(&name)
        .item("pk", AttributeValue::S("customer-1".into()))
        .send()
        .await
        .unwrap();

    let logs = aws_sdk_cloudwatchlogs::Client::new(&aws);
    let started = Instant::now();
    loop {
        let found = logs
            .filter_log_events()
            .log_group_name(format!("/aws/lambda/{name}"))
            .filter_pattern("\"probe record\"")
            .send()
            .await
            .map(|out| {
                out.events()
                    .iter()
                    .filter_map(|e| e.message().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if found
            .iter()
            .any(|line| line.contains("probe record: aws:dynamodb INSERT"))
        {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "no invocation from the stream reached the function's log group"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
