"""Command-line entry points."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, tool_in_process

# The demo on the tiny set, a few steps of each model.
TINY_DEMO = [
    *("SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2", "MODEL.WSDDN.MAX_PROPOSALS", "30"),
    *("DATALOADER.NUM_WORKERS", "0"),
]

# Runs tools/distill.py --synthetic twice in one process, the seeds in the other order the
# second time.
TWICE = """
import json, runpy, sys
tool = runpy.run_path(sys.argv[1])
output, rest = sys.argv[2], sys.argv[3:]
for seeds, folder in ((["0", "1"], "first"), (["1", "0"], "second")):
    argv = ["--synthetic", "--output", f"{output}/{folder}", "--seeds", *seeds, *rest]
    parser = tool["get_parser"]()
    tool["main"](tool["check_datasets"](parser, parser.parse_args(argv)))
"""


@pytest.mark.slow  # 34 s on 2 cores: the pipeline of test_own_data.py, on the benchmark
def test_demo_end_to_end_and_the_same_seed_gives_the_same_numbers(datasets_dir, tmp_path):
    """The whole demo on the tiny set, a few iterations per model (the real run is `make demo`),
    twice in one process with the seeds in another order: each seed's results are identical."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            TWICE,
            os.path.join(ROOT, "tools", "distill.py"),
            str(tmp_path),
            "--proposals-dir",
            str(tmp_path / "proposals"),
            "--workers",
            "2",
            *TINY_DEMO,
        ],
        env=dict(os.environ, DETECTRON2_DATASETS=datasets_dir),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "objects <10% area" in out and "GT recall@0.5" in out and "images/s" in out
    assert os.path.exists(
        tmp_path / "proposals" / "synthetic_shapes_test_edge_boxes" / "index.json"
    )
    first, second = tmp_path / "first", tmp_path / "second"
    models = ("teacher", "student", "student_kd_stage1", "student_kd_stage2")
    models += ("student_kd_joint",)
    for seed in (0, 1):
        for model in models:
            assert os.path.exists(first / f"seed{seed}" / model / "model_final.pth"), model
            same = [
                json.loads((run / f"seed{seed}" / model / "results.json").read_text())
                for run in (first, second)
            ]
            assert same[0] == same[1], (seed, model)
    assert json.loads((first / "seed0" / "student_kd_stage1" / "results.json").read_text()) == {}
    assert len(os.listdir(first / "seed0" / "teacher" / "pictures")) == 20
    assert (first / "kd_gain_per_class.png").read_bytes()[:4] == b"\x89PNG"

    # the per-seed table holds the models' own numbers, the gain their difference, CorLoc the
    # teacher's alone
    table = (first / "results.md").read_text()
    assert table in out
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines()]
    per_seed = {(row[0], row[1]): row[2:] for row in cells if len(row) == 8}
    for seed in (0, 1):
        results = {}
        for model in models:
            results[model] = json.loads(
                (first / f"seed{seed}" / model / "results.json").read_text()
            )
        mAP = [
            results[m]["multilabel"]["mAP"]
            for m in ("student", "teacher", "student_kd_stage2", "student_kd_joint")
        ]
        corloc = results["teacher"]["wsod"]["CorLoc"]
        for name, value, last in [
            ("S-Cls w/o KD", f"{mAP[0]:.1f}", "-"),
            ("T-WDet", f"{mAP[1]:.1f}", f"{corloc:.1f}"),
            ("S-Cls w/ KD (two-stage)", f"{mAP[2]:.1f}", "-"),
            ("KD gain (two-stage)", f"{mAP[2] - mAP[0]:+.1f}", "-"),
            ("S-Cls w/ KD (joint)", f"{mAP[3]:.1f}", "-"),
            ("KD gain (joint)", f"{mAP[3] - mAP[0]:+.1f}", "-"),
        ]:
            row = per_seed[(str(seed), name)]
            assert row[0] == value and row[-1] == last, (seed, name, row)
    summary = json.loads((first / "results.json").read_text())
    gains = [summary["per_seed"][str(seed)]["KD gain (two-stage)"]["mAP"] for seed in (0, 1)]
    assert summary["paired_gain"]["two-stage"]["mAP"] == [
        pytest.approx(np.mean(gains)),
        pytest.approx(np.std(gains)),
    ]
    assert json.loads((second / "results.json").read_text())["per_seed"] == summary["per_seed"]


