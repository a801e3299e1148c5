"""Writes the template LocalStack deploys: `template.yaml` with each Rust function's code pointed at
its hot-reload folder, as `sam build` would point it at a build artifact.

    python infra/localstack/local_template.py template.yaml .state/functions > .state/template.local.json

Nothing else changes: the resources are the ones in `template.yaml` (a state machine's local
`DefinitionUri` is made absolute, since the written template lives elsewhere). A function built with
`BuildMethod: rust-cargolambda` gets `CodeUri: {Bucket: hot-reload, Key: <folder>/<binary>}`, the
folder where `make deploy-local` puts its `bootstrap`; LocalStack runs the code in place and reloads
it when the file changes, so a code change needs no redeploy.
"""

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
    json.dump(template, sys.stdout, indent=1, default=str)


if __name__ == "__main__":
    main(*sys.argv[1:])
