"""busline's long-polling patch for LocalStack's SQS event source mappings: a mapping without a
batching window long-polls and is never told to back off; one with a window is left as LocalStack
runs it.

Run by ``make test`` with LocalStack's interpreter, as ``test_log_pipe.py`` is.
"""

import unittest

from localstack.services.lambda_.event_source_mapping.pollers import sqs_poller
from localstack.services.lambda_.event_source_mapping.pollers.poller import (
    EmptyPollResultsException,
)

from busline_process_executor import esm_long_polling as patch


class RecordingClient:
    def __init__(self, messages):
        self.messages = messages
        self.calls = []

    def receive_message(self, **kwargs):
        self.calls.append(kwargs)
        return {"Messages": self.messages}

    def delete_message_batch(self, **kwargs):
        return {"Successful": [], "called_with": kwargs}


class Poller:
    """The part of LocalStack's SqsPoller the patch touches: its client, its window, and a poll
    that short-polls and raises on nothing, as ``SqsPoller.poll_events`` does."""

    def __init__(self, client, window=0):
        self.source_client = client
        self.maximum_batching_window = window
        self.handled = []

    def poll_events(self):
        response = self.source_client.receive_message(
            QueueUrl="q",
            MaxNumberOfMessages=10,
            WaitTimeSeconds=min(self.maximum_batching_window, 20),
            sqs_override_max_message_count=10,
            sqs_override_wait_time_seconds=self.maximum_batching_window,
        )
        if not response.get("Messages"):
            raise EmptyPollResultsException(service="sqs", source_arn="arn")
        self.handled += response["Messages"]


class LongPollingTest(unittest.TestCase):
    def setUp(self) -> None:
        self.poll = patch.long_polling(Poller.poll_events, EmptyPollResultsException, wait_s=1)

    def test_a_mapping_without_a_window_long_polls_and_returns_at_the_first_message(self) -> None:
        client = RecordingClient([{"Body": "one"}])
        poller = Poller(client)
        self.poll(poller)
        self.assertEqual(poller.handled, [{"Body": "one"}])
        (call,) = client.calls
        self.assertEqual(call["WaitTimeSeconds"], 1)
        # No wait override: LocalStack's SQS returns at the first message instead of waiting for
        # the whole batch; the batch size override stays.
        self.assertNotIn("sqs_override_wait_time_seconds", call)
        self.assertEqual(call["sqs_override_max_message_count"], 10)
        # Every other call reaches the real client.
        self.assertIn("called_with", poller.source_client.delete_message_batch(Entries=[]))

    def test_an_empty_long_poll_is_not_an_empty_result_to_back_off_from(self) -> None:
        poller = Poller(RecordingClient([]))
        self.assertIsNone(self.poll(poller))
        self.assertIsNone(self.poll(poller))
        self.assertEqual(self.poll.long_polls, 2)
        # The client is wrapped once, not once per poll.
        self.assertIsInstance(poller.source_client, patch.LongPollingClient)
        self.assertIsInstance(poller.source_client._client, RecordingClient)

    def test_a_mapping_with_a_window_keeps_localstack_s_batching(self) -> None:
        client = RecordingClient([])
        poller = Poller(client, window=5)
        with self.assertRaises(EmptyPollResultsException):
            self.poll(poller)
        (call,) = client.calls
        self.assertEqual(call["WaitTimeSeconds"], 5)
        self.assertEqual(call["sqs_override_wait_time_seconds"], 5)
        self.assertIs(poller.source_client, client)

    def test_installing_patches_localstack_s_poller_once(self) -> None:
        original = sqs_poller.SqsPoller.poll_events
        try:
            self.assertTrue(patch.install())
            patched = sqs_poller.SqsPoller.poll_events
            self.assertTrue(hasattr(patched, "long_polls"))
            self.assertIs(patched.__wrapped__, original)
            patch.install()
            self.assertIs(sqs_poller.SqsPoller.poll_events, patched)
        finally:
            sqs_poller.SqsPoller.poll_events = original


class SettingTest(unittest.TestCase):
    def test_the_wait_comes_from_the_setting_and_nonsense_falls_back(self) -> None:
        read = patch.long_poll_seconds
        self.assertEqual(read({}), patch.LONG_POLL_S)
        self.assertEqual(read({patch.LONG_POLL_VARIABLE: "0"}), 0)
        self.assertEqual(read({patch.LONG_POLL_VARIABLE: " 20 "}), 20)
        for nonsense in ["21", "-1", "1.5", "soon"]:
            with self.assertLogs(patch.LOG, "WARNING"):
                self.assertEqual(read({patch.LONG_POLL_VARIABLE: nonsense}), patch.LONG_POLL_S)


if __name__ == "__main__":
    unittest.main()
