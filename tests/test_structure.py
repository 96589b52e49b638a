"""How the package sits on detectron2: its import direction is detectron2's (the data layer
never imports modeling, engine or evaluation; modeling may use data; engine uses those; the
pipeline, an application of them, sits on top and nothing imports it); the KD stage configs
share their set-up."""

import ast
import glob
import os

import pytest
import yaml

from conftest import ROOT

PACKAGE = os.path.join(ROOT, "wsd_distill")
# {layer: the layers above it}: utils < checkpoint < data < modeling < engine < pipeline
ABOVE = ["utils", "checkpoint", "data", "modeling", "engine", "pipeline"]
LOWER = {layer: set(ABOVE[i + 1 :]) for i, layer in enumerate(ABOVE[:-1])}
LOWER["modeling"] |= {"evaluation"}
LOWER["data"] |= {"evaluation"}
LOWER["evaluation"] = {"engine", "pipeline"}
LOWER["box_proposers"] = {"modeling", "engine", "evaluation", "pipeline"}


def imported_subpackages(path):
    """The wsd_distill subpackages a module imports (relative or absolute imports)."""
    module = os.path.relpath(path, PACKAGE).split(os.sep)
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = module[: len(module) - node.level]
                parts = base + (node.module.split(".") if node.module else [])
            elif (node.module or "").startswith("wsd_distill."):
                parts = node.module.split(".")[1:]
            else:
                continue
            found.add(parts[0] if parts else "")
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("wsd_distill.")}
    return found


@pytest.mark.parametrize("layer", sorted(LOWER))
def test_a_layer_never_imports_the_layers_above_it(layer):
    for path in glob.glob(os.path.join(PACKAGE, layer, "**", "*.py"), recursive=True):
        above = imported_subpackages(path) & LOWER[layer]
        assert not above, f"{os.path.relpath(path, PACKAGE)} imports {sorted(above)}"


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_kd_stage_configs_inherit_the_shared_set_up_not_the_joint_stage(stage):
    """Each of the authors' stages builds on Base-*_KD.yaml (teacher, proposals), not on the
    joint config (whose L_f per dimension it would have to undo)."""
    configs = glob.glob(os.path.join(ROOT, "configs", "**", f"*_KD_{stage}.yaml"), recursive=True)
    assert len(configs) >= 9
    for path in configs:
        with open(path) as f:
            base = yaml.safe_load(f)["_BASE_"]
        expected = "Base-" + os.path.basename(path).replace(f"_{stage}", "")
        assert base == expected, f"{os.path.relpath(path, ROOT)} inherits {base}"
