"""The operator process: `python -m keepfix.handlers` (what `keepfix run` execs).

Reads `OperatorSettings` from the `KEEPFIX_*` environment, configures logging
(text or JSON lines), imports the handler modules (which register with Kopf)
and runs Kopf with the chosen namespaces and peering. Start-up and shutdown of
the shared parts (client, watches, metrics server) are Kopf startup/cleanup
handlers in `keepfix.handlers.operator`.
"""

from __future__ import annotations

import sys

import pydantic

from keepfix.api import settings as settings_


def main() -> int:
    try:
        settings = settings_.OperatorSettings.from_env()
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            print(f"keepfix operator: {settings_.env_name(field)}: {error['msg']}", file=sys.stderr)
        return 2
    from keepfix.handlers import operator

    operator.run(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
