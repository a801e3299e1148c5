"""Checks what `cfn-lint` cannot: that the template's dashboard and alarms cover the collection.

    python infra/lint/observability.py template.yaml

- the dashboard body is JSON once `!Sub` has substituted it, and every `${...}` it names is a
  resource or parameter of the template;
- every function is on the errors, duration and throttles widgets;
- every dead-letter queue is on the dead-letter widget and has an alarm above 0;
- every consumer queue (one with a redrive policy) is on the depth and oldest-message widgets and
  has an oldest-message alarm;
- every alarm notifies the alarm topic.

Exits non-zero, listing every problem.
"""

import json
import re
import sys

from cfnlint.decode import decode


def main(path: str) -> None:
    template, matches = decode(path)
    if matches:
        sys.exit("\n".join(str(m) for m in matches))
    resources = template["Resources"]
    names = set(resources) | set(template.get("Parameters", {})) | {"AWS::Region", "AWS::StackName"}
    problems = []

    dashboards = [r for r in resources.values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    if len(dashboards) != 1:
        sys.exit(f"want one dashboard, found {len(dashboards)}")
    body = dashboards[0]["Properties"]["DashboardBody"]
    text = body.get("Fn::Sub") if isinstance(body, dict) else None
    if not isinstance(text, str):
        sys.exit("the dashboard body must be one !Sub string")
    for ref in re.findall(r"\$\{([^}]+)\}", text):
        if ref.split(".")[0] not in names:
            problems.append(f"the dashboard names ${{{ref}}}, which the template does not define")
    widgets = json.loads(re.sub(r"\$\{([^}]+)\}", r"\1", text))["widgets"]

    def on_widget(title_part: str, ref: str) -> bool:
        return any(
            title_part in w["properties"].get("title", "")
            and any(ref in json.dumps(m) for m in w["properties"].get("metrics", []))
            for w in widgets
        )

    functions = [n for n, r in resources.items() if r["Type"] == "AWS::Serverless::Function"]
    for function in functions:
        for widget in ("errors", "duration", "throttles"):
            if not on_widget(widget, function):
                problems.append(f"{function} is not on the dashboard's {widget} widget")

    queues = {n: r for n, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
    consumers = [n for n, r in queues.items() if "RedrivePolicy" in r.get("Properties", {})]
    dead_letters = [n for n in queues if "DeadLetter" in n or n == "FinanceQueue"]
    alarms = {n: r["Properties"] for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}

    def alarm_on(metric: str, queue: str):
        return [
            a for a in alarms.values()
            if a.get("MetricName") == metric
            and queue in json.dumps(a.get("Dimensions", []))
        ]

    for queue in dead_letters:
        if not on_widget("Dead-letter", queue):
            problems.append(f"{queue} is not on the dashboard's dead-letter widget")
        found = alarm_on("ApproximateNumberOfMessagesVisible", queue)
        if not any(a.get("Threshold") == 0 and a.get("ComparisonOperator") == "GreaterThanThreshold" for a in found):
            problems.append(f"{queue} has no alarm on its depth above 0")
    for queue in consumers:
        for widget in ("queue depth", "Oldest message"):
            if not on_widget(widget, queue):
                problems.append(f"{queue} is not on the dashboard's {widget} widget")
        if not alarm_on("ApproximateAgeOfOldestMessage", queue):
            problems.append(f"{queue} has no oldest-message alarm")
    for name, alarm in alarms.items():
        if "AlarmTopic" not in json.dumps(alarm.get("AlarmActions", [])):
            problems.append(f"{name} does not notify the alarm topic")

    if problems:
        sys.exit("\n".join(problems))
    print(f"observability: {len(functions)} functions, {len(dead_letters)} dead-letter queues, "
          f"{len(consumers)} consumer queues and {len(alarms)} alarms covered")


if __name__ == "__main__":
    main(sys.argv[1])
