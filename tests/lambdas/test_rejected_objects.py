"""The metrics function on an object of another format: lines kept aside, the alarm's metric."""

from __future__ import annotations

import json

from tests.api_gateway import Context
from tests.lambdas.doubles import s3_event


def test_an_object_mostly_rejected_publishes_the_metric_the_alarm_watches(aws, capsys, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "abtest")  # as the stack sets it
    key = "events/2026/01/01/00/foreign"
    lines = [json.dumps({"event": "click", "user": f"u{n}"}) for n in range(3)]
    aws.s3.put_object(Bucket="abtest-events-test", Key=key, Body="\n".join(lines).encode())
    capsys.readouterr()

    (summary,) = aws.metrics.lambda_handler(s3_event("abtest-events-test", [key]), Context())[
        "objects"
    ]

    assert (summary["applied"], summary["events"], summary["rejected"]) == (True, 0, 3)
    kept = aws.s3.get_object(Bucket="abtest-events-test", Key=f"rejected/{key}.jsonl")
    assert len(kept["Body"].read().splitlines()) == 3
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (metric,) = [d for d in documents if "MostlyRejectedObjects" in d]
    (directive,) = metric["_aws"]["CloudWatchMetrics"]
    # The dimensions infra/monitoring.py's alarm names: the service only.
    assert directive["Dimensions"] == [["service"]] and metric["service"] == "abtest"
    assert metric["MostlyRejectedObjects"] == [1.0]
