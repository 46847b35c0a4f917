"""Smoke test of the benchmark suite: its two cheap sections end to end, at tiny sizes."""

import json

from benchmarks.profiles import SMOKE
from benchmarks.run import run_benchmarks


def test_searcher_and_tracking_sections_write_positive_figures_as_json_and_markdown(tmp_path):
    _, json_path, md_path = run_benchmarks(SMOKE, sections=["searcher", "tracking"], out=tmp_path)

    data = json.loads(json_path.read_text())
    assert data["mode"] == "smoke" and data["wall_s"] > 0
    assert data["machine"]["cpu_count"] >= 1 and data["machine"]["torch"] and data["machine"]["device"]
    assert [(s["number"], s["title"]) for s in data["sections"]] == [
        (5, "Searcher overhead"),
        (6, "Tracking throughput"),
    ]
    for section in data["sections"]:
        assert "error" not in section["details"], section["details"]
        assert section["figures"]
        for figure in section["figures"]:
            assert figure["n"] == len(figure["values"]) > 0
            assert all(value > 0 for value in figure["values"])
            assert figure["min"] <= figure["median"] <= figure["max"]
            assert (figure["met"] is None) == (figure["goal"] is None)

    searcher = data["sections"][0]["details"]["sqlite"]
    # the timed suggestions came after the prior trials, each one a new trial in the study
    assert searcher["trials_in_study_at_end"] == SMOKE.searcher_prior_trials + SMOKE.searcher_timed + 1
    tracking = data["sections"][1]["details"]
    assert [r["results"] for r in tracking["batched"]] == [SMOKE.tracking_trials * SMOKE.tracking_epochs]

    table = md_path.read_text()
    rows = [line for line in table.splitlines() if line.startswith("| 5 ") or line.startswith("| 6 ")]
    assert len(rows) == sum(len(s["figures"]) for s in data["sections"])
    assert any("time per suggestion" in row and "< 50" in row for row in rows)
