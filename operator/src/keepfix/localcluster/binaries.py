"""Where the control-plane binaries are.

Each binary is looked up in order in: an explicit folder, `KEEPFIX_K8S_BIN`,
`KUBEBUILDER_ASSETS` (the envtest convention), the cache folder that
`tools/k8s/build.sh` fills (named after the versions pinned in versions.env),
and last `PATH`. PATH comes last on purpose: a distribution's kubectl is often
several releases older than the API server we start.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

#: What `keepfix cluster up` needs to start a control plane.
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager")
#: What a person (and the tests) use against it.
CLIENTS = ("kubectl", "helm")
ALL = CONTROL_PLANE + CLIENTS

_VERSIONS_ENV = "versions.env"


class MissingBinariesError(RuntimeError):
    """Some binaries are nowhere to be found; the message says how to get them."""

    def __init__(self, missing: Sequence[str], searched: Sequence[str]) -> None:
        self.missing = tuple(missing)
        self.searched = tuple(searched)
        where = "\n".join(f"  - {s}" for s in searched) or "  (nowhere)"
        super().__init__(
            f"Missing control-plane binaries: {', '.join(missing)}.\n"
            f"Run `make k8s-bin` (builds them from Go modules into the cache), or set "
            f"KEEPFIX_K8S_BIN to a folder that holds {', '.join(ALL)}.\n"
            f"Searched:\n{where}"
        )


@dataclasses.dataclass(frozen=True)
class Binaries:
    """Resolved absolute paths of the binaries, by name."""

    paths: Mapping[str, Path]

    def __getitem__(self, name: str) -> Path:
        try:
            return self.paths[name]
        except KeyError:
            raise MissingBinariesError([name], []) from None

    def client_dirs(self) -> tuple[Path, ...]:
        """The folders holding kubectl and helm, kubectl's first, without repeats."""
        dirs = [self.paths[n].parent for n in CLIENTS if n in self.paths]
        return tuple(dict.fromkeys(dirs))


def versions_file() -> Path | None:
    """versions.env: beside this module in a wheel, else in the repository checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / _VERSIONS_ENV, here.parents[3] / "tools" / "k8s" / _VERSIONS_ENV):
        if candidate.is_file():
            return candidate
    return None


def read_versions(path: Path | None = None) -> dict[str, str]:
    """The KEY=VALUE pins of versions.env ({} when there is no such file)."""
    path = path or versions_file()
    if path is None:
        return {}
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            pins[key.strip()] = value.strip().strip("\"'")
    return pins


def cache_dir(env: Mapping[str, str], versions: Mapping[str, str]) -> Path | None:
    """The folder tools/k8s/build.sh fills for the pinned versions."""
    try:
        name = (
            f"k8s-{versions['KUBERNETES_VERSION']}_etcd-{versions['ETCD_VERSION']}"
            f"_helm-{versions['HELM_VERSION']}"
        )
    except KeyError:
        return None
    root = env.get("KEEPFIX_CACHE") or str(
        Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "keepfix"
    )
    return Path(root) / "bin" / name


def candidate_dirs(
    explicit: Path | None = None,
    env: Mapping[str, str] | None = None,
    versions: Mapping[str, str] | None = None,
) -> list[tuple[str, Path]]:
    """The folders searched before PATH, each with where it came from."""
    env = os.environ if env is None else env
    versions = read_versions() if versions is None else versions
    found: list[tuple[str, Path]] = []
    if explicit is not None:
        found.append(("bin_dir", explicit))
    for var in ("KEEPFIX_K8S_BIN", "KUBEBUILDER_ASSETS"):
        if env.get(var):
            found.append((var, Path(env[var])))
    cache = cache_dir(env, versions)
    if cache is not None:
        found.append(("cache (tools/k8s/versions.env)", cache))
    return found


def discover(
    explicit: Path | None = None,
    *,
    required: Iterable[str] = CONTROL_PLANE,
    env: Mapping[str, str] | None = None,
    versions: Mapping[str, str] | None = None,
) -> Binaries:
    """Find every binary in ALL; raise MissingBinariesError if a `required` one is missing."""
    env = os.environ if env is None else env
    dirs = candidate_dirs(explicit, env, versions)
    paths: dict[str, Path] = {}
    for name in ALL:
        path = _find(name, [d for _, d in dirs], env.get("PATH", ""))
        if path is not None:
            paths[name] = path
    missing = [n for n in required if n not in paths]
    if missing:
        searched = [f"{label}: {d}" for label, d in dirs] + ["PATH"]
        raise MissingBinariesError(missing, searched)
    return Binaries(paths)


def _find(name: str, dirs: Sequence[Path], path_var: str) -> Path | None:
    for d in dirs:
        candidate = d / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.absolute()
    found = shutil.which(name, path=path_var)
    return Path(found).absolute() if found else None
