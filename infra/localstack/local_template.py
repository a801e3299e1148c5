"""Writes the template LocalStack deploys: `template.yaml` with each Rust function's code pointed at
its hot-reload folder, as `sam build` would point it at a build artifact.

    python infra/localstack/local_template.py template.yaml .state/functions > .state/template.local.json

Nothing else changes: the resources are the ones in `template.yaml` (a state machine's local
`DefinitionUri` is made absolute, since the written template lives elsewhere), except that every
EventBridge rule's logical id ends in a digest of its properties. LocalStack cannot update an
`AWS::Events::Rule` in place (its resource provider's `update` is not implemented, and the stack
update still reports success), so a changed pattern would silently keep routing as before; a new
logical id makes CloudFormation create the changed rule; `prune_rules.py` then deletes the old one,
which LocalStack's delete misses on a custom bus. A function built with
`BuildMethod: rust-cargolambda` gets `CodeUri: {Bucket: hot-reload, Key: <folder>/<binary>}`, the
folder where `make deploy-local` puts its `bootstrap`; LocalStack runs the code in place and reloads
it when the file changes, so a code change needs no redeploy.
"""

import hashlib
import json
import sys
from pathlib import Path

from cfnlint.decode import decode


def main(template_path: str, functions_dir: str) -> None:
    template, matches = decode(template_path)
    if matches:
        sys.exit("\n".join(str(m) for m in matches))
    functions = Path(functions_dir).resolve()
    here = Path(template_path).resolve().parent
    for resource in template["Resources"].values():
        # The written template lives elsewhere: local files it names must not move with it.
        uri = resource.get("Properties", {}).get("DefinitionUri")
        if resource.get("Type") == "AWS::Serverless::StateMachine" and isinstance(uri, str):
            resource["Properties"]["DefinitionUri"] = str(here / uri)
    for name, resource in template["Resources"].items():
        metadata = resource.get("Metadata") or {}
        if resource.get("Type") != "AWS::Serverless::Function" or metadata.get("BuildMethod") != "rust-cargolambda":
            continue
        binary = metadata.get("BuildProperties", {}).get("Binary")
        if not binary:
            sys.exit(f"{name}: Metadata.BuildProperties.Binary names no binary")
        resource["Properties"]["CodeUri"] = {"Bucket": "hot-reload", "Key": str(functions / binary)}
        del resource["Metadata"]
    template = rename_rules(template)
    json.dump(template, sys.stdout, indent=1, default=str)


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


def rename_rules(template: dict) -> dict:
    """Suffixes each rule's logical id (and each SAM EventBridgeRule event's name, from which SAM
    derives its rule's) with a digest of its properties, and rewrites the references to renamed rules."""
    resources = template["Resources"]
    renamed = {}
    for name, resource in list(resources.items()):
        if resource.get("Type") == "AWS::Events::Rule":
            renamed[name] = f"{name}{digest(resource.get('Properties'))}"
        events = resource.get("Properties", {}).get("Events")
        serverless = ("AWS::Serverless::Function", "AWS::Serverless::StateMachine")
        if resource.get("Type") in serverless and isinstance(events, dict):
            resource["Properties"]["Events"] = {
                (f"{event}{digest(spec)}" if spec.get("Type") == "EventBridgeRule" else event): spec
                for event, spec in events.items()
            }
    if not renamed:
        return template

    def rewrite(value):
        if isinstance(value, dict):
            if set(value) == {"Ref"} and value["Ref"] in renamed:
                return {"Ref": renamed[value["Ref"]]}
            if set(value) == {"Fn::GetAtt"}:
                target = value["Fn::GetAtt"]
                if isinstance(target, list) and target and target[0] in renamed:
                    return {"Fn::GetAtt": [renamed[target[0]], *target[1:]]}
                if isinstance(target, str) and target.split(".")[0] in renamed:
                    head, _, tail = target.partition(".")
                    return {"Fn::GetAtt": f"{renamed[head]}.{tail}" if tail else renamed[head]}
            if set(value) == {"Fn::Sub"}:
                sub = value["Fn::Sub"]
                text = sub if isinstance(sub, str) else sub[0]
                for old, new in renamed.items():
                    text = text.replace("${" + old + "}", "${" + new + "}").replace("${" + old + ".", "${" + new + ".")
                return {"Fn::Sub": text if isinstance(sub, str) else [text, rewrite(sub[1])]}
            return {key: rewrite(item) for key, item in value.items()}
        if isinstance(value, list):
            return [rewrite(item) for item in value]
        return value

    template["Resources"] = {renamed.get(name, name): rewrite(resource) for name, resource in resources.items()}
    for section in ("Outputs", "Conditions"):
        if section in template:
            template[section] = rewrite(template[section])
    return template


if __name__ == "__main__":
    main(*sys.argv[1:])
