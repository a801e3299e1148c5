"""busline's Step Functions speedups for LocalStack: the same answers, one JSONPath parse per
path, one client per task's service, region and role.

Run by ``make test`` with LocalStack's interpreter, as ``test_log_pipe.py`` is.
"""

import unittest

from jsonpath_ng.ext import parse as uncached_parse

from busline_process_executor import stepfunctions_speedups as speedups


class StepFunctionsSpeedupsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.patched = speedups.install()
        from localstack.services.stepfunctions.asl.utils import json_path

        cls.json_path = json_path

    def test_every_module_that_parses_is_patched(self) -> None:
        expected = [f"{m}.parse" for m in speedups.PARSING_MODULES]
        expected.append(f"{speedups.CLIENT_FACTORY_MODULE}.boto_client_for")
        expected += [f"{m}.boto_client_for" for m in speedups.CLIENT_MODULES]
        self.assertEqual(self.patched, expected)
        from localstack.services.stepfunctions.asl.component.common.path import result_path

        self.assertTrue(hasattr(result_path.parse, "cache_info"))
        # Installing twice does not wrap the cache in another.
        speedups.install()
        self.assertFalse(hasattr(self.json_path.parse.__wrapped__, "cache_info"))

    def test_a_path_reads_what_an_uncached_parse_reads(self) -> None:
        data = {
            "detail": {"id": "e-1", "data": {"order": {"order_id": "ORD-1", "lines": [1, 2, 3]}}},
            "items": [{"sku": "a"}, {"sku": "b"}],
        }
        for path in [
            "$.detail.id",
            "$.detail.data.order",
            "$.detail.data.order.lines[1]",
            "$.items[*].sku",
            "$.items[?(@.sku == 'b')]",
        ]:
            cached = self.json_path.parse
            self.json_path.parse = uncached_parse
            try:
                expected = self.json_path.extract_json(path, data)
            finally:
                self.json_path.parse = cached
            self.assertEqual(self.json_path.extract_json(path, data), expected, path)
            self.assertEqual(self.json_path.extract_json(path, data), expected, path)
        with self.assertRaises(self.json_path.NoSuchJsonPathError):
            self.json_path.extract_json("$.detail.missing", data)

    def test_each_distinct_path_is_parsed_once(self) -> None:
        parse = self.json_path.parse
        before = parse.cache_info()
        for _ in range(100):
            data = {"detail": {"data": {"order": {"order_id": "x"}}}}
            self.json_path.extract_json("$.detail.data.order.order_id", data)
        after = parse.cache_info()
        self.assertLessEqual(after.misses - before.misses, 1)
        self.assertGreaterEqual(after.hits - before.hits, 99)

    def test_every_task_module_shares_one_client_cache(self) -> None:
        import importlib

        shared = importlib.import_module(speedups.CLIENT_FACTORY_MODULE).boto_client_for
        self.assertTrue(hasattr(shared, "made"))
        for name in speedups.CLIENT_MODULES:
            self.assertIs(importlib.import_module(name).boto_client_for, shared, name)

    def test_a_client_is_made_once_per_service_region_and_role_until_it_expires(self) -> None:
        made = []
        now = [0.0]

        def factory(service, region, credentials):
            made.append((service, region, credentials.role_arn))
            return object()

        class Credentials:
            def __init__(self, role_arn):
                self.role_arn = role_arn

        client_for = speedups.cached_clients(factory, ttl_s=60, clock=lambda: now[0])
        role = Credentials("arn:aws:iam::000000000000:role/saga")
        first = client_for("lambda", "us-east-1", role)
        self.assertIs(client_for("lambda", "us-east-1", Credentials(role.role_arn)), first)
        self.assertIsNot(client_for("sqs", "us-east-1", role), first)
        self.assertIsNot(client_for("lambda", "eu-west-1", role), first)
        other = Credentials("arn:aws:iam::000000000000:role/starter")
        self.assertIsNot(client_for("lambda", "us-east-1", other), first)
        self.assertEqual(len(made), 4)
        now[0] = 61.0
        self.assertIsNot(client_for("lambda", "us-east-1", role), first, "expired")
        self.assertEqual(client_for.made, 5)


if __name__ == "__main__":
    unittest.main()
