"""Reading the text files users send each other as plain data: YAML that is no alias bomb (a
few lines whose aliases expand to billions of nodes wherever it is walked) and builds no Python
object, and text that is not UTF-8 refused naming the file."""

import contextlib

import yaml


@contextlib.contextmanager
def named_text_errors(path):
    """A UnicodeDecodeError (a UTF-16 or binary file read as text) raised inside, as a
    ValueError naming ``path`` and what to do."""
    try:
        yield
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: not UTF-8 text ({e.reason} at byte {e.start}): save it as UTF-8"
        ) from None


# Nodes a YAML document may expand to, its aliases followed: a run's config.yaml has about a
# thousand (detectron2's dump writes an alias for a value used twice); an alias bomb, billions
MAX_YAML_NODES = 1_000_000


def check_yaml_size(text, path):
    """Refuse YAML ``text`` (of the file ``path``) whose aliases (``*name``) expand it to more
    than ``MAX_YAML_NODES`` nodes: an alias bomb, a few lines that hang whatever walks them.
    Returns the document's node graph (``yaml.compose``: nothing is built from its tags)."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({_first_line(e)})") from None
    sizes, visiting = {}, set()  # nodes each node expands to; the nodes on the path walked
    stack = [(root, False)] if root is not None else []
    while stack:
        node, walked = stack.pop()
        if walked:  # its children have their sizes
            visiting.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[id(node)] > MAX_YAML_NODES:
                raise ValueError(
                    f"{path}: its aliases (*name) expand it to more than {MAX_YAML_NODES} "
                    "nodes (an alias bomb): refused"
                )
        elif id(node) in visiting:
            raise ValueError(f"{path}: a YAML alias (*name) inside itself: refused")
        elif id(node) not in sizes:
            visiting.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in _children(node))
    return root


def load_plain_yaml(path):
    """The YAML file ``path`` as plain data (``yaml.safe_load``, no aliases), UTF-8; its errors
    are ValueErrors naming it."""
    with open(path, "rb") as f, named_text_errors(path):
        text = f.read().decode("utf-8-sig")
    check_yaml_size(text, path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({_first_line(e)})") from None


def _children(node):
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _first_line(error):
    return (str(error).strip().splitlines() or [error.__class__.__name__])[0]
