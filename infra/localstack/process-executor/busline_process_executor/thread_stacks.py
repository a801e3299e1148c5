"""The Lambda service's per-invocation threads give their stacks back.

LocalStack 2026.3's Lambda service records each invocation's CloudWatch metric on a thread of its
own (``version_manager.start_thread``), and ``start_thread`` keeps every thread it starts in
``localstack.utils.threads.TMP_THREADS`` for its shutdown hook. On Python 3.13 an ended thread
whose ``Thread`` object is still referenced is never detached, so its stack (8 MB mapped, and a
guard page) stays mapped: two mappings per invocation, until the process reaches the kernel's
``vm.max_map_count`` (65,530) and can start no thread at all. busline's full soak met it in
December 2026: after about 32,000 invocations every invoke failed with "can't start new thread".

The patch: the Lambda service's ``start_thread`` starts its threads without the shutdown hook
(``_shutdown_hook=False``, as LocalStack's own ``start_worker_thread`` does): a thread that records
a metric has nothing to stop at shutdown. Every other caller keeps the hook.

The patch checks that what it replaces is still there and leaves LocalStack alone, with a log line,
if it is not.
"""

from __future__ import annotations

import importlib
import logging

from localstack.runtime import hooks

LOG = logging.getLogger(__name__)

VERSION_MANAGER = "localstack.services.lambda_.invocation.version_manager"


def without_shutdown_hook(start_thread):
    """``start_thread`` as LocalStack defines it, starting threads that are not kept for the
    shutdown hook (so nothing holds them once they end)."""
    if getattr(start_thread, "unhooked", False):
        return start_thread

    def wrapper(method, params=None, quiet=False, on_stop=None, _shutdown_hook=True, name=None):
        return start_thread(method, params, quiet=quiet, on_stop=on_stop, _shutdown_hook=False, name=name)

    wrapper.unhooked = True
    wrapper.__wrapped__ = start_thread
    return wrapper


def install() -> bool:
    """Patches the Lambda service's ``start_thread``; True when it did."""
    try:
        module = importlib.import_module(VERSION_MANAGER)
    except ImportError as e:
        LOG.warning("busline: LocalStack's Lambda version manager not found (%s); left as it is", e)
        return False
    start_thread = getattr(module, "start_thread", None)
    if not callable(start_thread):
        LOG.warning("busline: the Lambda version manager has no start_thread(); left as it is")
        return False
    module.start_thread = without_shutdown_hook(start_thread)
    return True


@hooks.on_infra_start()
def install_thread_release() -> None:
    """At LocalStack's start: the Lambda service's per-invocation threads are not kept."""
    if install():
        LOG.info("busline: the Lambda service's per-invocation threads give their stacks back")
