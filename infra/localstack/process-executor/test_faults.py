"""The executor's queued faults: popped in order, and a fault with ``when`` taken only by an
invocation whose payload contains its text, wherever it stands in the queue.

Run by ``make test`` with LocalStack's interpreter, as ``test_log_pipe.py`` is.
"""

import json
import unittest

import busline_process_executor as executor
from fault_file_case import FaultFileCase


class QueuedFaultTest(FaultFileCase):
    def queue(self) -> list:
        return json.loads(self.path.read_text())["fn"]

    def test_faults_without_when_are_popped_in_order_and_none_is_no_fault(self) -> None:
        self.path.write_text(json.dumps({"fn": [{"fault": "none"}, {"fault": "crash"}]}))
        self.assertIsNone(executor.take_fault("fn", "{}"))
        self.assertEqual(executor.take_fault("fn", "{}"), {"fault": "crash"})
        self.assertIsNone(executor.take_fault("fn", "{}"))
        self.assertIsNone(executor.take_fault("other", "{}"))

    def test_a_fault_with_when_is_taken_only_by_a_payload_that_contains_it(self) -> None:
        first = {"fault": "error", "errorType": "OutOfStock", "when": "SO-aaa"}
        second = {"fault": "crash", "when": "SO-bbb"}
        self.path.write_text(json.dumps({"fn": [first, second]}))
        self.assertIsNone(executor.take_fault("fn", '{"order_id":"SO-ccc"}'))
        self.assertEqual(self.queue(), [first, second], "an unmatched invocation takes nothing")
        self.assertEqual(executor.take_fault("fn", '{"order_id":"SO-bbb"}'), second)
        self.assertEqual(self.queue(), [first], "the matching fault is taken from behind another")
        self.assertEqual(executor.take_fault("fn", '{"order_id":"SO-aaa"}'), first)
        self.assertEqual(self.queue(), [])


if __name__ == "__main__":
    unittest.main()
