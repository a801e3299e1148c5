"""A test case with its own fault file: ``BUSLINE_LAMBDA_FAULTS_FILE`` points at ``self.path`` in a
temporary directory for each test, and is put back afterwards. Shared by the fault-file tests."""

import os
import tempfile
import unittest
from pathlib import Path

import busline_process_executor as executor


class FaultFileCase(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "faults.json"
        self.saved = os.environ.get(executor.FAULTS_FILE_VARIABLE)
        os.environ[executor.FAULTS_FILE_VARIABLE] = str(self.path)

    def tearDown(self) -> None:
        if self.saved is None:
            os.environ.pop(executor.FAULTS_FILE_VARIABLE, None)
        else:
            os.environ[executor.FAULTS_FILE_VARIABLE] = self.saved
        self.dir.cleanup()
