"""Several endpoints on one embedded server: one store, one event log, each endpoint with its
own settings, models, counters and lifecycle; a config that drops one deregisters it."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from abtest.cli import main
from abtest.embedded.config import load_config
from abtest.embedded.server import EmbeddedServer
from abtest.embedded.wiring import Runtime
from abtest.errors import ConfigError

EVENT_LOG = "[event_log]\nbuffer_interval_seconds = 0.2\n"
ALPHA = """
[[endpoints]]
name = "alpha"
strategy = "ThompsonSampling"
assignment_ttl_seconds = 3600

[[endpoints.variants]]
name = "A1"
model = "tests.embedded.helpers:echo"

[[endpoints.variants]]
name = "A2"
model = "tests.embedded.helpers:constant"
"""
BETA = """
[[endpoints]]
name = "beta"
strategy = "EpsilonGreedy"
strategy_params = { epsilon = 0.5 }
warmup = 2

[[endpoints.variants]]
name = "B1"
model = "tests.embedded.helpers:constant"

[[endpoints.variants]]
name = "B2"
model = "tests.embedded.helpers:constant"

[[endpoints.variants]]
name = "B3"
model = "tests.embedded.helpers:echo"
"""


def post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    if path == "/invocation":
        body = {"data": "{}", **body}
    return httpx.post(f"{url}{path}", json=body, timeout=30)


def send_traffic(url: str, endpoint: str, users: int, converting: int) -> dict[str, list[int]]:
    """`users` new users invoke `endpoint`; every `converting`-th converts. Returns per variant
    [invocations, conversions] as the server answered them."""
    sent: dict[str, list[int]] = {}
    for n in range(users):
        user = f"{endpoint}-user-{n}"
        answer = post(url, "/invocation", {"endpoint_name": endpoint, "user_id": user})
        assert answer.status_code == 200, answer.text
        variant = answer.json()["endpoint_variant"]
        pair = sent.setdefault(variant, [0, 0])
        pair[0] += 1
        if n % converting == 0:
            body = {"endpoint_name": endpoint, "user_id": user}
            assert post(url, "/conversion", body).status_code == 200
            pair[1] += 1
    return sent


def counted(url: str, endpoint: str) -> dict[str, list[int]]:
    stats = post(url, "/stats", {"endpoint_name": endpoint}).json()
    return {
        m["variant_name"]: [m["invocation_count"], m["conversion_count"]]
        for m in stats["variant_metrics"]
        if m["invocation_count"] or m["conversion_count"]
    }


def wait_for(url: str, expected: dict[str, dict[str, list[int]]], timeout: float = 20.0) -> None:
    """Until every endpoint's /stats counts what was sent (the buffer seals every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while {name: counted(url, name) for name in expected} != expected:
        if time.monotonic() > deadline:
            found = {name: counted(url, name) for name in expected}
            raise AssertionError(f"not counted in {timeout} s: {found} != {expected}")
        time.sleep(0.1)


@pytest.fixture
def two_endpoints(tmp_path: Path) -> Path:
    path = tmp_path / "experiments.toml"
    path.write_text(EVENT_LOG + ALPHA + BETA)
    return path


def serve(config: Path, data_dir: Path) -> EmbeddedServer:
    return EmbeddedServer(Runtime(config, data_dir, rng=random.Random(7))).start()