@pytest.mark.slow  # 15 s on 2 cores: the tool's report is tested in test_faults.py too
def test_check_dataset_lists_bad_images(datasets_dir, tmp_path, capsys):
    status, _ = tool_in_process("check_dataset.py", "--dataset", "tiny_shapes_val", "--workers", 1)
    assert status == 0 and "tiny_shapes_val: 8 images, 0 bad" in capsys.readouterr().out
    root = tmp_path / "datasets"  # a copy of the tiny dataset with one image gone
    subprocess.run(["cp", "-r", datasets_dir, str(root)], check=True)
    os.remove(
        root / "synthetic_shapes" / "val" / sorted(os.listdir(root / "synthetic_shapes" / "val"))[0]
    )
    bad = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "check_dataset.py"), "--dataset"]
        + ["synthetic_shapes_val", "--workers", "1"],
        env=dict(os.environ, DETECTRON2_DATASETS=str(root)),
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "8 images, 1 bad" in bad.stdout
    assert "no image file" in bad.stdout and "000001.jpg" in bad.stdout


@pytest.mark.slow  # 21 s on 2 cores: the tool is the demo's pipeline, tested above
def test_kd_variants_table(datasets_dir, tmp_path):
    """dev/kd_variants.py on the tiny set: each variant's mAP is its student's own, the gain
    the difference with the plain student of the same seed."""
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "dev", "kd_variants.py"), "--output", str(tmp_path)]
        + ["--proposals-dir", str(tmp_path / "proposals"), "--seeds", "0"]
        + ["--variants", "joint", "two stages, top-16 RoIs", "--workers", "2", *TINY_DEMO],
        env=dict(os.environ, DETECTRON2_DATASETS=datasets_dir),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    table = (tmp_path / "kd_variants.md").read_text()
    assert table in out
    rows = {
        r[0]: r[1:]
        for r in ([c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines())
        if len(r) == 5
    }
    mAP = {}
    for name, folder in [
        ("S-Cls w/o KD", "student"),
        ("joint", "student_kd_joint"),
        ("two stages, top-16 RoIs", "kd_top16_stage2"),
    ]:
        mAP[name] = json.loads((tmp_path / "seed0" / folder / "results.json").read_text())[
            "multilabel"
        ]["mAP"]
        assert rows[name][0] == f"{mAP[name]:.1f}", name
    assert rows["joint"][2].startswith(f"{mAP['joint'] - mAP['S-Cls w/o KD']:+.1f}")


def test_distill_names_its_datasets_or_the_synthetic_benchmark():
    """Either --train and --test, or --synthetic (which brings its own splits), refused in one
    line before anything runs."""
    for argv, expected in [
        ([], "name the datasets (--train and --test, --val advised) or give --synthetic"),
        (["--train", "a"], "name the datasets"),
        (
            ["--synthetic", "--test", "b"],
            "--synthetic uses the benchmark's splits: leave out --test",
        ),
    ]:
        status, stderr = tool_in_process("distill.py", *argv)
        assert status == 2 and expected in stderr, (argv, stderr[-500:])


def test_every_tool_imports_wsd_distill_before_torch():
    """Each tool imports wsd_distill before anything that loads torch: that import sets
    libgomp's spin count, read once when torch loads (test below)."""
    tools = [f for f in os.listdir(os.path.join(ROOT, "tools")) if f.endswith(".py")]
    for tool in set(tools) - {"install_detectron2.py"}:  # (run before the package exists)
        with open(os.path.join(ROOT, "tools", tool)) as f:
            imports = [line for line in f if line.startswith(("import ", "from "))]
        assert imports[0].startswith("import wsd_distill "), tool


@pytest.mark.slow  # 10 s on 2 cores: two imports of the package in processes of their own
def test_import_sets_the_openmp_spin_count_unless_the_user_chose():
    """``import wsd_distill`` sets libgomp's spin count unless the user chose a wait policy or
    a spin count: on a busy machine torch's default spinning makes a step 7-21 times slower."""
    show = "import wsd_distill, os; print(os.environ.get('GOMP_SPINCOUNT'))"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    for chosen, expected in [({}, "1000"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "None")]:
        out = subprocess.run(
            [sys.executable, "-c", show], env={**env, **chosen}, capture_output=True, text=True
        )
        assert out.stdout.split() == [expected], out.stderr[-2000:]
