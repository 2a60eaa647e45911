"""Arguments back from their canonical text, for a dependency that must be rebuilt in a
process that never called it (validating a stored object whose dependency changed).

Only what the text says exactly comes back: literals, containers, paths, and enums,
dataclasses and namedtuples of modules this process has already imported (nothing is
imported on the text's word). Anything else (numpy arrays, ``__trove_key__`` objects,
shortened text) is unknown, and the object that depends on it is rebuilt instead.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import math
import pathlib
import sys
from typing import Any, Dict, Optional, Tuple


class _Unknown(Exception):
    pass


def call_from_text(text: str, func: Any, ignored: frozenset) -> Optional[Tuple[tuple, dict]]:
    """``(args, kwargs)`` that make ``text`` again for ``func``, or ``None``."""
    if ignored or "chars, blake3 " in text:
        return None
    try:
        tree = ast.parse("f" + text, mode="eval")
        call = tree.body
        if not isinstance(call, ast.Call) or call.args:
            return None
        values = {kw.arg: _value(kw.value) for kw in call.keywords}
    except (SyntaxError, _Unknown, ValueError, TypeError, AttributeError):
        return None
    args: list = []
    kwargs: Dict[str, Any] = {}
    for p in inspect.signature(func).parameters.values():
        if p.name not in values:
            return None
        v = values[p.name]
        if p.kind is p.VAR_POSITIONAL:
            args.extend(v)
        elif p.kind is p.VAR_KEYWORD:
            kwargs.update(v)
        elif p.kind is p.POSITIONAL_ONLY:
            args.append(v)
        else:
            kwargs[p.name] = v
    return tuple(args), kwargs


def _resolve(dotted: str) -> Any:
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:i]))
        if module is None:
            continue
        obj: Any = module
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise _Unknown(dotted)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return _dotted(node.value) + "." + node.attr
    raise _Unknown(ast.dump(node))


def _value(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand)
    if isinstance(node, ast.Tuple):
        return tuple(_value(e) for e in node.elts)
    if isinstance(node, ast.List):
        return [_value(e) for e in node.elts]
    if isinstance(node, ast.Set):
        return {_value(e) for e in node.elts}
    if isinstance(node, ast.Dict):
        return {_value(k): _value(v) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
    if isinstance(node, ast.Name) and node.id in ("nan", "inf"):
        return math.nan if node.id == "nan" else math.inf
    if isinstance(node, ast.Call):
        name = _dotted(node.func)
        if name in ("set", "frozenset", "Path", "bytearray") and len(node.args) == 1 and not node.keywords:
            inner = _value(node.args[0])
            return {"set": set, "frozenset": frozenset, "Path": pathlib.Path, "bytearray": bytearray}[name](inner)
        cls = _resolve(name)
        if node.args or not (dataclasses.is_dataclass(cls) or hasattr(cls, "_fields")):
            raise _Unknown(name)
        return cls(**{kw.arg: _value(kw.value) for kw in node.keywords})
    if isinstance(node, ast.Attribute):
        member = _resolve(_dotted(node))
        if isinstance(member, enum.Enum):
            return member
    raise _Unknown(ast.dump(node))
