"""Strict JSON out: what ``--json`` prints and what manifests hold.

Always valid JSON (RFC 8259): NaN and infinities become ``null``, numpy scalars and arrays become
numbers and lists, paths become strings. ``json.loads(s, parse_constant=...)`` never sees
``NaN``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any


def jsonable(o: Any) -> Any:
    """``o`` as plain JSON types, NaN/inf as None."""
    if o is None or isinstance(o, (bool, str)):
        return o
    if isinstance(o, int):
        return int(o)
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in o]
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (_dt.date, _dt.datetime)):
        return o.isoformat()
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return jsonable(dataclasses.asdict(o))
    if hasattr(o, "to_dict") and callable(o.to_dict):
        return jsonable(o.to_dict())
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a core dependency
        np = None
    if np is not None:
        if isinstance(o, np.bool_):
            return bool(o)
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return jsonable(float(o))
        if isinstance(o, np.ndarray):
            return jsonable(o.tolist())
    raise TypeError(f"not JSON serialisable: {type(o)!r}")


def dumps(o: Any, **kw: Any) -> str:
    """``json.dumps`` of :func:`jsonable(o)`, refusing NaN (there is none left to refuse)."""
    return json.dumps(jsonable(o), allow_nan=False, ensure_ascii=False, **kw)
