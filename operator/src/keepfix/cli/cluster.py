"""`keepfix cluster up|down|env`: a real local control plane in the background.

stdout carries only shell lines (`eval "$(keepfix cluster up)"` works);
progress and errors go to stderr.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from keepfix import localcluster

DEFAULT_DIR = Path(".local/cluster")

_DESCRIPTION = """\
A real Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC on) and
kube-controller-manager, with certificates generated in DIR. No Docker, no
kubelet: objects are stored and validated, controllers run, pods are not
scheduled.

  eval "$(keepfix cluster up)"     start it and point kubectl at it
  eval "$(keepfix cluster env)"    KUBECONFIG and PATH (kubectl, helm) for it
  keepfix cluster down             stop every process `up` started

The binaries come from --bin-dir, KEEPFIX_K8S_BIN, KUBEBUILDER_ASSETS, the
cache `make k8s-bin` fills, then PATH.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "cluster",
        help="start/stop a local control plane (etcd, kube-apiserver, controller-manager)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    up = _add(actions, "up", "start the cluster in the background; print `export KUBECONFIG=...`")
    up.add_argument(
        "--timeout",
        type=float,
        default=180.0,
        metavar="SECONDS",
        help="give up if the control plane is not ready by then (default: %(default)s)",
    )
    up.add_argument(
        "--bin-dir",
        type=Path,
        metavar="BIN",
        help="folder holding etcd, kube-apiserver, kube-controller-manager, kubectl, helm",
    )
    up.set_defaults(func=run_up)
    _add(actions, "down", "stop every process `up` started in DIR (safe to repeat)").set_defaults(
        func=run_down
    )
    _add(actions, "env", "print `export KUBECONFIG=...` and `export PATH=...`").set_defaults(
        func=run_env
    )


def _add(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str
) -> argparse.ArgumentParser:
    p = actions.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")
    p.add_argument(
        "--dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"where the cluster keeps its files (default: $KEEPFIX_CLUSTER_DIR or {DEFAULT_DIR})",
    )
    return p


def cluster_dir(args: argparse.Namespace) -> Path:
    chosen = args.dir or Path(os.environ.get("KEEPFIX_CLUSTER_DIR") or DEFAULT_DIR)
    return Path(chosen).absolute()


def run_up(args: argparse.Namespace) -> int:
    cluster = localcluster.LocalCluster(
        cluster_dir(args), args.bin_dir, die_with_parent=False, progress=_say
    )
    if cluster.is_running():
        _say(f"A cluster is already running in {cluster.dir} at {cluster.server}")
        print(_export("KUBECONFIG", cluster.kubeconfig))
        return 0
    _say(f"Starting a local control plane in {cluster.dir}")
    began = time.monotonic()
    try:
        cluster.start(timeout=args.timeout, reuse=True)
    except (localcluster.MissingBinariesError, localcluster.LocalClusterError, OSError) as e:
        _say(f"Error: {e}")
        return 1
    except KeyboardInterrupt:
        _say("Interrupted; stopped what had been started")
        return 130
    _say(f"Cluster is ready at {cluster.server} after {time.monotonic() - began:.1f}s")
    _say(f"Stop it with: keepfix cluster down --dir {shlex.quote(str(cluster.dir))}")
    print(_export("KUBECONFIG", cluster.kubeconfig))
    return 0


def run_down(args: argparse.Namespace) -> int:
    cluster = localcluster.LocalCluster(cluster_dir(args))
    try:
        stopped = cluster.stop()
    except OSError as e:
        _say(f"Error: {e}")
        return 1
    if stopped:
        _say(f"Stopped {', '.join(stopped)} in {cluster.dir}")
    else:
        _say(f"No cluster process was running in {cluster.dir}")
    return 0


def run_env(args: argparse.Namespace) -> int:
    cluster = localcluster.LocalCluster(cluster_dir(args), die_with_parent=False)
    try:
        dirs = cluster.client_dirs()
    except localcluster.MissingBinariesError as e:
        _say(f"Error: {e}")
        return 1
    if not cluster.is_running():
        _say(f"No cluster is running in {cluster.dir}; start one with `keepfix cluster up`")
    print(_export("KUBECONFIG", cluster.kubeconfig))
    print(f"export PATH={':'.join(shlex.quote(str(d)) for d in dirs)}:$PATH")
    return 0


def _export(name: str, value: Path) -> str:
    return f"export {name}={shlex.quote(str(value))}"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
