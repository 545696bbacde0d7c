"""A real control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

Everything lives in one folder (DIR):

    kubeconfig                 admin (CN=admin, O=system:masters)
    controller-manager.kubeconfig
    users/USER.kubeconfig      minted by mint_kubeconfig()
    pki/                       serving CA, client CA, service-account keys
    etcd/                      etcd data (fresh on every start)
    NAME.log, NAME.pid         one per process ("pid start-time")
    cluster.json               server URL, ports and binaries of the running cluster

`start()` first stops whatever the pid files in DIR still record (a killed
test run, a `keepfix cluster up` never brought down), then starts afresh.
`stop()` works from the pid files too, so any process can stop a cluster
another one started.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import http.client
import json
import re
import shutil
import socket
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

from keepfix.adapters import pki
from keepfix.localcluster import binaries as discovery
from keepfix.localcluster import kubeconfig, processes

ADMIN_USER = "admin"
ADMIN_GROUPS = ("system:masters",)
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

_ETCD = "etcd"
_APISERVER = "kube-apiserver"
_CONTROLLER_MANAGER = "kube-controller-manager"
_PORT_RETRIES = 3


class LocalClusterError(RuntimeError):
    """The control plane could not be started or reached."""


class ProcessFailedError(LocalClusterError):
    """A process died or did not become ready; the message ends with its log tail."""

    def __init__(self, name: str, problem: str, log: Path, tail: str) -> None:
        self.name = name
        self.log = log
        self.tail = tail
        super().__init__(f"{name} {problem} (log: {log}); last lines:\n{tail}")


class LocalCluster:
    """etcd + kube-apiserver + kube-controller-manager in DIR, on free loopback ports.

    `die_with_parent=True` (the default, for tests) has the kernel kill the
    processes when the Python process that started them dies;
    `keepfix cluster up` passes False so the cluster outlives the command.
    etcd skips fsync unless `durable=True` (a benchmark of write latency
    wants the fsync every production etcd makes).
    The kernel ties them to the *thread* that called start(): call it from the
    main thread (or one that lives as long as the cluster), never from a
    short-lived worker such as `asyncio.to_thread`.
    """

    def __init__(
        self,
        dir: Path,
        bin_dir: Path | None = None,
        *,
        die_with_parent: bool = True,
        stop_grace: float = 10.0,
        poll_interval: float = 0.2,
        progress: Callable[[str], None] | None = None,
        durable: bool = False,
    ) -> None:
        self.dir = Path(dir).absolute()
        self.durable = durable
        self._bin_dir = bin_dir
        self._binaries: discovery.Binaries | None = None
        self.die_with_parent = die_with_parent
        self.stop_grace = stop_grace
        self.poll_interval = poll_interval
        self._procs: list[processes.Process] = []
        self._progress = progress or (lambda _message: None)

    # -- what a user of the cluster needs ---------------------------------

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (CN=admin, O=system:masters)."""
        return self.dir / "kubeconfig"

    @property
    def server(self) -> str:
        """The API server URL of the cluster running in DIR."""
        try:
            return str(self._state()["server"])
        except (OSError, KeyError, ValueError):
            raise LocalClusterError(f"No cluster has been started in {self.dir}") from None

    @property
    def binaries(self) -> discovery.Binaries:
        if self._binaries is None:
            self._binaries = discovery.discover(self._bin_dir)
        return self._binaries

    @property
    def bin_dir(self) -> Path:
        """The folder holding kubectl (and helm, when they sit together)."""
        dirs = self.binaries.client_dirs()
        return dirs[0] if dirs else self.binaries[_APISERVER].parent

    def client_dirs(self) -> tuple[Path, ...]:
        """Folders holding kubectl and helm: the running cluster's, else discovered ones."""
        with contextlib.suppress(OSError, ValueError):
            recorded = self._state().get("bin_dirs")
            if isinstance(recorded, list) and recorded:
                return tuple(Path(str(d)) for d in recorded)
        return discovery.discover(self._bin_dir, required=("kubectl",)).client_dirs()

    def mint_kubeconfig(
        self, user: str, groups: Sequence[str] = (), path: Path | None = None
    ) -> Path:
        """A kubeconfig authenticating as `user` in `groups` with a client certificate.

        A ServiceAccount is user `system:serviceaccount:NS:NAME` in groups
        `system:serviceaccounts` and `system:serviceaccounts:NS`.
        """
        server = self.server
        client_ca = pki.KeyPair.read(self._pki / "client-ca.crt", self._pki / "client-ca.key")
        cert = pki.new_client_cert(client_ca, user, groups, now=_now())
        if path is None:
            path = self.dir / "users" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', user)}.kubeconfig"
        text = kubeconfig.render(
            server=server, ca_pem=(self._pki / "serving-ca.crt").read_bytes(), client=cert
        )
        return kubeconfig.write(path, text)

    # -- lifecycle ----------------------------------------------------------

    def start(self, timeout: float = 120.0, *, reuse: bool = False) -> LocalCluster:
        """Stop leftovers recorded in DIR, then start afresh and wait until ready.

        Does nothing when this object already runs the cluster, so
        `with LocalCluster(d) as c: c.start(timeout=...)` starts once. With
        `reuse`, a healthy cluster that another process started in DIR is kept.
        """
        if self._procs and all(p.exit_code() is None for p in self._procs):
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        bins = self.binaries
        with self._locked():
            # Checked under the lock: two `up`s racing on one DIR start one cluster.
            if reuse and self.is_running():
                return self
            stale = self._stop_recorded()
            if stale:
                self._progress(f"Stopped leftovers recorded in {self.dir}: {', '.join(stale)}")
            for attempt in range(_PORT_RETRIES):
                try:
                    self._start(bins, timeout)
                    return self
                except ProcessFailedError as e:
                    self._stop_recorded()
                    # Free ports are picked before the processes bind them; another
                    # program can take one in between. Only that is worth a retry.
                    if "address already in use" not in e.tail or attempt == _PORT_RETRIES - 1:
                        raise
                except BaseException:
                    self._stop_recorded()
                    raise
        return self

    def stop(self, grace: float | None = None) -> list[str]:
        """Stop every process recorded in DIR (SIGTERM, SIGKILL after `grace`); idempotent.

        Returns the names of the processes that were still running.
        """
        if not self.dir.is_dir():
            return []
        with self._locked():
            return self._stop_recorded(grace)

    def is_running(self) -> bool:
        """Every recorded process is alive and the API server answers /readyz."""
        records = processes.read_pids(self.dir)
        names = {r.name for r in records}
        if not {_ETCD, _APISERVER, _CONTROLLER_MANAGER} <= names:
            return False
        if not all(processes.is_alive(r.pid, r.start_time) for r in records):
            return False
        try:
            return _probe(f"{self.server}/readyz", self._admin_tls())
        except (LocalClusterError, OSError, ssl.SSLError):
            return False

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------

    @property
    def _pki(self) -> Path:
        return self.dir / "pki"

    def _state(self) -> dict[str, object]:
        state: dict[str, object] = json.loads((self.dir / "cluster.json").read_text())
        return state

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.dir / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _stop_recorded(self, grace: float | None = None) -> list[str]:
        grace = self.stop_grace if grace is None else grace
        records = processes.read_pids(self.dir)
        stopped: list[processes.PidRecord] = []
        # Clients first: an API server whose etcd is gone takes its whole grace
        # period to shut down.
        for rank in sorted({_stop_rank(r.name) for r in records}):
            batch = [r for r in records if _stop_rank(r.name) == rank]
            stopped += processes.stop(batch, workdir=self.dir, grace=grace)
        for proc in self._procs:
            if proc.popen is not None:
                proc.popen.wait()
        self._procs = []
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "cluster.json").unlink()
        # Every start begins with empty etcd data; keeping the old (62 MB of
        # preallocated WAL) would only fill the disk.
        shutil.rmtree(self.dir / "etcd", ignore_errors=True)
        return [r.name for r in stopped]

    def _start(self, bins: discovery.Binaries, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        etcd_port, peer_port, api_port, kcm_port = _free_ports(4)
        server = f"https://127.0.0.1:{api_port}"
        self._write_pki(server)
        shutil.rmtree(self.dir / "etcd", ignore_errors=True)
        for name in (_ETCD, _APISERVER, _CONTROLLER_MANAGER):
            (self.dir / f"{name}.log").unlink(missing_ok=True)
        etcd = self._spawn(_ETCD, self._etcd_args(bins, etcd_port, peer_port))
        api = self._spawn(_APISERVER, self._apiserver_args(bins, etcd_port, api_port))
        self._wait(etcd, f"http://127.0.0.1:{etcd_port}/health", None, deadline)
        self._wait(api, f"{server}/readyz", self._admin_tls(), deadline)
        # The controller manager gives up on an API server that is not healthy
        # within seconds, so it starts only once the API server is ready.
        kcm = self._spawn(_CONTROLLER_MANAGER, self._controller_manager_args(bins, kcm_port))
        self._wait(kcm, f"https://127.0.0.1:{kcm_port}/healthz", _insecure_tls(), deadline)
        # A process that lost a race for its port may die after a probe reached
        # whoever holds the port instead.
        self._check_alive()
        state = {
            "server": server,
            "ports": {
                "etcd": etcd_port,
                "etcd-peer": peer_port,
                "apiserver": api_port,
                "controller-manager": kcm_port,
            },
            "binaries": {name: str(path) for name, path in bins.paths.items()},
            "bin_dirs": [str(d) for d in bins.client_dirs()],
        }
        (self.dir / "cluster.json").write_text(json.dumps(state, indent=2) + "\n")

    def _spawn(self, name: str, argv: list[str]) -> processes.Process:
        proc = processes.spawn(name, argv, workdir=self.dir, die_with_parent=self.die_with_parent)
        self._procs.append(proc)
        self._progress(f"Started {name} (pid {proc.pid})")
        return proc

    def _wait(
        self,
        proc: processes.Process,
        url: str,
        tls: ssl.SSLContext | None,
        deadline: float,
    ) -> None:
        while True:
            self._check_alive()
            if _probe(url, tls):
                self._progress(f"{proc.name} is ready")
                return
            if time.monotonic() >= deadline:
                raise ProcessFailedError(
                    proc.name, f"was not ready at {url} in time", proc.log, proc.log_tail()
                )
            time.sleep(self.poll_interval)

    def _check_alive(self) -> None:
        for p in self._procs:
            code = p.exit_code()
            if code is not None:
                raise ProcessFailedError(p.name, f"exited with {code}", p.log, p.log_tail())

    def _write_pki(self, server: str) -> None:
        d = self._pki
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)
        now = _now()
        serving_ca = pki.new_ca("keepfix-local-serving-ca", now=now)
        client_ca = pki.new_ca("keepfix-local-client-ca", now=now)
        serving_ca.write(d / "serving-ca.crt", d / "serving-ca.key")
        client_ca.write(d / "client-ca.crt", d / "client-ca.key")
        pki.new_serving_cert(serving_ca, now=now).write(d / "apiserver.crt", d / "apiserver.key")
        admin = pki.new_client_cert(client_ca, ADMIN_USER, ADMIN_GROUPS, now=now)
        admin.write(d / "admin.crt", d / "admin.key")
        sa_private, sa_public = pki.new_signing_key()
        (d / "sa.key").write_bytes(sa_private)
        (d / "sa.pub").write_bytes(sa_public)
        kcm = pki.new_client_cert(client_ca, "system:kube-controller-manager", now=now)
        for path, client in ((self.kubeconfig, admin), (self._kcm_kubeconfig, kcm)):
            text = kubeconfig.render(server=server, ca_pem=serving_ca.cert_pem, client=client)
            kubeconfig.write(path, text)

    @property
    def _kcm_kubeconfig(self) -> Path:
        return self.dir / "controller-manager.kubeconfig"

    def _admin_tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self._pki / "serving-ca.crt"))
        context.load_cert_chain(self._pki / "admin.crt", self._pki / "admin.key")
        return context

    def _etcd_args(self, bins: discovery.Binaries, port: int, peer: int) -> list[str]:
        client, peer_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer}"
        return [
            str(bins[_ETCD]),
            "--name=keepfix",
            f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=keepfix={peer_url}",
            "--initial-cluster-state=new",
            # A throwaway cluster: durability is not worth an fsync per write
            # (`durable=True` keeps etcd's fsync, as benchmarks of write latency need).
            *(() if self.durable else ("--unsafe-no-fsync=true",)),
            "--log-level=warn",
        ]

    def _apiserver_args(self, bins: discovery.Binaries, etcd_port: int, port: int) -> list[str]:
        d = self._pki
        return [
            str(bins[_APISERVER]),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={d}",
            f"--tls-cert-file={d / 'apiserver.crt'}",
            f"--tls-private-key-file={d / 'apiserver.key'}",
            f"--client-ca-file={d / 'client-ca.crt'}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={d / 'sa.pub'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            # The `kubernetes` Endpoints may not hold a loopback address.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]

    def _controller_manager_args(self, bins: discovery.Binaries, port: int) -> list[str]:
        d, kc = self._pki, self._kcm_kubeconfig
        return [
            str(bins[_CONTROLLER_MANAGER]),
            f"--kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.dir / 'controller-manager'}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={d / 'sa.key'}",
            f"--root-ca-file={d / 'serving-ca.crt'}",
            f"--cluster-signing-cert-file={d / 'client-ca.crt'}",
            f"--cluster-signing-key-file={d / 'client-ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*",
            "--profiling=false",
        ]


def _stop_rank(name: str) -> int:
    order = (_CONTROLLER_MANAGER, _APISERVER, _ETCD)
    return order.index(name) if name in order else -1


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _free_ports(count: int) -> list[int]:
    # Hold every socket until all are bound so the ports differ from each other.
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def _insecure_tls() -> ssl.SSLContext:
    # The controller manager serves a self-signed certificate of its own; only
    # its liveness is asked here, never a secret.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _probe(url: str, tls: ssl.SSLContext | None, timeout: float = 5.0) -> bool:
    """GET `url` without proxies; True on HTTP 200."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if tls is not None:
        handlers.append(urllib.request.HTTPSHandler(context=tls))
    opener = urllib.request.build_opener(*handlers) if tls is not None else _OPENER
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status) == 200
    except (OSError, http.client.HTTPException):
        return False
