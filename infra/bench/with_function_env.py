"""Runs a command in the environment a deployed function runs in, and nothing else: the variables
the stack gives the function (read back from Lambda), Lambda's own, and the SDK's for LocalStack.
For running a function's binary by hand as LocalStack would (see `make profile-init`).

    python infra/bench/with_function_env.py <stack> <function> <command> [args...]

`AWS_LAMBDA_RUNTIME_API` is a closed port unless it is set: the runtime's first call fails and the
process exits right after its init.
"""

import os
import sys

import boto3

# Passed through from the caller: where the SDK finds LocalStack, and PATH.
KEPT = ("PATH", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def main(stack: str, function: str, command: list[str]) -> None:
    config = boto3.client("lambda").get_function_configuration(FunctionName=f"{stack}-{function}")
    env = {name: os.environ[name] for name in KEPT if name in os.environ}
    env.update(
        AWS_LAMBDA_RUNTIME_API=os.environ.get("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9"),
        AWS_LAMBDA_FUNCTION_NAME=f"{stack}-{function}",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(config.get("MemorySize", 128)),
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
    )
    env.update(config.get("Environment", {}).get("Variables", {}))
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
