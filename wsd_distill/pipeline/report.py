"""The pipeline's report: the paper's Table 3 per seed, mean ± std over seeds, the paired KD
gains, their bootstrap intervals and the models near chance, as Markdown."""

import numpy as np
from tabulate import tabulate

PLAIN, TEACHER, CHOSEN = "S-Cls w/o KD", "T-WDet", "S-Cls chosen on val"
METRICS = ("mAP", "CF1", "OF1", "CF1_top3", "OF1_top3", "CorLoc")
HEADERS = ["mAP", "CF1", "OF1", "CF1 top-3", "OF1 top-3", "CorLoc"]
READING = (
    "CF1 and OF1 count the labels scored 0.5 or more (top-3: of the 3 best): the teacher's "
    "image scores, sums over regions of products of two softmaxes, seldom reach 0.5, so its F1 "
    "can be near 0 while its mAP (the ranking) is high. CorLoc: for each class, the share of "
    "its test images where the teacher's best box for it overlaps one of its boxes by IoU 0.5 "
    "or more, averaged over the classes."
)


def kd_row(variant):
    return f"S-Cls w/ KD ({variant})"


def gain_row(variant):
    return f"KD gain ({variant})"


def metrics(results):
    """{metric: value} of one model's test results (CorLoc for a teacher tested on boxes)."""
    values = {k: results["multilabel"][k] for k in METRICS[:-1]}
    if "wsod" in results:
        values["CorLoc"] = results["wsod"]["CorLoc"]
    return values


def summarize(runs, variants, chosen=None):
    """``runs`` {seed: {model: results}} (models: PLAIN, TEACHER and ``kd_row(v)`` for each
    of ``variants``) and, with a val split, ``chosen`` {seed: (the student chosen on it, {student:
    val mAP})} -> {"per_seed": {seed: {model: metrics, gain_row(v): w/ KD - w/o KD, and CHOSEN:
    the chosen student's metrics}}, "mean": {model: {metric: [mean, std]}}, "paired_gain":
    {variant (or CHOSEN): {metric: [mean, std]}} of the per-seed gains, "chosen_on_val": {seed:
    [student, {student: val mAP}]}}: the numbers of the Table 3s."""
    models = [PLAIN, TEACHER, *(kd_row(v) for v in variants)] + [CHOSEN] * bool(chosen)
    gains = [*variants, CHOSEN] if chosen else list(variants)
    per_seed = {}
    for seed, results in runs.items():
        rows = {name: metrics(results[name]) for name in models if name != CHOSEN}
        if chosen:
            rows[CHOSEN] = rows[chosen[seed][0]]
        without = rows[PLAIN]
        for v in gains:
            model = CHOSEN if v == CHOSEN else kd_row(v)
            rows[gain_row(v)] = {k: rows[model][k] - without[k] for k in without}
        per_seed[seed] = rows

    def mean_std(name):
        values = [per_seed[seed][name] for seed in runs]
        return {
            k: [float(np.mean([v[k] for v in values])), float(np.std([v[k] for v in values]))]
            for k in values[0]
        }

    return {
        "per_seed": per_seed,
        "mean": {name: mean_std(name) for name in models},
        "paired_gain": {v: mean_std(gain_row(v)) for v in gains},
        "chosen_on_val": {seed: list(c) for seed, c in (chosen or {}).items()},
    }


def results_tables(summary, test_set, val_set="", settings=""):
    """The paper's Table 3 per seed (with the KD gain), then, with several seeds, mean ± std
    over them and the paired KD gain (mean ± std of the per-seed differences), the students
    chosen on ``val_set``, and ``settings`` (what made them), as Markdown."""

    def cells(values, fmt):
        return [fmt(values[k]) if k in values else "-" for k in METRICS]

    rows = []
    for seed, models in summary["per_seed"].items():
        for name, values in models.items():
            sign = "+" if name.startswith("KD gain") else ""
            rows.append([seed, name, *cells(values, lambda v: f"{v:{sign}.1f}")])
    per_seed = tabulate(
        rows, headers=["seed", "model", *HEADERS], tablefmt="github", disable_numparse=True
    )
    rows = [
        [name, *cells(values, lambda v: f"{v[0]:.1f} ± {v[1]:.1f}")]
        for name, values in summary["mean"].items()
    ]
    rows += [
        [f"{gain_row(v)}, paired", *cells(values, lambda v: f"{v[0]:+.1f} ± {v[1]:.1f}")]
        for v, values in summary["paired_gain"].items()
    ]
    mean = tabulate(rows, headers=["model", *HEADERS], tablefmt="github", disable_numparse=True)
    seeds = list(summary["per_seed"])
    choices = "".join(
        f"- seed {seed}: {name} ("
        + ", ".join(f"{student} {value:.1f}" for student, value in val_map.items())
        + ")\n"
        for seed, (name, val_map) in summary["chosen_on_val"].items()
    )
    if choices:
        choices = (
            f"\n{CHOSEN}: the student with the best mAP on {val_set} (val mAP of each), the "
            f"one to deploy:\n\n{choices}"
        )
    over_seeds = (  # (one seed: the per-seed table already says it all)
        f"\nMean ± std over seeds {seeds}; KD gain (paired): mean ± std of the per-seed "
        f"differences:\n\n{mean}\n"
        if len(seeds) > 1
        else ""
    )
    return (
        f"Multi-label classification on {test_set}, per seed (only the students' rows cost a "
        f"plain classifier at test time):\n\n{per_seed}\n\n{READING}\n{over_seeds}{choices}"
        f"{interval_table(summary.get('intervals'), test_set)}"
        f"{near_chance_lines(summary.get('near_chance'))}" + (f"\n{settings}\n" if settings else "")
    )


def near_chance_lines(near_chance):
    """``Pipeline.near_chance`` as Markdown ("" when no model is)."""
    if not near_chance or not near_chance["models"]:
        return ""
    models = "; ".join(f"seed {s}: {name} {value:.1f}" for s, name, value in near_chance["models"])
    return (
        f"\n**Near chance** (random scores give {near_chance['chance']:.1f} mAP; these are less "
        f"than a tenth of the way from there to 100, they learnt little: train longer or "
        f"check the labels): {models}\n"
    )


def interval_table(intervals, test_set):
    """The ``Pipeline.test_intervals`` as Markdown ("" without them)."""
    if not intervals:
        return ""
    rows = [
        [seed, name, f"{v[0]:{'+' if name.startswith('KD gain') else ''}.1f}",
         f"[{v[1]:.1f}, {v[2]:.1f}]"]
        for seed, models in intervals["per_seed"].items()
        for name, v in models.items()
    ]  # fmt: skip
    excluded = intervals["excluded"]
    return (
        f"\nmAP on the {intervals['classes']} classes with at least "
        f"{intervals['min_positives']} positive images in {test_set} (excluded, with fewer: "
        f"{', '.join(excluded) if excluded else 'none'}), with its 95% "
        f"interval over 1000 bootstrap resamples of the test images (KD gains: paired, the "
        f"same resamples):\n\n"
        + tabulate(
            rows,
            headers=["seed", "model", "mAP", "95% interval"],
            tablefmt="github",
            disable_numparse=True,
        )
        + "\n"
    )
