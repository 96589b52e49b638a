"""The package's import direction is detectron2's: the data layer (and config, utils) never
imports modeling, engine or evaluation; modeling may use data; engine uses everything."""

import ast
import glob
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "wsd_distill")
LOWER = {"data": {"modeling", "engine", "evaluation"}, "utils": {"data", "modeling", "engine"}}
LOWER["modeling"] = {"engine", "evaluation"}


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
