"""Smoke test of the benchmark suite: its three cheap sections end to end, at tiny sizes."""

import json
import math

import pytest

from benchmarks.profiles import SMOKE
from benchmarks.run import run_benchmarks


def test_search_searcher_and_tracking_sections_write_positive_figures_as_json_and_markdown(tmp_path):
    _, json_path, md_path = run_benchmarks(SMOKE, sections=["search", "searcher", "tracking"], out=tmp_path)

    data = json.loads(json_path.read_text())
    assert data["mode"] == "smoke" and data["wall_s"] > 0
    assert data["machine"]["cpu_count"] >= 1 and data["machine"]["torch"] and data["machine"]["device"]
    assert [(s["number"], s["title"]) for s in data["sections"]] == [
        (2, "Search efficiency"),
        (5, "Searcher overhead"),
        (6, "Tracking throughput"),
    ]
    for section in data["sections"]:
        assert "error" not in section["details"], section["details"]
        assert section["figures"]
        for figure in section["figures"]:
            assert figure["n"] == len(figure["values"]) > 0
            assert all(math.isfinite(value) for value in figure["values"])
            # compute, times and ratios are positive; over-budget epochs (goal 0), shares and differences need not be
            if "over-budget" not in figure["name"] and figure["unit"] in ("x", "ms", "/s", "epochs"):
                assert all(value > 0 for value in figure["values"]), figure["name"]
            assert figure["min"] <= figure["median"] <= figure["max"]
            assert (figure["met"] is None) == (figure["goal"] is None)

    search = data["sections"][0]["details"]
    assert len(search["ours"]) == len(search["stock"]) == SMOKE.search_seeds  # paired seed by seed
    assert len(search["random"]) == SMOKE.search_random_seeds
    # every trial ran an epoch, but the one beside the trial that reached the target may not have yet
    assert all(o["trial_epochs"] >= o["trials"] - 1 for o in search["ours"])
    # budgets: no trial over a parameter or MAC budget ran an epoch; the unconstrained search spent some there
    for label, runs in search["budgets"]["budgets"].items():
        assert len(runs["ours"]) == len(runs["unconstrained"]) == SMOKE.search_seeds
        assert all(r["over_budget_epochs"] == 0 for r in runs["ours"]), label
        assert sum(r["over_budget_epochs"] for r in runs["unconstrained"]) > 0, label
    objectives = search["objectives"]
    assert 0 < objectives["target"] <= 1 and all(len(objectives[m]) == SMOKE.search_seeds for m in ("ours", "random"))
    assert all(0 <= hv <= 1 + 1e-9 for curve in objectives["ours"] for _, hv in curve)
    assert len(search["phases"]["plain"]) == len(search["phases"]["phase_aware"]) == SMOKE.search_seeds
    # in every storage, the timed suggestions came after the prior trials, each one a new trial in the study
    for storage in ("journal", "sqlite", "memory"):
        searcher = data["sections"][1]["details"][storage]
        assert searcher["trials_in_study_at_end"] == SMOKE.searcher_prior_trials + SMOKE.searcher_timed + 1
    tracking = data["sections"][2]["details"]
    assert [r["results"] for r in tracking["batched"]] == [SMOKE.tracking_trials * SMOKE.tracking_epochs]

    table = md_path.read_text()
    rows = [line for line in table.splitlines() if line.startswith(("| 2 ", "| 5 ", "| 6 "))]
    assert len(rows) == sum(len(s["figures"]) for s in data["sections"])
    assert any("time per suggestion" in row and "< 50" in row for row in rows)


def test_hypervolume_is_the_area_the_front_dominates_up_to_the_reference_point():
    import pytest

    from benchmarks.replay_objectives import REFERENCE, hypervolume

    assert hypervolume([(0.0, 0.0)]) == pytest.approx(REFERENCE**2)
    assert hypervolume([(0.0, 1.0), (1.0, 0.0)]) == pytest.approx(0.21)
    assert hypervolume([(0.0, 1.0), (1.0, 0.0), (1.0, 1.0)]) == pytest.approx(0.21)  # a dominated point adds nothing
    assert hypervolume([(2.0, 0.0)]) == 0.0 and hypervolume([]) == 0.0  # beyond the reference point


@pytest.mark.integration  # a process of its own starting Ray and the whole driver: about 20 s
def test_the_many_trials_section_runs_the_whole_driver_and_its_record_holds(tmp_path):
    _, json_path, md_path = run_benchmarks(SMOKE, sections=["scale"], out=tmp_path)

    (section,) = json.loads(json_path.read_text())["sections"]
    assert (section["number"], section["title"]) == (7, "Many short trials")
    details = section["details"]
    assert "error" not in details, details
    assert details["audit_problems"] == [] and details["commands"]["check_problems"] == []
    assert sum(details["outcomes"].values()) == SMOKE.scale_trials
    assert len(details["suggestions"]) == SMOKE.scale_trials  # each trial's suggestion was timed
    assert {"recording", "audit"} <= set(details["timings"]) and details["commands"]["report"] > 0
    figures = {f["name"].split(",")[0].split(" at trial")[0]: f for f in section["figures"]}
    assert figures["wall / ideal (training time summed over the slots)"]["median"] > 1  # trials sleep that long
    assert figures["driver memory"]["median"] > 0 and figures["driver memory"]["goal"] == "<= 1.2"
    assert all(f["n"] == len(f["values"]) > 0 and f["min"] <= f["median"] <= f["max"] for f in figures.values())
    assert sum(line.startswith("| 7 ") for line in md_path.read_text().splitlines()) == len(section["figures"])


def test_the_images_section_feeds_the_same_folder_both_ways_and_compares_per_core(tmp_path):
    _, json_path, _ = run_benchmarks(SMOKE, sections=["images"], out=tmp_path)

    (section,) = json.loads(json_path.read_text())["sections"]
    assert (section["number"], section["title"]) == (8, "Images decoded once")
    details = section["details"]
    assert "error" not in details, details
    assert details["images"] == SMOKE.images_count and details["kept_mib"] > 0 and details["decode_s"] > 0
    for rates in (details["images_per_cpu_s"], details["images_per_wall_s"]):
        assert all(len(v) == SMOKE.images_rounds and min(v) > 0 for v in rates.values())
    goals = {f["name"].split(":")[0]: f["goal"] for f in section["figures"]}
    assert goals["a trial's epoch (training + validation)"] == ">= 3"


def test_the_checkpoints_section_writes_less_than_the_full_state_every_epoch(tmp_path):
    _, json_path, _ = run_benchmarks(SMOKE, sections=["checkpoints"], out=tmp_path)

    (section,) = json.loads(json_path.read_text())["sections"]
    assert (section["number"], section["title"]) == (9, "Checkpoints")
    assert "error" not in section["details"], section["details"]
    for label, backbones in (("demo backbones", SMOKE.checkpoint_demo), ("test_convnext", SMOKE.checkpoint_large)):
        for backbone in backbones:
            runs = section["details"][label][backbone]
            assert set(runs) == {"frozen", "full", "gradual", "lp_ft"}
            assert all(len(epochs) == 10 and all(e["old_bytes"] > 0 for e in epochs) for epochs in runs.values())
    ratios = [f["median"] for f in section["figures"]]
    assert len(ratios) == 8 and all(0 < r < 1 for r in ratios)
