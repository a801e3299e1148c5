"""Deletes the rules a stack left behind on its event bus: those named after the stack that are no
longer among its resources.

    python infra/localstack/prune_rules.py <stack> <output naming the bus>

LocalStack deletes a replaced `AWS::Events::Rule` from the default bus rather than the rule's own
(its resource provider calls `DeleteRule` without `EventBusName`), so after a deploy that replaced a
rule (see `local_template.py`) the old one would keep routing events. Only for LocalStack.
"""

import sys

import boto3


def main(stack: str, bus_output: str) -> None:
    cloudformation = boto3.client("cloudformation")
    outputs = cloudformation.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    bus = next(o["OutputValue"] for o in outputs if o["OutputKey"] == bus_output)
    live = set()
    for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack):
        for resource in page["StackResourceSummaries"]:
            if resource["ResourceType"] == "AWS::Events::Rule":
                live.add(resource.get("PhysicalResourceId", "").split("|")[-1].split("/")[-1])
    events = boto3.client("events")
    for page in events.get_paginator("list_rules").paginate(EventBusName=bus, NamePrefix=f"{stack}-"):
        for rule in page["Rules"]:
            if rule["Name"] in live:
                continue
            targets = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"]
            if targets:
                events.remove_targets(Rule=rule["Name"], EventBusName=bus, Ids=[t["Id"] for t in targets], Force=True)
            events.delete_rule(Name=rule["Name"], EventBusName=bus, Force=True)
            print(f"deleted {rule['Name']}, which the stack no longer has")


if __name__ == "__main__":
    main(*sys.argv[1:])
