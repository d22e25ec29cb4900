"""The failing bucket of the fault campaign (coldcopy.testing.faults.bucket): transparent until armed, then each
fault as an S3 client meets it — an error botocore retries, a reset after the request applied, a GET cut short, an
answer past the read timeout."""

from __future__ import annotations

import uuid

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from coldcopy.testing.faults.bucket import FaultyBucket

pytestmark = pytest.mark.integration


@pytest.fixture
def proxied(s3_endpoint):
    with FaultyBucket(s3_endpoint.url) as proxy:
        name = f"faulty-{uuid.uuid4().hex[:8]}"

        def client(**config):
            return boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1", aws_access_key_id="k",
                                aws_secret_access_key="s", config=Config(**config))

        client().create_bucket(Bucket=name)
        client().put_object(Bucket=name, Key="k", Body=b"x" * 100_000)
        yield proxy, client, name


def test_it_passes_everything_through_until_armed(proxied):
    proxy, client, name = proxied
    s3 = client()
    assert s3.head_object(Bucket=name, Key="k")["ContentLength"] == 100_000
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"x" * 100_000
    assert proxy.disarm() == [] and proxy.requests >= 4


@pytest.mark.parametrize("fault, code", [("500", "InternalError"), ("503", "ServiceUnavailable"),
                                         ("slowdown", "SlowDown")])
def test_an_error_answer_is_retried_by_the_client_and_fails_it_when_it_lasts(proxied, fault, code):
    proxy, client, name = proxied
    proxy.arm(fault, method="PUT", count=1)
    client(retries={"max_attempts": 3, "mode": "standard"}).put_object(Bucket=name, Key="once", Body=b"1")
    assert proxy.disarm() == [f"{fault} PUT /{name}/once"]
    proxy.arm(fault, method="GET", count=20)
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        client(retries={"max_attempts": 3, "mode": "standard"}).get_object(Bucket=name, Key="k")
    assert raised.value.response["Error"]["Code"] == code and len(proxy.disarm()) >= 3  # each attempt failed


def test_a_reset_falls_after_the_request_applied(proxied):
    proxy, client, name = proxied
    proxy.arm("reset", method="PUT", count=1)
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        client(retries={"total_max_attempts": 1}).put_object(Bucket=name, Key="applied", Body=b"seen")
    assert proxy.disarm() == [f"reset PUT /{name}/applied"]
    assert client().get_object(Bucket=name, Key="applied")["Body"].read() == b"seen"  # stored all the same


def test_a_truncated_get_and_a_slow_answer_fail_the_read(proxied):
    proxy, client, name = proxied
    proxy.arm("truncate", method="GET", count=1)
    with pytest.raises(botocore.exceptions.ResponseStreamingError):
        client().get_object(Bucket=name, Key="k")["Body"].read()
    proxy.arm("slow", method="GET", count=1, slow_s=3)
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        client(read_timeout=1, retries={"total_max_attempts": 1}).get_object(Bucket=name, Key="k")
    assert len(proxy.disarm()) == 1