# Over 3 s on a shared machine (a server, two endpoints' traffic, several seals).
@pytest.mark.slow(seconds=8)
def test_two_endpoints_count_and_change_separately(two_endpoints: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = serve(two_endpoints, data_dir)
    try:
        url = server.url
        # GIVEN one server holding both endpoints, each with its own strategy and variants
        health = httpx.get(f"{url}/health").json()
        assert health["endpoint_names"] == ["alpha", "beta"]
        listed = post(url, "/admin/list", {}).json()["endpoints"]
        assert [(e["endpoint_name"], e["strategy"], e["variants"]) for e in listed] == [
            ("alpha", "ThompsonSampling", ["A1", "A2"]),
            ("beta", "EpsilonGreedy", ["B1", "B2", "B3"]),
        ]

        # WHEN traffic goes to both
        sent = {
            "alpha": send_traffic(url, "alpha", users=24, converting=3),
            "beta": send_traffic(url, "beta", users=15, converting=2),
        }
        assert set(sent["alpha"]) <= {"A1", "A2"} and set(sent["beta"]) <= {"B1", "B2", "B3"}

        # THEN once sealed and aggregated, each endpoint counts its own traffic only
        wait_for(url, sent)
        alpha = post(url, "/stats", {"endpoint_name": "alpha"}).json()
        beta = post(url, "/stats", {"endpoint_name": "beta"}).json()
        assert (alpha["strategy"], beta["strategy"], beta["strategy_params"]["epsilon"]) == (
            "ThompsonSampling",
            "EpsilonGreedy",
            0.5,
        )
        assert sum(v[0] for v in sent["alpha"].values()) == 24
        assert sum(v[0] for v in sent["beta"].values()) == 15
        for name in ("alpha", "beta"):
            history = post(url, "/history", {"endpoint_name": name}).json()["snapshots"]
            assert history, name
            assert {v["variant_name"] for v in history[-1]["variants"]} <= {
                "alpha": {"A1", "A2"},
                "beta": {"B1", "B2", "B3"},
            }[name]

        # and a variant of one endpoint is no variant of the other
        wrong = post(url, "/invocation", {"endpoint_name": "beta", "endpoint_variant": "A1"})
        assert wrong.status_code == 409 and "A1" in wrong.json()["message"]

        # WHEN one endpoint is paused and the other concluded
        assert post(url, "/admin/pause", {"endpoint_name": "alpha"}).status_code == 200
        concluded = post(url, "/admin/conclude", {"endpoint_name": "beta", "winner": "B3"})
        assert concluded.status_code == 200, concluded.text

        # THEN each change touched its endpoint only: states, audit logs, counters
        shown = {n: post(url, "/admin/show", {"endpoint_name": n}).json() for n in sent}
        assert (shown["alpha"]["state"], shown["alpha"]["winner"]) == ("paused", None)
        assert (shown["beta"]["state"], shown["beta"]["winner"]) == ("concluded", "B3")
        assert [e["action"] for e in shown["alpha"]["audit_log"]] == ["pause"]
        assert [e["action"] for e in shown["beta"]["audit_log"]] == ["conclude"]
        assert {n: counted(url, n) for n in sent} == sent
        # a new user of the concluded one gets its winner; of the paused one, its champion
        new = {"user_id": "newcomer"}
        assert (
            post(url, "/invocation", {"endpoint_name": "beta", **new}).json()["endpoint_variant"]
            == "B3"
        )
        assert (
            post(url, "/invocation", {"endpoint_name": "alpha", **new}).json()["endpoint_variant"]
            == "A1"
        )
        # and resuming one leaves the other concluded
        assert post(url, "/admin/resume", {"endpoint_name": "alpha"}).status_code == 200
        assert post(url, "/admin/show", {"endpoint_name": "beta"}).json()["state"] == "concluded"

        # Each endpoint's assignments live as long as its own config says.
        store = server.runtime.store
        now = time.time()
        alpha_user = store.get_assignment("alpha", "alpha-user-0", now)
        beta_user = store.get_assignment("beta", "beta-user-0", now)
        assert alpha_user is not None and beta_user is not None
        assert alpha_user.ttl - alpha_user.assigned_at == pytest.approx(3600, abs=1)
        assert beta_user.ttl - beta_user.assigned_at == pytest.approx(90 * 24 * 3600, abs=1)
    finally:
        server.stop()


def test_abtest_endpoints_list_names_every_endpoint(two_endpoints: Path, tmp_path: Path, capsys):
    with serve(two_endpoints, tmp_path / "data") as server:
        assert main(["endpoints", "list", "--url", server.url]) == 0
        rows = capsys.readouterr().out.splitlines()[1:]
        assert [row.split()[:4] for row in rows] == [
            ["alpha", "running", "-", "ThompsonSampling"],
            ["beta", "running", "-", "EpsilonGreedy"],
        ]
        assert main(["endpoints", "pause", "beta", "--url", server.url]) == 0
        capsys.readouterr()
        assert main(["endpoints", "list", "--url", server.url]) == 0
        states = [row.split()[:2] for row in capsys.readouterr().out.splitlines()[1:]]
        assert states == [["alpha", "running"], ["beta", "paused"]]


# Over 3 s on a shared machine (three servers started in turn).
@pytest.mark.slow(seconds=4)
def test_an_endpoint_dropped_from_the_config_is_deregistered_and_stays_readable(
    two_endpoints: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    # GIVEN both endpoints served and counted
    with serve(two_endpoints, data_dir) as server:
        sent = {
            "alpha": send_traffic(server.url, "alpha", users=6, converting=2),
            "beta": send_traffic(server.url, "beta", users=5, converting=2),
        }
        wait_for(server.url, sent)
        post(server.url, "/admin/pause", {"endpoint_name": "beta"})

    # WHEN the server starts again from a folder holding only alpha's config
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "alpha.toml").write_text(EVENT_LOG + ALPHA)
    with serve(folder, data_dir) as server:
        url = server.url
        # THEN beta is no longer served nor listed, but its counters stay readable
        assert [e["endpoint_name"] for e in post(url, "/admin/list", {}).json()["endpoints"]] == [
            "alpha"
        ]
        for route in ("/invocation", "/conversion", "/admin/show", "/admin/resume"):
            gone = post(url, route, {"endpoint_name": "beta", "user_id": "beta-user-0"})
            assert gone.status_code == 404, (route, gone.text)
        beta = post(url, "/stats", {"endpoint_name": "beta"}).json()
        assert beta["status"] == "deleted"
        assert counted(url, "beta") == sent["beta"]
        assert post(url, "/history", {"endpoint_name": "beta"}).json()["snapshots"]
        # and alpha resumes with its counters
        assert counted(url, "alpha") == sent["alpha"]
        assert httpx.get(f"{url}/health").json()["endpoint_names"] == ["alpha"]

    # WHEN beta comes back in the config, it is served again with its counters and state
    (folder / "beta.toml").write_text(BETA)
    with serve(folder, data_dir) as server:
        assert counted(server.url, "beta") == sent["beta"]
        shown = post(server.url, "/admin/show", {"endpoint_name": "beta"}).json()
        assert shown["state"] == "paused"


def test_a_folder_of_configs_serves_every_file(tmp_path: Path) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "a.toml").write_text(EVENT_LOG + ALPHA)
    (folder / "b.toml").write_text(BETA)
    (folder / "notes.txt").write_text("not a config")
    with serve(folder, tmp_path / "data") as server:
        answers = Counter(
            post(server.url, "/invocation", {"endpoint_name": name, "user_id": "u"}).status_code
            for name in ("alpha", "beta")
        )
        assert answers == {200: 2}
        # The one-file [event_log] is the server's: both endpoints' events seal at 0.2 s.
        assert server.runtime.events.buffer_interval_seconds == 0.2


