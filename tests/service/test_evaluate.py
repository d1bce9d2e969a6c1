"""`abtest evaluate`: the log joined as a user relies on, from real files and from S3 (moto)."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import boto3
import pytest

from abtest.cli import main
from abtest.events import conversion_event, encode, invocation_event

T0 = 1_780_000_000.0


def invocation(user, inference_id, variant, propensity, assignment="new", endpoint="reviews", t=0):
    return invocation_event(
        now=T0 + t,
        endpoint_name=endpoint,
        variant_name=variant,
        user_id=user,
        inference_id=inference_id,
        strategy="ThompsonSampling",
        propensity=propensity,
        assignment=assignment,
    )


def conversion(user, inference_id, variant, reward=1.0, endpoint="reviews", t=0):
    return conversion_event(
        now=T0 + t,
        endpoint_name=endpoint,
        variant_name=variant,
        user_id=user,
        inference_id=inference_id,
        strategy="ThompsonSampling",
        reward=reward,
        assigned_at=T0,
        propensity=0.5,
        late=False,
    )


# Two delivered objects. Rows: u1 a (converts by id), u2 b (converts by the id of a later
# invocation of the same assignment), u3 a (converts with an id the log never served: by
# user), u4 b (no conversion). u5's manual invocation is not an assignment, so its
# conversion is unattributed; the other endpoint and the redelivered line change nothing.
FIRST = [
    invocation("u1", "i1", "a", 0.5, t=1),
    invocation("u2", "i2", "b", 0.25, t=2),
    invocation("x1", "j1", "a", 0.9, endpoint="other", t=2),
    conversion("u1", "i1", "a", t=3),
    invocation("u2", "i3", "b", 0.25, assignment="existing", t=4),
    invocation("u5", "i6", "b", None, assignment="manual", t=4),
]
SECOND = [
    invocation("u3", "i4", "a", 0.5, t=5),
    invocation("u4", "i5", "b", 0.25, t=6),
    conversion("u2", "i3", "b", t=7),
    conversion("u3", "random-id", "a", t=8),
    conversion("u5", "i6", "b", t=9),
    conversion("u1", "i1", "a", t=3),  # a redelivered line: the same conversion
    conversion("x1", "j1", "a", endpoint="other", t=9),
]


def lines(events) -> bytes:
    return b"".join(encode(e) for e in events)


def local_log(tmp_path, objects):
    events = tmp_path / "data" / "events"
    for folder, name, body in objects:
        (events / folder).mkdir(parents=True, exist_ok=True)
        (events / folder / name).write_bytes(body)
    return tmp_path / "data"


def two_files(tmp_path, first=FIRST, second=SECOND):
    # One applied (counted) file and one still waiting: both are the log.
    return local_log(
        tmp_path,
        [
            ("applied", "events-20260101T000000.000000Z-aaa.jsonl", lines(first)),
            ("sealed", "events-20260101T000100.000000Z-bbb.jsonl", lines(second)),
        ],
    )


def run(capsys, *args):
    code = main(["evaluate", "--endpoint", "reviews", "--no-progress", *args])
    out, err = capsys.readouterr()
    return code, out, err


def check_report(out_dir, out):
    assert (
        "reviews: 4 assignments, 4 conversions (2 by inference_id, 1 by user, 1 unattributed)"
        in out
    )
    report = json.loads((out_dir / "evaluation.json").read_text())
    assert report["variants"] == ["a", "b"]
    assert (report["assignments"], report["unattributed"]) == (4, 1)
    ips = {(e["policy"], e["estimator"]): e["value"] for e in report["estimates"]}
    # Rewards joined: a rows (p 0.5) both converted, b rows (p 0.25): one of two.
    assert ips["a", "IPS"] == pytest.approx((2 + 2) / 4)
    assert ips["b", "IPS"] == pytest.approx(4 / 4)
    assert ips["uniform", "IPS"] == pytest.approx((1 + 2 + 1 + 0) / 4)
    assert ips["a", "SNIPS"] == pytest.approx(1.0) and ips["b", "SNIPS"] == pytest.approx(0.5)
    with (out_dir / "evaluation.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 3 * 4  # a, b, uniform x DM, IPS, SNIPS, DR
    assert {r["policy"] for r in rows} == {"a", "b", "uniform"}
    assert all(float(r["low"]) <= float(r["value"]) <= float(r["high"]) for r in rows)
    # Four rows cannot carry a normal interval: every weighted estimate says so.
    assert "effective sample size" in rows[1]["warnings"]


def test_evaluate_joins_the_embedded_logs_files(tmp_path, capsys):
    data = two_files(tmp_path)
    code, out, err = run(capsys, "--data-dir", str(data), "--out", str(tmp_path / "out"))
    assert code == 0, err
    check_report(tmp_path / "out", out)


def test_evaluate_reads_an_s3_prefix_of_gzip_objects(fake_aws, tmp_path, capsys):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="log")
    s3.put_object(Bucket="log", Key="events/2026/01/01/00/a.gz", Body=gzip.compress(lines(FIRST)))
    # A plain object too: gzip is told by its bytes, not its name.
    s3.put_object(Bucket="log", Key="events/2026/01/01/00/b", Body=lines(SECOND))
    s3.put_object(Bucket="log", Key="rejected/events/x.jsonl", Body=lines(SECOND))
    code, out, err = run(capsys, "--bucket", "log", "--out", str(tmp_path / "out"))
    assert code == 0, err
    check_report(tmp_path / "out", out)


def test_a_strategy_with_other_parameters_is_replayed(tmp_path, capsys):
    data = two_files(tmp_path)
    code, _out, err = run(
        capsys,
        "--data-dir",
        str(data),
        "--out",
        str(tmp_path / "out"),
        "--strategy",
        "TopTwoThompson:beta=0.7",
        "--batch-size",
        "2",
    )
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    replayed = [e for e in report["estimates"] if e["policy"] == "TopTwoThompson:beta=0.7"]
    assert [e["estimator"] for e in replayed] == ["DM", "IPS", "SNIPS", "DR"]
    # The first two rows see no data: a uniform split, weights 0.5/0.5 and 0.5/0.25.
    assert replayed[1]["value"] > 0


def test_a_long_strategy_spec_keeps_the_table_s_columns(tmp_path, capsys):
    # A policy name over 24 characters pushed its rows' columns right of the header's.
    spec = "TopTwoThompson:beta=0.7,floor=0.05"
    data = two_files(tmp_path)

    code, out, err = run(capsys, "--data-dir", str(data), "--out", str(tmp_path / "o"),
                         "--strategy", spec, "--batch-size", "2")  # fmt: skip

    assert code == 0, err
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("policy "))
    rows = [line for line in lines if line.split()[:1] in (["a"], ["b"], ["uniform"], [spec])]
    assert len(rows) == 4 * 4
    column = header.index("estimator")
    for row in rows:  # the estimator under its heading, the ESS ending where its heading does
        assert row[column - 1] == " " and row[column:].split()[0] in ("DM", "IPS", "SNIPS", "DR")
        assert row[len(header) - 1].isdigit() and row[len(header) :][:1] in ("", " ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--endpoint", "nope"], "no assignment of endpoint 'nope' in the log (endpoints in it:"),
        (["--strategy", "Nope"], "strategy 'Nope':"),
        (["--strategy", "TopTwoThompson:beta=2"], "strategy 'TopTwoThompson:beta=2': beta"),
        (["--strategy", "TopTwoThompson:beta"], "write parameters as name=value"),
        (["--strategy", "TopTwoThompson:beta=0.5,beta=0.6"], "': beta given twice"),
    ],
)
def test_bad_requests_are_one_line_naming_the_problem(tmp_path, capsys, args, message):
    data = two_files(tmp_path)
    code = main(["evaluate", "--endpoint", "reviews", "--no-progress", "--data-dir", str(data),
                 "--out", str(tmp_path / "out"), *args])  # fmt: skip
    _out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_a_log_without_propensities_is_one_line_naming_the_file_and_line(tmp_path, capsys):
    first = [*FIRST[:1], invocation("u9", "i9", "a", None, t=2)]
    data = two_files(tmp_path, first=first)
    code, _out, err = run(capsys, "--data-dir", str(data))
    assert code == 2
    assert err == (
        "abtest: evaluate: events-20260101T000000.000000Z-aaa.jsonl line 2: an assignment of "
        "reviews was logged without a propensity; off-policy estimates need every one\n"
    )


def _without(event: dict, name: str) -> dict:
    return {k: v for k, v in event.items() if k != name}


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        (
            invocation("u9", "i9", "a", 1.5, t=2),
            "an assignment of reviews was logged with propensity 1.5, not in (0, 1]",
        ),
        (
            invocation("u9", "i9", "a", 0, t=2),
            "an assignment of reviews was logged with propensity 0, not in (0, 1]",
        ),
        (invocation("u9", "i9", "a", "x", t=2), "propensity 'x' is not a number"),
        (
            _without(invocation("u9", "i9", "a", 0.5, t=2), "assignment"),
            "an event of reviews this version cannot read (no assignment)",
        ),
        (
            _without(conversion("u1", "i1", "a", t=2), "inference_id"),
            "an event of reviews this version cannot read (no inference_id)",
        ),
    ],
    ids=["propensity over 1", "propensity 0", "propensity not a number", "no assignment",
         "a conversion without its id"],
)  # fmt: skip
def test_a_line_no_estimate_can_use_is_one_line_naming_the_file_and_line(
    tmp_path, capsys, second, reason
):
    # Each was a traceback (KeyError, ValueError), or for a propensity out of range
    # "event 3 has propensity 1.5", an index into the joined log, no file or line.
    data = two_files(tmp_path, first=[*FIRST[:1], second])

    code, _out, err = run(capsys, "--data-dir", str(data), "--out", str(tmp_path / "out"))

    assert (code, err) == (
        2,
        f"abtest: evaluate: events-20260101T000000.000000Z-aaa.jsonl line 2: {reason}\n",
    )
    assert not (tmp_path / "out").exists()


def test_a_file_where_an_event_log_folder_goes_is_named(tmp_path, capsys):
    # It was "abtest: [Errno 17] File exists: '.../events/sealed'", exit 1.
    data = two_files(tmp_path)
    sealed = data / "events" / "sealed"
    for path in sealed.iterdir():
        path.unlink()
    sealed.rmdir()
    sealed.write_text("")

    code, _out, err = run(capsys, "--data-dir", str(data))

    assert (code, err) == (
        2,
        f"abtest: config error: {sealed}: cannot make the event log's folder: {sealed} is a "
        "file, not a folder\n",
    )


def test_a_data_dir_without_an_event_log_says_so(tmp_path, capsys):
    code, _out, err = run(capsys, "--data-dir", str(tmp_path / "missing"))
    assert (code, err) == (2, f"abtest: evaluate: no event log at {tmp_path}/missing/events\n")


def test_a_late_conversion_credits_nothing_and_newer_fields_are_accepted(tmp_path, capsys):
    # Conversions may carry the assignment's assigned_at and propensity, and a late flag
    # (after the attribution window): a late one is counted as such, never as a reward.
    second = [
        {**conversion("u4", "i5", "b", t=8), "assigned_at": T0 + 6, "propensity": 0.25,
         "late": True},
        {**conversion("u3", "random-id", "a", t=8), "late": False},
        *SECOND[2:3],
    ]  # fmt: skip
    data = two_files(tmp_path, second=[*SECOND[:2], *second])
    code, out, err = run(capsys, "--data-dir", str(data), "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert "4 conversions (2 by inference_id, 1 by user, 0 unattributed, 1 late)" in out
    report = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    ips = {(e["policy"], e["estimator"]): e["value"] for e in report["estimates"]}
    assert report["late"] == 1
    assert ips["b", "IPS"] == pytest.approx(4 / 4)  # u2 converted, u4's late one did not count


def with_context(event, **context):
    return {**event, "context": context}


def test_by_a_context_key_reports_each_segment(tmp_path, capsys):
    first = [
        with_context(invocation(f"m{i}", f"m{i}", "ab"[i % 2], 0.5, t=i), device="mobile", age=i)
        for i in range(40)
    ] + [
        with_context(invocation(f"d{i}", f"d{i}", "ab"[i % 2], 0.5, t=i), device="desktop")
        for i in range(40)
    ]
    # Booleans are segments named as sent, apart from the number 1.
    first += [
        with_context(invocation(f"b{i}", f"b{i}", "ab"[i % 2], 0.5, t=i), device=flag)
        for i, flag in enumerate([True, 1] * 4)
    ]
    first.append(first[0])  # a redelivered line
    # Mobile users convert on a, desktop users on b.
    second = [conversion(f"m{i}", f"m{i}", "a", t=50) for i in range(0, 40, 2)] + [
        conversion(f"d{i}", f"d{i}", "b", t=50) for i in range(1, 40, 2)
    ]
    data = two_files(tmp_path, first=first, second=second)
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "--data-dir", str(data), "--out", str(out_dir), "--by", "device")
    assert code == 0, err
    assert "segment desktop" in out and "segment mobile" in out and "segment true" in out
    report = json.loads((out_dir / "evaluation.json").read_text())
    value = {(e["segment"], e["policy"], e["estimator"]): e for e in report["estimates"]}
    for estimator in ("DM", "IPS", "SNIPS", "DR"):
        assert value["mobile", "a", estimator]["value"] == pytest.approx(1.0, abs=1e-3)
        assert value["mobile", "b", estimator]["value"] == pytest.approx(0.0, abs=1e-3)
        assert value["desktop", "b", estimator]["value"] == pytest.approx(1.0, abs=1e-3)
    assert value["mobile", "a", "IPS"]["events"] == 40
    with (out_dir / "evaluation.csv").open() as file:
        assert {r["segment"] for r in csv.DictReader(file)} == {"mobile", "desktop", "true", "1"}
    assert report["assignments"] == 88  # the redelivered line is the same assignment


@pytest.mark.parametrize(
    ("key", "message"),
    [("nope", "--by nope: no assignment in the log carries context.nope"),
     ("age", "--by age: context.age has more than 20 values")],
)  # fmt: skip
def test_by_a_key_that_cannot_segment_is_one_line(tmp_path, capsys, key, message):
    first = [with_context(invocation(f"u{i}", f"i{i}", "a", 0.5, t=i), age=i) for i in range(30)]
    data = two_files(tmp_path, first=first, second=[invocation("v", "v", "b", 0.5)])
    code, _out, err = run(capsys, "--data-dir", str(data), "--by", key)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def big_log(folder, assignments: int) -> None:
    """`assignments` users in files of 2,000 lines; one in eight converts."""
    body, files = [], 0
    for u in range(assignments):
        body.append(encode(invocation(f"u{u}", f"i{u}", "ab"[u % 2], 0.5, t=u)))
        if u % 8 == 0:
            body.append(encode(conversion(f"u{u}", f"i{u}", "ab"[u % 2], t=u + 1)))
        if len(body) >= 2000 or u == assignments - 1:
            (folder / f"events-{files:04d}.jsonl").write_bytes(b"".join(body))
            body, files = [], files + 1


@pytest.mark.slow
def test_memory_does_not_grow_with_the_log(tmp_path, monkeypatch):
    # Small blocks, batches and chunks, so that what is held per event would show: the
    # former reader held ~185 bytes per assignment, 1.1 MB more for the bigger log.
    import tracemalloc

    from abtest.adapters.eventlog import LocalEventLog
    from abtest.usecases import evaluate

    monkeypatch.setattr("abtest.adapters.eventlog.READ_BYTES", 16_384)
    monkeypatch.setattr("abtest.usecases.evaluate._BATCH", 200)
    monkeypatch.setattr("abtest.usecases.evaluate.CHUNK_EVENTS", 500)
    peaks = []
    for assignments in (2000, 8000):
        folder = tmp_path / str(assignments) / "applied"
        folder.mkdir(parents=True)
        big_log(folder, assignments)
        archive = LocalEventLog(folder.parent)
        tracemalloc.start()
        found = evaluate.read_endpoint_log(archive, archive.sealed_keys(), "reviews")
        report = evaluate.estimate_policies(found.log, evaluate.target_policies(("a", "b")))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        found.close()
        assert len(found.log) == assignments and len(report) == 12
        assert report[1].estimate.value == pytest.approx(0.125 * 2, rel=0.2)  # a's IPS
    assert peaks[1] - peaks[0] < 150_000, peaks


def test_the_readme_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    """README, "abtest evaluate": the example from Python, run where abtest-data holds a log
    of the demo's endpoint and variants."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    demo = {"a": "Champion1", "b": "Challenger1", "reviews": "reviews-helpfulness"}

    def renamed(event):
        return {
            k: demo.get(v, v) if k in ("endpoint_name", "variant_name") else v
            for k, v in event.items()
        }

    two_files(tmp_path, [renamed(e) for e in FIRST], [renamed(e) for e in SECOND])
    (tmp_path / "data").rename(tmp_path / "abtest-data")
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(example, "README.md", "exec"), names)
    printed = capsys.readouterr().out.splitlines()
    assert [re.search(r"estimator='(\w+)'", line)[1] for line in printed] == [
        "DM",
        "IPS",
        "SNIPS",
        "DR",
    ]
    # An even split is the uniform policy: IPS (1 + 2 + 1 + 0) / 4, as check_report finds.
    assert float(re.search(r"value=([-\d.e]+)", printed[1])[1]) == pytest.approx(1.0)
    assert not Path(names["found"].folder.name).exists()  # close() deleted the SQLite file


