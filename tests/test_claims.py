"""The claims table: each published claim read off a run's rows with the run's own intervals."""
from artshield.bench import claims, tables


def _row(protection, mimicry, none, artist="gartoon", budget=16.0, **purified):
    relative = {"none": None if none is None else {"mean": None if None in none else sum(none) / 2, "low": none[0],
                                                   "high": none[1]}}
    relative.update({k: {"mean": sum(v) / 2, "low": v[0], "high": v[1]} for k, v in purified.items()})
    return {"artist": artist, "mimicry": mimicry, "protection": protection, "budget": budget, "relative": relative}


def _verdicts(summary):
    return {c["claim"]: c for c in claims.evaluate({"summary": summary, "analysis": {"bar": 0.5}})}


def test_a_protection_claim_is_supported_only_when_shown_below_the_bar_and_refuted_only_when_shown_above():
    got = _verdicts([_row("aspl", "dreambooth", (0.1, 0.45)), _row("aspl", "dreambooth", (0.2, 0.5), artist="moka")])
    assert got["aspl-dreambooth"]["verdict"] == "supported"
    got = _verdicts([_row("aspl", "dreambooth", (0.55, 0.9)), _row("aspl", "dreambooth", (0.3, 0.9), artist="moka")])
    assert [r["reading"] for r in got["aspl-dreambooth"]["rows"]] == ["not supported", "inconclusive"]
    assert got["aspl-dreambooth"]["verdict"] == "mixed"
    # another budget or mimic is not this claim's cell
    got = _verdicts([_row("aspl", "dreambooth", (0.1, 0.2), budget=8.0), _row("aspl", "lora", (0.1, 0.2))])
    assert got["aspl-dreambooth"]["verdict"] == "not measured" and got["aspl-dreambooth"]["rows"] == []
    # an unbounded end (stored as None: the Holm level of a large family at few seeds) reaches past the bar
    got = _verdicts([_row("aspl", "dreambooth", (0.6, None)), _row("aspl", "dreambooth", (None, 0.4), artist="moka"),
                     _row("aspl", "dreambooth", (None, None), artist="sugar")])
    assert [r["reading"] for r in got["aspl-dreambooth"]["rows"]] == ["not supported", "supported", "inconclusive"]


def test_a_claim_that_a_protection_fails_reads_the_other_way_and_names_the_mimics_not_run():
    got = _verdicts([_row("glaze", "hypernetwork", (0.6, 1.2)), _row("advdm", "lora", (0.7, 1.1))])
    assert got["glaze-hypernetwork"]["verdict"] == "supported"
    assert got["advdm-mist"]["verdict"] == "not supported" and got["advdm-mist"]["not_measured"] == ["textual-inversion"]
    assert _verdicts([_row("glaze", "hypernetwork", (0.1, 0.4))])["glaze-hypernetwork"]["verdict"] == "not supported"


def test_a_purifier_can_only_strip_a_protection_that_holds():
    held_then_broken = _row("glaze", "lora", (0.1, 0.4), bilateral=(0.6, 1.0))
    held_still = _row("glaze", "dreambooth", (0.1, 0.4), bilateral=(0.1, 0.3))
    nothing_to_strip = _row("glaze", "hypernetwork", (0.7, 1.0), bilateral=(0.8, 1.0))
    got = _verdicts([held_then_broken])["bilateral-glaze"]
    assert got["verdict"] == "supported" and got["rows"][0]["interval"]["low"] == 0.6
    assert _verdicts([held_still])["bilateral-glaze"]["verdict"] == "not supported"
    assert _verdicts([nothing_to_strip])["bilateral-glaze"]["verdict"] == "not tested"
    assert _verdicts([held_then_broken, nothing_to_strip])["bilateral-glaze"]["verdict"] == "supported"
    table = tables.claims({"summary": [held_then_broken, nothing_to_strip], "analysis": {"bar": 0.5}})
    assert "glaze@16 + bilateral" in table and "not tested: does not protect unpurified" in table


def test_a_run_of_several_artists_and_mimics_gets_their_columns_in_well_formed_tables():
    import json
    from pathlib import Path

    results = json.loads((Path(__file__).parents[1] / "docs/results/bench-standard/results.json").read_text())
    single = tables.verdicts(results)
    assert single.splitlines()[0].startswith("| protection")
    moka = [dict(r, artist="moka", mimicry="dreambooth") for r in results["summary"]]
    results = {**results, "summary": results["summary"] + moka,
               "controls": results["controls"] + [dict(c, artist="moka", mimicry="dreambooth") for c in results["controls"]]}
    for text in (tables.verdicts(results), tables.controls(results)):
        lines = text.strip().splitlines()
        assert lines[0].startswith("| artist | mimic |") and len({line.count("|") for line in lines}) == 1
        assert any(line.startswith("| moka | dreambooth |") for line in lines)
        assert any(line.startswith("| gartoon | lora |") for line in lines)


def test_the_purified_table_gives_each_row_once_per_purifier_it_was_run_through_unpurified_first():
    import json
    from pathlib import Path

    results = json.loads((Path(__file__).parents[1] / "docs/results/bench-standard/results.json").read_text())
    robust = next(r for r in results["summary"] if r["protection"] == "robust" and r["budget"] == 16)
    lines = tables.purified(results).strip().splitlines()
    assert len({line.count("|") for line in lines}) == 1
    assert len(lines) == 2 + sum(len(r["relative"]) for r in results["summary"])
    mine = [line for line in lines if "| robust 16/255 |" in line]
    assert [line.split("|")[4].strip() for line in mine] == ["none"] + sorted(p for p in robust["relative"] if p != "none")
    for line in mine:
        purifier = line.split("|")[4].strip()
        assert f"{robust['relative'][purifier]['mean']:.2f} [" in line.split("|")[5]
