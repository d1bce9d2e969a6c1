"""`abtest endpoints` against a running server: tables, one-line errors, exit codes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from abtest.cli import main
from abtest.embedded.server import EmbeddedServer
from abtest.embedded.wiring import Runtime
from abtest.errors import ModelHostUnavailableError
from tests.embedded.helpers import ABTEST, ENDPOINT, REPO, write_config

TOKEN = "cli-s3cret"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["endpoints", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_show_and_every_move_with_their_exit_codes(start_server, capsys) -> None:
    url = start_server().url

    code, out, _ = run(capsys, "list", "--url", url)
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["ENDPOINT", "STATE", "WINNER", "STRATEGY", "VARIANTS"]
    assert row.split()[:4] == [ENDPOINT, "running", "-", "ThompsonSampling"]

    code, out, _ = run(capsys, "pause", ENDPOINT, "--url", url, "--reason", "retraining")
    assert (code, out.splitlines()[0]) == (0, f"{ENDPOINT}: paused (version 1, ThompsonSampling)")

    code, out, err = run(capsys, "pause", ENDPOINT, "--url", url)
    assert (code, out) == (4, "")
    assert err.count("\n") == 1
    assert "HTTP 409" in err and "allowed: resume, conclude" in err

    assert run(capsys, "resume", ENDPOINT, "--url", url)[0] == 0
    assert run(capsys, "conclude", ENDPOINT, "--url", url)[0] == 4  # no winner yet
    code, out, _ = run(capsys, "conclude", ENDPOINT, "--url", url, "--winner", "Challenger1")
    assert code == 0
    assert out.startswith(f"{ENDPOINT}: concluded, winner Challenger1 (version 3")

    code, out, _ = run(capsys, "show", ENDPOINT, "--url", url)
    assert code == 0
    lines = out.splitlines()
    variants = lines[lines.index("") + 1 :][:3]
    assert variants[0].split() == [
        "VARIANT",
        "INVOCATIONS",
        "CONVERSIONS",
        "REWARD",
        "ALLOCATION",
        "WEIGHT",
        "ADDED",
        "ERRORS",
        "P99_MS",
    ]
    assert [line.split()[0] for line in variants[1:]] == ["Champion1", "Challenger1"]
    audit = out.split("\n\n")[-1].splitlines()
    assert audit[0].split() == ["AT", "(UTC)", "ACTOR", "ACTION", "REASON"]
    assert [line.split()[3:5] for line in audit[1:]] == [
        ["pause", "retraining"],
        ["resume"],
        ["conclude"],
    ]


def test_unknown_endpoint_is_exit_3_and_no_name_is_exit_2(start_server, capsys) -> None:
    url = start_server().url

    code, _, err = run(capsys, "show", "other", "--url", url)
    assert code == 3 and "HTTP 404" in err

    code, _, err = run(capsys, "pause", "--url", url)
    assert code == 2 and "give the endpoint name" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("conclude", "--variant", "Challenger1"), "conclude: --variant is for retire-variant, "),
        (("pause", "--winner", "Challenger1"), "pause: --winner is for conclude only"),
        (
            ("retire-variant", "--variant", "A", "--initial-weight", "0"),
            "retire-variant: --initial-weight is for add-variant only",
        ),
        (("show", "--reason", "why"), "show: --reason is for pause, resume, conclude, "),
    ],
)
def test_an_option_for_another_action_is_refused_not_ignored(
    start_server, capsys, argv, message
) -> None:
    # `conclude --variant Challenger1` concluded with the decision's winner, whichever it
    # was: a final move the user did not name.
    url = start_server().url
    action, *options = argv

    code, out, err = run(capsys, action, ENDPOINT, "--url", url, *options)

    assert (code, out, err.count("\n")) == (2, "", 1)
    assert err.startswith(f"abtest: endpoints {message}")
    assert run(capsys, "show", ENDPOINT, "--url", url)[1].startswith(f"{ENDPOINT}: running")


def test_list_with_an_endpoint_name_is_refused_not_ignored(capsys) -> None:
    # It listed every endpoint, as if the name had not been given; nothing is asked of the
    # API (nothing listens at this URL).
    code, out, err = run(capsys, "list", ENDPOINT, "--url", "http://127.0.0.1:9")

    assert (code, out, err.count("\n")) == (2, "", 1)
    assert err.startswith(f"abtest: endpoints list: takes no endpoint name (show {ENDPOINT} ")


def test_a_url_with_a_wrong_path_is_exit_1_not_no_such_endpoint(start_server, capsys) -> None:
    # A 404 for the route (here /stats/admin/list) was exit 3, "no such endpoint".
    url = start_server().url

    code, _, err = run(capsys, "show", ENDPOINT, "--url", f"{url}/stats")

    assert code == 1
    assert (
        err.startswith("abtest: HTTP 404: no route POST /stats/admin/show") and err.count("\n") == 1
    )


@pytest.fixture
def guarded(tmp_path: Path):
    runtime = Runtime(write_config(tmp_path), tmp_path / "data", rng=random.Random(0))
    with EmbeddedServer(runtime, token=TOKEN) as server:
        yield server


def test_the_token_is_sent_and_a_wrong_one_is_exit_5(guarded, capsys, monkeypatch) -> None:
    monkeypatch.delenv("ABTEST_TOKEN", raising=False)

    url = ("--url", guarded.url, "--auth", "token")
    code, _, err = run(capsys, "show", ENDPOINT, *url, "--token", "wrong")
    assert (code, err.count("\n")) == (5, 1)
    assert run(capsys, "show", ENDPOINT, *url, "--token", TOKEN)[0] == 0
    # --auth token without a token is a usage error, in one line
    code, _, err = run(capsys, "show", ENDPOINT, *url)
    assert (code, err.count("\n")) == (2, 1) and "--token" in err
    # and without --auth the token is not sent: the server refuses
    assert run(capsys, "show", ENDPOINT, "--url", guarded.url)[0] == 5


def test_no_server_is_exit_1_in_one_line(capsys) -> None:
    code, _, err = run(capsys, "list", "--url", "http://127.0.0.1:9")

    assert code == 1
    assert err.startswith("abtest: http://127.0.0.1:9: ") and err.count("\n") == 1


# botocore's credential chain, every link pointed at nothing (the instance metadata
# service disabled, so nothing leaves the machine).
NO_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
NO_CREDENTIALS += ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE")
NO_CREDENTIALS += ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


@pytest.mark.parametrize(
    "argv",
    [
        ("endpoints", "list"),
        ("simulate", "--endpoint", ENDPOINT, "--truth", "Champion1=0.1"),
        ("dashboard",),
    ],
)
def test_iam_auth_without_credentials_is_one_line_exit_2(
    argv: tuple[str, ...], tmp_path: Path, capsys, monkeypatch
) -> None:
    """A script reads the exit code and one line, never a traceback (README: exit codes)."""
    for name in NO_CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "BOTO_CONFIG"):
        monkeypatch.setenv(name, str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    url = "https://abc123.execute-api.us-east-1.amazonaws.com"

    code = main([*argv, "--url", url, "--auth", "iam"])

    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("abtest: config error: --auth iam: ") and err.count("\n") == 1
    assert "credentials" in err


def test_retire_variant_marks_it_in_the_tables(start_server, capsys) -> None:
    url = start_server().url

    assert run(capsys, "retire-variant", ENDPOINT, "--url", url)[0] == 2  # no --variant
    code, out, _ = run(capsys, "retire-variant", ENDPOINT, "--url", url, "--variant", "Challenger1")
    assert code == 0
    assert "Challenger1 (retired)" in out
    code, _, err = run(capsys, "retire-variant", ENDPOINT, "--url", url, "--variant", "Champion1")
    assert code == 4 and "last serving variant" in err
    assert "Champion1, Challenger1 (retired)" in run(capsys, "list", "--url", url)[1]


class ThrottledHost:
    """A model host that keeps weights, as SageMaker does, throttling until told otherwise."""

    keeps_weights = True

    def __init__(self) -> None:
        self.refusing = True

    def promote(self, endpoint_name: str, winner: str) -> dict[str, float]:
        if self.refusing:
            raise ModelHostUnavailableError(
                f"UpdateEndpointWeightsAndCapacities on SageMaker endpoint {endpoint_name} "
                "failed: ThrottlingException: Rate exceeded"
            )
        return {"Champion1": 0.0, "Challenger1": 1.0}


def test_a_pending_promotion_is_exit_1_then_shown_until_concluding_again_finishes_it(
    start_server, capsys
) -> None:
    # GIVEN a server whose conclude promotes in a model host that throttles (as on AWS)
    server = start_server()
    url, host = server.url, ThrottledHost()
    server.runtime.use_cases["conclude"].model_host = host

    code, out, err = run(capsys, "conclude", ENDPOINT, "--url", url, "--winner", "Challenger1")

    assert (code, out) == (1, "")
    assert "HTTP 503" in err and "ThrottlingException" in err
    assert "promotion in the model host pending: conclude again to finish it" in err
    code, out, _ = run(capsys, "show", ENDPOINT, "--url", url)
    assert out.startswith(
        f"{ENDPOINT}: concluded, winner Challenger1, promotion pending (version 1"
    )

    host.refusing = False
    code, out, _ = run(capsys, "conclude", ENDPOINT, "--url", url)

    assert code == 0
    assert out.startswith(f"{ENDPOINT}: concluded, winner Challenger1, promotion done (version 2")


def test_add_variant_shows_it_added_with_its_model(start_server, capsys) -> None:
    url = start_server().url
    model = "tests.embedded.helpers:constant"

    assert run(capsys, "add-variant", ENDPOINT, "--url", url, "--model", model)[0] == 2
    code, _, err = run(capsys, "add-variant", ENDPOINT, "--url", url, "--variant", "Challenger2")
    assert code == 2 and "HTTP 400" in err and "model" in err  # the server must call it
    code, _, err = run(
        capsys, "add-variant", ENDPOINT, "--url", url, "--variant", "Champion1", "--model", model
    )
    assert code == 4 and "already a variant" in err

    code, out, _ = run(
        capsys,
        "add-variant",
        ENDPOINT,
        "--url",
        url,
        "--variant",
        "Challenger2",
        "--model",
        model,
        "--reason",
        "new model",
    )

    assert code == 0
    assert out.splitlines()[0] == f"{ENDPOINT}: running (version 1, ThompsonSampling)"
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("Ch")}
    # no model calls yet: no error rate, no latency
    assert rows["Challenger2"][1:] == ["0", "0", "0", "0.333", "1", "yes", f"({model})", "-", "-"]
    assert rows["Champion1"][6] == "-"  # it came with the experiment
    assert "add-variant  new model" in out


def test_weights_set_by_hand_and_their_exit_codes(start_server, capsys) -> None:
    url = start_server(strategy="WeightedSampling").url

    assert run(capsys, "weights", ENDPOINT, "--url", url)[0] == 2  # no --weight
    for bad in ("Champion1", "Champion1=abc", "Champion1=nan", "=2"):
        code, _, err = run(capsys, "weights", ENDPOINT, "--url", url, "--weight", bad)
        assert (code, err) == (
            2,
            f"abtest: endpoints weights: --weight {bad!r}: expected VARIANT=WEIGHT, "
            "WEIGHT a number\n",
        )
    twice = ("--weight", "Champion1=2", "--weight", "Champion1=3")
    code, _, err = run(capsys, "weights", ENDPOINT, "--url", url, *twice)
    assert (code, err) == (2, "abtest: endpoints weights: --weight: 'Champion1' given twice\n")
    code, _, err = run(capsys, "weights", ENDPOINT, "--url", url, "--weight", "Nope=1")
    assert code == 2 and "HTTP 400" in err and "weights" in err

    code, out, _ = run(
        capsys,
        "weights",
        ENDPOINT,
        "--url",
        url,
        "--weight",
        "Champion1=3",
        "--weight",
        "Challenger1=1",
    )

    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("Ch")}
    assert rows["Champion1"][4:6] == ["0.750", "3"]
    assert rows["Challenger1"][4:6] == ["0.250", "1"]


def test_weights_of_a_bandit_are_exit_4(start_server, capsys) -> None:
    url = start_server().url

    code, _, err = run(capsys, "weights", ENDPOINT, "--url", url, "--weight", "Champion1=3")

    assert code == 4 and "strategy" in err


def test_a_demoted_variant_is_marked_with_why_and_reinstated(start_server, capsys) -> None:
    server = start_server(
        strategy="WeightedSampling",
        variants={"Champion1": "tests.embedded.helpers:constant",
                  "Challenger1": "tests.embedded.helpers:broken"},
        extra_endpoint="max_error_rate = 0.05",
    )  # fmt: skip
    url = server.url
    reinstate = ("reinstate", ENDPOINT, "--url", url)
    assert run(capsys, *reinstate)[0] == 2  # no --variant
    code, _, err = run(capsys, *reinstate, "--variant", "Challenger1")
    assert code == 4 and "not demoted" in err  # nothing failed yet
    with httpx.Client() as client:
        for n in range(10):  # every call of the broken model fails
            body = {"endpoint_name": ENDPOINT, "user_id": f"u{n}", "data": {},
                    "endpoint_variant": "Challenger1"}  # fmt: skip
            assert client.post(f"{url}/invocation", json=body).status_code == 502
    server.runtime.events.flush()

    code, out, _ = run(capsys, "show", ENDPOINT, "--url", url)
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("Challenger1"))
    assert row.split()[:2] == ["Challenger1", "(demoted)"] and "100.0%" in row.split()
    assert "Challenger1 demoted: error rate 100.0% over 10 calls" in out
    code, out, _ = run(capsys, *reinstate, "--variant", "Challenger1", "--reason", "fixed")
    assert code == 0 and "(demoted)" not in out


def test_a_reader_that_stops_ends_it_quietly_after_the_change(start_server) -> None:
    # `abtest endpoints pause ... | head -1`: the pause is made, then the table meets a
    # closed pipe; that was `abtest: [Errno 32] Broken pipe` and exit 1, as a failure is.
    url = start_server().url
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    try:
        result = subprocess.run(
            [*ABTEST, "endpoints", "pause", ENDPOINT, "--url", url],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    finally:
        os.close(write)

    assert (result.returncode, result.stderr) == (128 + signal.SIGPIPE, "")
    assert httpx.post(f"{url}/admin/show", json={"endpoint_name": ENDPOINT}).json()["state"] == (
        "paused"
    )
