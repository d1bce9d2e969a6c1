"""The commands that call AWS directly (`evaluate --bucket`, `redrive`) say in one line
what AWS refused, as the README's exit codes promise: never a traceback."""

from __future__ import annotations

import boto3
import pytest

from abtest.cli import main

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/abtest-undelivered"
COMMANDS = {
    "evaluate": ["evaluate", "--endpoint", "e", "--bucket", "abtest-events", "--no-progress"],
    "redrive": ["redrive", "events", "--queue-url", QUEUE_URL, "--bucket", "abtest-events"],
}


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No credentials anywhere botocore looks, the instance metadata service included (so
    nothing is ever sent)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # boto3's default session outlives the tests (tests/conftest.py's MOTO_CONFIG) and
    # keeps the credentials an earlier test gave it: without this, they would sign a call.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_credentials_is_one_line_and_exit_2(command: str, no_credentials, capsys) -> None:
    assert main(COMMANDS[command]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"abtest: config error: {command}: no AWS credentials found (environment, "
        "profile or role)\n"
    )


def test_no_region_is_one_line_and_exit_2(no_credentials, monkeypatch, capsys) -> None:
    # (SQS needs a region before any call; S3 would default to us-east-1's endpoint)
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert main(COMMANDS["redrive"]) == 2
    err = capsys.readouterr().err
    assert err == "abtest: config error: redrive: give --region (or set AWS_REGION)\n"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_what_aws_refuses_is_one_line_and_exit_1(command: str, fake_aws, capsys) -> None:
    # GIVEN no such bucket and no such queue (moto answers as AWS would)
    # WHEN the command runs
    code = main(COMMANDS[command])
    # THEN it names the command and what AWS said, on one line
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith(f"abtest: {command}: An error occurred (") and err.count("\n") == 1
