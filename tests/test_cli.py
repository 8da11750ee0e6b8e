import json
import subprocess
import sys

import pytest
from PIL import Image

from artshield.cli import main


def run_cli(*args):
    """The real entry point in a fresh process: exit code, stdout, stderr."""
    p = subprocess.run([sys.executable, "-m", "artshield.cli", *args], capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def test_generate_writes_pngs_and_results(tmp_path, tiny_model_dir):
    out = tmp_path / "gen"
    code = main(["generate", "--model", str(tiny_model_dir), "--prompt", "folder icon", "--prompt", "star icon",
                 "-n", "2", "--steps", "2", "--seed", "7", "-o", str(out), "-q"])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    assert [im["seed"] for im in res["images"]] == [7, 8, 9, 10]
    assert [im["prompt"] for im in res["images"]] == ["folder icon"] * 2 + ["star icon"] * 2
    for im in res["images"]:
        with Image.open(out / im["file"]) as png:
            assert png.size == (16, 16)
    assert res["model"]["source"] == "folder" and "torch" in res["environment"]


def test_same_seed_same_bytes(tmp_path, tiny_model_dir):
    for name in ("a", "b"):
        assert main(["generate", "--model", str(tiny_model_dir), "--prompt", "x", "-n", "1", "--steps", "2",
                     "-o", str(tmp_path / name), "-q"]) == 0
    assert (tmp_path / "a" / "0000.png").read_bytes() == (tmp_path / "b" / "0000.png").read_bytes()


def test_generate_takes_the_faster_sampler_and_precision_and_records_them(tmp_path, tiny_model_dir):
    runs = {"ddim": [], "dpm": ["--sampler", "dpm-solver++", "--autocast", "bf16"]}
    for name, extra in runs.items():
        assert main(["generate", "--model", str(tiny_model_dir), "--prompt", "x", "-n", "1", "--steps", "3",
                     "-o", str(tmp_path / name), "-q", *extra]) == 0
    res = json.loads((tmp_path / "dpm" / "results.json").read_text())
    assert (res["sampler"], res["autocast"]) == ("dpm-solver++", "bf16")
    assert (tmp_path / "dpm" / "0000.png").read_bytes() != (tmp_path / "ddim" / "0000.png").read_bytes()


def test_hub_id_offline_is_one_line_and_exit_2(tmp_path):
    import os

    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="https://127.0.0.1:9")
    p = subprocess.run([sys.executable, "-m", "artshield.cli", "generate", "--model", "runwayml/sd-v1-5",
                        "--prompt", "x", "-o", str(tmp_path / "o")], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("artshield: error: --model runwayml/sd-v1-5:")
    assert "use mini" in lines[0]


@pytest.mark.parametrize("argv, message", [
    (["bench", "--preset", "nope", "-o", "{tmp}/b"], "unknown (available"),
    (["erase", "--concept", "x", "--method", "nope", "-o", "{tmp}/p"], "unknown; choose one of"),
    (["erase", "--concept", "x", "--model", "{tmp}", "-o", "{tmp}"], "is the model being edited"),
    (["erase", "--concept", "x", "--attack", "tina", "-o", "{tmp}/p"], "choose from concept-inversion, ring-a-bell"),
    (["erase", "-o", "{tmp}/p"], "give the concept to erase"),
    (["erase", "--concepts-file", "{tmp}/missing.txt", "-o", "{tmp}/p"], "missing.txt: cannot read it"),
    (["erase", "--concept", "x", "--method", "advunlearn", "--option", "attack_method=fgsm", "-o", "{tmp}/p"],
     "attack_method must be pgd or fast-at"),
    (["erase", "--concept", "x", "--method", "advunlearn", "--option", "nope=1", "-o", "{tmp}/p"], "unknown option"),
    (["erase", "--concept", "x", "--method", "uce", "--option", "attack_steps", "-o", "{tmp}/p"], "expected key=value"),
    (["erase", "--concept", "x", "--attack", "ring-a-bell", "--attack-option", "unlearndiffatk.k=2", "-o", "{tmp}/p"],
     "expected ATTACK.KEY=VALUE with ATTACK one of ring-a-bell"),
    (["erase", "--concept", "x", "--attack-option", "ring-a-bell.mutation=2", "-o", "{tmp}/p"], "mutation"),
    (["erase", "--concept", "x", "--attack-option", "ring-a-bell.nope=2", "-o", "{tmp}/p"], "unknown option"),
    (["audit", "--method", "nope", "-o", "{tmp}/a"], "choose from extract, detect"),
    (["audit", "--prompts", "{tmp}/missing.txt", "--generations", "4", "--min-clique", "4", "-o", "{tmp}/a"],
     "cannot read it"),
    (["audit", "--generations", "1", "-o", "{tmp}/a"], "generations must be in [2, "),
    (["audit", "--generations", "8", "-o", "{tmp}/a"], "min_clique (10) cannot exceed generations (8)"),
    (["protect", "x.png", "--method", "nope", "-o", "{tmp}/p"], "unknown; choose one of"),
    (["protect", "{tmp}", "-o", "{tmp}/p"], "no input images"),
    (["protect", "x.png", "--budget", "300", "-o", "{tmp}/p"], "must be in (0, 255]"),
    (["generate", "--model", "{tmp}/nope", "--prompt", "x", "-o", "{tmp}/g"], "no such file or folder"),
    (["generate", "--model", "nope", "--prompt", "x", "-o", "{tmp}/g"], "not a hub id"),
    (["generate", "--prompt", "x", "-n", "0", "-o", "{tmp}/g"], "-n 0: must be in [1, "),
])
def test_usage_errors_exit_2_with_one_line(tmp_path, capsys, argv, message):
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]


def test_output_path_that_is_a_file_is_refused(tmp_path, capsys, tiny_model_dir):
    f = tmp_path / "file"
    f.write_text("keep me")
    assert main(["generate", "--model", str(tiny_model_dir), "--prompt", "x", "-o", str(f)]) == 2
    assert f.read_text() == "keep me"


def test_console_script_help_runs():
    code, out, _ = run_cli("--help")
    assert code == 0 and "generate" in out and "bench" in out
