"""busline's patch for the Lambda service's per-invocation threads: once they end, nothing holds
them, so their stacks are unmapped; LocalStack's own ``start_thread`` keeps every thread it starts,
and on Python 3.13 each kept thread's ended stack stays mapped.

Run by ``make test`` with LocalStack's interpreter, as ``test_log_pipe.py`` is.
"""

import time
import unittest

from localstack.services.lambda_.invocation import version_manager
from localstack.utils import threads

from busline_process_executor import thread_stacks as patch

THREADS = 200


def mappings() -> int:
    with open("/proc/self/maps") as maps:
        return sum(1 for _ in maps)


def grown_by(start_thread) -> int:
    """How many mappings ``THREADS`` threads started with ``start_thread`` leave once they end."""
    before = mappings()
    started = [start_thread(lambda *args, **kwargs: None, name="metric") for _ in range(THREADS)]
    deadline = time.monotonic() + 10
    while any(t.is_alive() for t in started) and time.monotonic() < deadline:
        time.sleep(0.01)
    del started
    return mappings() - before


class ThreadStacksTest(unittest.TestCase):
    def tearDown(self):
        threads.TMP_THREADS.clear()

    def test_localstack_s_start_thread_keeps_each_ended_thread_s_stack(self):
        # What the patch is for: if this stops holding, LocalStack fixed it and the patch can go.
        self.assertGreaterEqual(grown_by(threads.start_thread), THREADS)

    def test_the_patched_start_thread_gives_the_stacks_back(self):
        self.assertLess(grown_by(patch.without_shutdown_hook(threads.start_thread)), THREADS // 10)

    def test_install_patches_the_version_manager_once_and_no_one_else(self):
        original = version_manager.start_thread
        try:
            self.assertTrue(patch.install())
            self.assertTrue(patch.install())
            self.assertIs(version_manager.start_thread.__wrapped__, original)
            self.assertIs(threads.start_thread, original, "other callers keep the shutdown hook")
            version_manager.start_thread(lambda *args, **kwargs: None, name="metric").join()
            self.assertEqual(threads.TMP_THREADS, [])
        finally:
            version_manager.start_thread = original


if __name__ == "__main__":
    unittest.main()
