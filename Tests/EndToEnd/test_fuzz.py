"""Property-based fuzzing of the REST API from its own OpenAPI document, with schemathesis
(installed by `Appliance/dev.sh test` into a private virtualenv; E2E_SCHEMATHESIS names its
`st` command). Generated and mutated requests — wrong types, missing fields, huge strings,
odd characters in paths and headers — go to every operation, as the operator and as nobody.
The checks: no 5xx, and every status, content type and body matches the document."""

import os
import shutil
import subprocess

import pytest

from conftest import Server

ST = os.environ.get("E2E_SCHEMATHESIS") or shutil.which("st")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.fixture(scope="module")
def appliance(tmp_path_factory):
    if not ST or not os.access(ST, os.X_OK):
        pytest.fail("schemathesis is not installed: run the tests with Appliance/dev.sh test (or set E2E_SCHEMATHESIS)")
    server = Server(str(tmp_path_factory.mktemp("fuzz"))).start()
    yield server
    server.stop()


def run_schemathesis(server, seconds, headers=()):
    base = f"http://127.0.0.1:{server.port}"
    command = [ST, "run", f"{base}/api/v1/openapi.yaml", "--url", base, "--checks", CHECKS,
               "--max-time", str(seconds), "--workers", "2", "--seed", "20261127", "--no-color", "--generation-database", "none"]
    for header in headers:
        command += ["-H", header]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120, cwd=server.data_dir,
                            env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"})
    report = result.stdout + result.stderr
    return result.returncode, report


def assert_clean(code, report, server):
    tail = report[-6000:]
    assert "Selected: " in report, tail
    assert code == 0, tail
    assert "Internal Server Error" not in server.logs()
    assert server.request("GET", "/healthz")[0] == 200


def test_fuzz_as_the_operator(appliance):
    code, report = run_schemathesis(appliance, 45, [f"Authorization: Bearer {appliance.operator_token()}"])
    assert_clean(code, report, appliance)


def test_fuzz_as_nobody(appliance):
    code, report = run_schemathesis(appliance, 20)
    assert_clean(code, report, appliance)
