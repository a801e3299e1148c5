"""The executor's log pipe, on its own: every line written before ``take`` comes back from it.

Run by ``make test`` with LocalStack's interpreter (the module imports LocalStack):
``.state/localstack/venv/bin/python -m unittest discover -s infra/localstack/process-executor``.
"""

import os
import resource
import unittest

from busline_process_executor import _LogPipe


def pipe_at(fd: int):
    """A pipe whose read end is descriptor ``fd``: (its reader, its write end)."""
    read, write = os.pipe()
    if read != fd:
        os.dup2(read, fd)
        os.close(read)
    return os.fdopen(fd, "rb", buffering=0), write


class LogPipeTest(unittest.TestCase):
    def check(self, fd: int) -> None:
        reader, write = pipe_at(fd)
        logs = _LogPipe(reader)
        try:
            for n in range(5):
                lines = "".join(f"line {n}.{i}\n" for i in range(2000))
                os.write(write, (lines + "handled\n").encode())
                # At once, as the executor does when the answer comes: no time for the reader thread.
                self.assertEqual(logs.take(), lines + "handled\n")
            os.write(write, b"half a line")
            self.assertEqual(logs.take(), "", "a partial line waits for its end")
            os.write(write, b", the rest\n")
            self.assertEqual(logs.take(), "half a line, the rest\n")
        finally:
            os.close(write)
            reader.close()

    def test_every_line_written_before_take_comes_back(self):
        read, write = os.pipe()
        os.close(write)
        os.close(read)
        self.check(read)

    def test_a_descriptor_above_1023_is_read_too(self):
        # LocalStack holds well over a thousand descriptors after a long run; select cannot watch
        # those, and lines were lost.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft <= 1500 and (hard == resource.RLIM_INFINITY or hard > 1500):
            resource.setrlimit(resource.RLIMIT_NOFILE, (1501, hard))
        elif soft <= 1500:
            self.skipTest(f"no descriptor above 1500 can exist here (hard limit {hard})")
        self.check(1500)


if __name__ == "__main__":
    unittest.main()
