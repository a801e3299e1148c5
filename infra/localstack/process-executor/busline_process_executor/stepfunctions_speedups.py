"""Step Functions on LocalStack without the work it repeats for every state it runs.

Profiled with py-spy (``--gil``) during ``make test``'s soak (December 2026), LocalStack's Step
Functions interpreter spent most of the time it held the GIL rebuilding things that do not change
between states:

- **A JSONPath parser per path read.** Every ``Parameters`` binding, ``InputPath``,
  ``ResultSelector``, ``ResultPath`` and Choice ``Variable`` calls ``jsonpath_ng``'s ``parse(path)``,
  which constructs a new parser: ply's ``yacc`` regenerates its LALR tables each time. That was
  **39 %** of the GIL's time, more than every AWS API LocalStack served. ``parse`` is a pure
  function of the path's text and ``find`` does not change the expression it returns, so one parse
  per distinct path is kept (an LRU of 4,096; a state machine has a few dozen).
- **An assumed role and a new boto client per task.** Each Task state (a Lambda invoke, an SQS
  send, a ``StartExecution``) calls ``boto_client_for``, which asks LocalStack's STS to assume the
  state machine's role, over LocalStack's own gateway, and builds a boto client with those
  credentials: **11 %** of the GIL's time once the parses were cached. The client for a
  (service, region, role) is kept for :data:`CLIENT_TTL_S`; botocore clients are safe to share
  between threads, and on LocalStack an assumed role's credentials only name the account.

What an execution computes is the same; only the time differs. Each patch checks that what it
replaces is still there and leaves LocalStack alone, with a log line, if it is not.
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
import time

from localstack.runtime import hooks

LOG = logging.getLogger(__name__)

#: Distinct JSONPaths kept.
CACHE_SIZE = 4096

#: The modules that call ``jsonpath_ng``'s ``parse`` through a global of their own, by that name.
PARSING_MODULES = (
    "localstack.services.stepfunctions.asl.utils.json_path",
    "localstack.services.stepfunctions.asl.component.common.path.result_path",
)

#: Where ``boto_client_for`` is defined.
CLIENT_FACTORY_MODULE = "localstack.services.stepfunctions.asl.utils.boto_client"

_TASKS = "localstack.services.stepfunctions.asl.component.state.state_execution.state_task"
#: The modules that imported ``boto_client_for`` by name (``from ... import boto_client_for``), so
#: each holds its own reference to replace.
CLIENT_MODULES = (
    f"{_TASKS}.lambda_eval_utils",
    f"{_TASKS}.service.state_task_service_aws_sdk",
    f"{_TASKS}.service.state_task_service_dynamodb",
    f"{_TASKS}.service.state_task_service_events",
    f"{_TASKS}.service.state_task_service_sfn",
    f"{_TASKS}.service.state_task_service_sns",
    f"{_TASKS}.service.state_task_service_sqs",
)

#: How long a task's client (and the role credentials it carries) is reused, in seconds.
CLIENT_TTL_S = 600.0


def cached_parse(parse):
    """``parse``, remembering its expression for each path (the wrapper has ``cache_info``)."""
    if hasattr(parse, "cache_info"):
        return parse
    return functools.lru_cache(maxsize=CACHE_SIZE)(parse)


def cached_clients(factory, ttl_s: float = CLIENT_TTL_S, clock=time.monotonic):
    """``factory(service, region, state_credentials)``, reusing the client it made for the same
    service, region and role for ``ttl_s`` seconds (the wrapper has ``cache`` and ``made``)."""
    if hasattr(factory, "made"):
        return factory
    lock = threading.Lock()
    cache: dict[tuple, tuple[float, object]] = {}

    @functools.wraps(factory)
    def client_for(service, region, state_credentials):
        key = (service, region, getattr(state_credentials, "role_arn", None))
        now = clock()
        with lock:
            hit = cache.get(key)
            if hit is not None and now - hit[0] < ttl_s:
                return hit[1]
        client = factory(service, region, state_credentials)
        with lock:
            cache[key] = (now, client)
            client_for.made += 1
        return client

    client_for.made = 0
    client_for.cache = cache
    return client_for


def _patch(module_name: str, attribute: str, wrap) -> bool:
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        LOG.warning("busline: %s not found (%s); left as it is", module_name, e)
        return False
    original = getattr(module, attribute, None)
    if not callable(original):
        LOG.warning("busline: %s has no %s(); left as it is", module_name, attribute)
        return False
    setattr(module, attribute, wrap(original))
    return True


def install() -> list[str]:
    """Applies both patches; returns ``module.attribute`` for each place patched."""
    done = [f"{m}.parse" for m in PARSING_MODULES if _patch(m, "parse", cached_parse)]
    if _patch(CLIENT_FACTORY_MODULE, "boto_client_for", cached_clients):
        shared = importlib.import_module(CLIENT_FACTORY_MODULE).boto_client_for
        done.append(f"{CLIENT_FACTORY_MODULE}.boto_client_for")
        # One cache for every importer: each gets the wrapper the factory's module now holds.
        for name in CLIENT_MODULES:
            if _patch(name, "boto_client_for", lambda _original: shared):
                done.append(f"{name}.boto_client_for")
    return done


@hooks.on_infra_start()
def install_speedups() -> None:
    """At LocalStack's start: each JSONPath parsed once, each task's client made once."""
    patched = install()
    LOG.info("busline: Step Functions speedups in %d places: %s", len(patched), ", ".join(patched))