def test_a_segment_of_one_assignment_is_named_as_left_out(tmp_path, capsys, caplog):
    # GIVEN forty users on mobile and a single one on a tablet
    first = [
        with_context(invocation(f"m{i}", f"m{i}", "ab"[i % 2], 0.5, t=i), device="mobile")
        for i in range(40)
    ] + [with_context(invocation("t0", "t0", "a", 0.5, t=41), device="tablet")]
    data = two_files(tmp_path, first=first, second=[conversion("m0", "m0", "a", t=50)])

    # WHEN the log is evaluated by device
    with caplog.at_level("WARNING", logger="abtest"):
        code, out, err = run(
            capsys, "--data-dir", str(data), "--out", str(tmp_path / "o"), "--by", "device"
        )

    # THEN mobile is estimated, and the tablet segment is said to be left out, not dropped
    assert code == 0, err
    assert "segment mobile" in out and "segment tablet" not in out
    assert "segment device=tablet: 1 assignment, too few for an estimate; left out" in caplog.text


def test_a_log_of_one_assignment_says_why_there_is_no_estimate(tmp_path, capsys):
    data = two_files(tmp_path, first=[invocation("u", "i", "a", 0.5)], second=[])
    code, out, err = run(capsys, "--data-dir", str(data), "--out", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1, (out, err)
    assert "1 assignment(s) in the log: at least 2 are needed for an estimate" in err