# -- the config ----------------------------------------------------------------------------


def test_a_file_of_several_endpoints_keeps_each_ones_settings(two_endpoints: Path) -> None:
    config = load_config(two_endpoints)
    alpha, beta = config.endpoints
    assert config.endpoint_names == ("alpha", "beta")
    assert (alpha.strategy, alpha.warmup, alpha.assignment_ttl_seconds) == (
        "ThompsonSampling",
        0,
        3600,
    )
    assert (beta.strategy, beta.strategy_params["epsilon"], beta.warmup) == (
        "EpsilonGreedy",
        0.5,
        2,
    )
    assert [v.name for v in beta.variants] == ["B1", "B2", "B3"]
    assert beta.endpoint_config().variants[2].name == "B3"
    assert config.event_log.buffer_interval_seconds == 0.2
    # A config of several endpoints does not pretend to be one of them.
    with pytest.raises(ValueError, match="2 endpoints"):
        _ = config.endpoint


def test_the_one_endpoint_file_still_reads_as_its_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "one.toml"
    path.write_text('[endpoint]\nname = "e1"\n[[variants]]\nname = "A"\nmodel = "m:f"\n')
    config = load_config(path)
    endpoint = config.endpoint
    assert (config.endpoint_names, endpoint.endpoint_name, endpoint.strategy) == (
        ("e1",),
        "e1",
        "TopTwoThompson",
    )


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("files", "bad_file", "message"),
    [
        # the same name twice in one file
        (
            {"x.toml": ALPHA + ALPHA.replace('"A2"', '"A3"')},
            "x.toml",
            "endpoints[1].name: 'alpha' is used by endpoints[0]; every endpoint needs its own",
        ),
        # ... or in two files of a folder (one file in the older one-endpoint form)
        (
            {
                "a.toml": ALPHA,
                "b.toml": '[endpoint]\nname = "alpha"\n[[variants]]\nname = "A"\nmodel = "m:f"\n',
            },
            "b.toml",
            "endpoint.name: 'alpha' is used by endpoints[0] of {folder}/a.toml",
        ),
        # a key of one endpoint, named with its place
        (
            {"x.toml": ALPHA + BETA.replace("warmup = 2", "warmup = -2")},
            "x.toml",
            "endpoints[1].warmup: ",
        ),
        (
            {"x.toml": ALPHA.replace('name = "A2"', 'name = "A1"')},
            "x.toml",
            "endpoints[0].variants[1].name: 'A1' is used",
        ),
        ({"x.toml": "[[endpoints]]\nname = 'e'\n"}, "x.toml", "endpoints[0].variants: missing"),
        # both forms in one file
        (
            {"x.toml": ALPHA + '[endpoint]\nname = "e1"\n'},
            "x.toml",
            "endpoint: beside [[endpoints]]; a file holds one endpoint ([endpoint] and "
            "[[variants]]) or several",
        ),
        # the event log is the server's: files that set it must agree
        (
            {
                "a.toml": EVENT_LOG + ALPHA,
                "b.toml": "[event_log]\nbuffer_interval_seconds = 5\n" + BETA,
            },
            "b.toml",
            "event_log: differs from {folder}/a.toml's; the event log is the server's",
        ),
    ],
)
def test_a_bad_config_of_several_endpoints_names_the_file_and_the_key(
    tmp_path: Path, files: dict[str, str], bad_file: str, message: str
) -> None:
    folder = tmp_path / "configs"
    for name, text in files.items():
        write(folder, name, text)
    target = folder if len(files) > 1 else folder / bad_file
    with pytest.raises(ConfigError) as raised:
        load_config(target)
    assert str(raised.value).startswith(f"{folder / bad_file}: ")
    assert message.format(folder=folder) in str(raised.value)


