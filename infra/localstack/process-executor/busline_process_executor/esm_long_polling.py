"""LocalStack's SQS event source mappings long-poll, as AWS's pollers do.

AWS's Lambda pollers long-poll a queue: a message is handed to the function as soon as it arrives.
LocalStack 2026.3's SQS poller, for a mapping without a batching window (``MaximumBatchingWindow
InSeconds`` 0, every busline queue mapping), short-polls instead; a poll that finds nothing raises
``EmptyPollResultsException`` and the mapping's worker sleeps an exponential back-off that starts at
a hard-coded 1 s (randomised to 0.5-1.5 s) whatever ``LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_
EMPTY_POLL_SEC`` says, since that setting caps only the later steps. So a message that arrived
after a quiet moment waited up to 1.5 s per queue hop: measured on busline's bench (December 2026),
ingest -> consumer p50 981 ms, p99 2.5 s, with busline's handlers 1-11 % of it.

The patch: such a mapping's ``ReceiveMessage`` waits up to :data:`LONG_POLL_S` for the first message
and returns as soon as there is one (an ordinary SQS long poll, which LocalStack's SQS serves as AWS
does: it then takes what else is visible, up to the batch size, without waiting). A long poll that
found nothing was the wait, so it is not reported as empty: the worker polls again after its poll
interval (``LAMBDA_EVENT_SOURCE_MAPPING_POLL_INTERVAL_SEC``) instead of backing off. An idle mapping
costs one ``ReceiveMessage`` a second. Mappings with a batching window keep LocalStack's own
behaviour (wait for the window or the batch size), which is AWS's.

The patch checks that what it replaces is still there and leaves LocalStack alone, with a log line,
if it is not.
"""

from __future__ import annotations

import importlib
import logging
import os

from localstack.runtime import hooks

LOG = logging.getLogger(__name__)

#: How long one long poll of an idle queue waits for its first message, in seconds (AWS's pollers
#: wait 20; a shorter wait lets a deleted mapping's worker notice within a second).
LONG_POLL_S = 1

#: The setting that changes it: whole seconds, 1 to 20; 0 leaves LocalStack's short polls and
#: back-off as they are (for comparing the two, as ``make bench`` did).
LONG_POLL_VARIABLE = "BUSLINE_SQS_LONG_POLL_S"

POLLER_MODULE = "localstack.services.lambda_.event_source_mapping.pollers.sqs_poller"
EMPTY_MODULE = "localstack.services.lambda_.event_source_mapping.pollers.poller"


class LongPollingClient:
    """An SQS client whose short polls (``WaitTimeSeconds`` 0, no wait override) become long polls
    of ``wait_s`` seconds that return at the first message; every other call passes through."""

    def __init__(self, client, wait_s: int = LONG_POLL_S):
        self._client = client
        self._wait_s = wait_s

    def receive_message(self, **kwargs):
        if not kwargs.get("WaitTimeSeconds") and not kwargs.get("sqs_override_wait_time_seconds"):
            kwargs["WaitTimeSeconds"] = self._wait_s
            # The override makes LocalStack's SQS wait for the whole batch; without it the call
            # returns at the first message, as an AWS long poll does.
            kwargs.pop("sqs_override_wait_time_seconds", None)
        return self._client.receive_message(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def long_polling(poll_events, empty_exception, wait_s: int = LONG_POLL_S):
    """``SqsPoller.poll_events``, long-polling for a mapping without a batching window (the
    wrapper has ``long_polls``, a count)."""
    if hasattr(poll_events, "long_polls"):
        return poll_events

    def wrapper(self):
        if getattr(self, "maximum_batching_window", 0):
            return poll_events(self)
        if not isinstance(self.source_client, LongPollingClient):
            self.source_client = LongPollingClient(self.source_client, wait_s)
        wrapper.long_polls += 1
        try:
            return poll_events(self)
        except empty_exception:
            # The long poll waited already: poll again after the poll interval, no back-off.
            return None

    wrapper.long_polls = 0
    wrapper.__wrapped__ = poll_events
    return wrapper


def long_poll_seconds(environ=os.environ) -> int:
    """The long poll's wait from :data:`LONG_POLL_VARIABLE` (0: off), :data:`LONG_POLL_S` when it
    is unset or not a whole number of seconds from 0 to 20 (logged)."""
    text = environ.get(LONG_POLL_VARIABLE, "").strip()
    if not text:
        return LONG_POLL_S
    try:
        seconds = int(text)
    except ValueError:
        seconds = -1
    if not 0 <= seconds <= 20:
        LOG.warning("busline: %s=%r is not 0-20 seconds; using %d", LONG_POLL_VARIABLE, text, LONG_POLL_S)
        return LONG_POLL_S
    return seconds


def install(wait_s: int = LONG_POLL_S) -> bool:
    """Patches ``SqsPoller.poll_events`` to long-poll for ``wait_s`` seconds; True when it did."""
    try:
        pollers = importlib.import_module(POLLER_MODULE)
        empty = importlib.import_module(EMPTY_MODULE).EmptyPollResultsException
        poller = pollers.SqsPoller
    except (ImportError, AttributeError) as e:
        LOG.warning("busline: LocalStack's SQS poller not found (%s); left as it is", e)
        return False
    if not callable(getattr(poller, "poll_events", None)):
        LOG.warning("busline: SqsPoller has no poll_events(); left as it is")
        return False
    poller.poll_events = long_polling(poller.poll_events, empty, wait_s)
    return True


@hooks.on_infra_start()
def install_long_polling() -> None:
    """At LocalStack's start: SQS event source mappings long-poll (unless the setting says 0)."""
    wait_s = long_poll_seconds()
    if wait_s == 0:
        LOG.info("busline: %s=0: SQS event source mappings short-poll, as LocalStack's own", LONG_POLL_VARIABLE)
    elif install(wait_s):
        LOG.info("busline: SQS event source mappings long-poll (%d s)", wait_s)
