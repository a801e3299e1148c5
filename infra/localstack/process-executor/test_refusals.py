"""The executor's ``aws`` rules: a call is refused in its window and counted, and a change to the
fault file is seen at once although the rules are kept between reads.

Run by ``make test`` with LocalStack's interpreter, as ``test_log_pipe.py`` is.
"""

import json
import os
import time
import unittest
from pathlib import Path

import busline_process_executor as executor
from fault_file_case import FaultFileCase


def write(path: Path, faults: dict) -> None:
    """As the tooling writes it: a new file renamed over the old one."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(faults))
    os.replace(temporary, path)


class RefusalTest(FaultFileCase):
    def test_a_call_in_the_window_is_refused_and_counted_and_a_new_window_is_seen(self) -> None:
        now = int(time.time() * 1000)
        rule = {"service": "events", "operation": "PutEvents", "code": "ThrottlingException"}
        write(self.path, {"aws": [dict(rule, from_ms=now + 60_000, until_ms=now + 120_000)]})
        self.assertIsNone(executor.refusal_for("events", "PutEvents", now), "not yet")
        # The window moved to now: the kept rules must not hide it.
        write(self.path, {"aws": [dict(rule, from_ms=now - 1_000, until_ms=now + 60_000)]})
        self.assertIsNotNone(executor.refusal_for("events", "PutEvents", now))
        self.assertIsNotNone(executor.refusal_for("events", "PutEvents", now))
        self.assertIsNone(executor.refusal_for("events", "ListRules", now), "another operation")
        self.assertIsNone(executor.refusal_for("sqs", "PutEvents", now), "another service")
        counted = json.loads(self.path.read_text())["aws"][0]["refused"]
        self.assertEqual(counted, 2)
        self.path.unlink()
        self.assertIsNone(executor.refusal_for("events", "PutEvents", now), "no file, no rule")


if __name__ == "__main__":
    unittest.main()