def test_a_folder_whose_files_agree_on_the_event_log_loads(tmp_path: Path) -> None:
    folder = tmp_path / "configs"
    write(folder, "a.toml", EVENT_LOG + ALPHA)
    write(folder, "b.toml", EVENT_LOG + BETA)
    write(folder, "c.toml", '[endpoint]\nname = "gamma"\n[[variants]]\nname = "G"\nmodel = "m:f"\n')
    config = load_config(folder)
    assert config.endpoint_names == ("alpha", "beta", "gamma")
    assert config.event_log.buffer_interval_seconds == 0.2
    assert [e.path.name for e in config.endpoints] == ["a.toml", "b.toml", "c.toml"]


def test_a_folder_without_configs_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"a folder without any \*\.toml file"):
        load_config(tmp_path)


def test_a_bad_model_of_the_second_endpoint_names_its_key(tmp_path: Path) -> None:
    path = write(tmp_path, "x.toml", ALPHA + BETA.replace("helpers:echo", "helpers:nothing"))
    with pytest.raises(ConfigError, match=r"x.toml: endpoints\[1\].variants\[2\].model: module"):
        Runtime(path, tmp_path / "data")


def test_the_readme_example_of_several_endpoints_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("#### Several endpoints on one server", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    config = load_config(write(tmp_path, "experiments.toml", example))
    assert config.endpoint_names == ("reviews-helpfulness", "search-ranking")
    ranking = config.endpoints[1]
    assert (ranking.strategy, ranking.assignment_ttl_seconds) == ("EpsilonGreedy", 86400)
    assert config.event_log.buffer_interval_seconds == 5


# Over 3 s on a shared machine (three server processes, started in turn).
@pytest.mark.slow(seconds=12)
def test_serve_with_workers_serves_a_folder_of_endpoints(tmp_path: Path, monkeypatch) -> None:
    from tests.embedded.test_serve_process import Serving

    # GIVEN `abtest serve --workers 2` over a folder of two configs, sealing once an hour
    folder = tmp_path / "configs"
    write(folder, "a.toml", "[event_log]\nbuffer_interval_seconds = 3600\n" + ALPHA)
    write(folder, "b.toml", BETA)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("ABTEST_WORKERS", "2")
    server = Serving(folder, data_dir)
    try:
        health = httpx.get(f"{server.url}/health").json()
        assert health["endpoint_names"] == ["alpha", "beta"]
        # WHEN both endpoints get traffic, served by the workers, and the server stops
        sent = {
            "alpha": send_traffic(server.url, "alpha", users=10, converting=2),
            "beta": send_traffic(server.url, "beta", users=6, converting=3),
        }
    finally:
        code, out = server.stop()
    # THEN every event of each is counted on its own endpoint
    assert code == 0 and "sealed and aggregated" in out
    monkeypatch.setenv("ABTEST_WORKERS", "1")
    again = Serving(folder, data_dir)
    try:
        assert {name: counted(again.url, name) for name in sent} == sent
    finally:
        again.stop()
