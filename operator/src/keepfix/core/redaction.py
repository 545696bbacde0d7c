"""How Secret data appears anywhere keepfix writes or prints: a short hash, never the value.

One function for the operator (Regressions, Events, status), the admission
webhook and `keepfix gate`, so the hash an on-call reads in a denial is the
one in the Regression and in `status.stable`. The value hashed is the value
as the object holds it (for a stored Secret, the base64 text of `data`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

#: The JSON pointers under which a core/v1 Secret holds its values.
SECRET_DATA: Final = ("/data", "/stringData")
#: How many hex digits of the sha256 are shown: enough to tell values apart.
HEX_DIGITS: Final = 12


def redact(value: Any) -> str:
    """`sha256:<first 12 hex>` of a value (a string as it is, anything else as sorted JSON)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:HEX_DIGITS]


def is_secret_data(pointer: str) -> bool:
    """Whether a JSON pointer into a Secret addresses its data (or stringData)."""
    return any(pointer == p or pointer.startswith(p + "/") for p in SECRET_DATA)
