"""The Kubernetes API, reduced to what keepfix needs: dicts in, dicts out.

Design:

- Every call goes through one generic REST path built from a `Resource`
  (group, version, plural, namespaced), so built-in kinds and custom
  resources are handled the same way. `Kube.resource_for(api_version, kind)`
  finds the `Resource` through discovery; its cache is refreshed on a miss,
  so a CRD installed after the operator started is found without a restart.
- kubernetes_asyncio provides configuration (kubeconfig, in-cluster service
  account, token refresh, TLS) and the HTTP session; bodies are plain JSON
  dicts, never the generated model classes (they are slow and lossy for
  custom resources).
- Failures raise `ApiError` or one of its subclasses. `ApiError.replannable`
  tells a caller that re-reading the object and planning again may help
  (409 Conflict, 422 Invalid). A JSON patch whose `test` operation fails is
  answered by the API server with 422, so it raises `Invalid` (verified
  against kube-apiserver in tests/integration/adapters/test_kube.py).
- A transport failure (connection refused, TLS, timeout) raises
  `TransportError` (an `ApiError` with status 0): retrying later may help.

- Watches (`stream`) hold a connection each; every other request waits for
  one of `max_requests` slots, so a burst reuses a few connections instead of
  opening one per request (asyncio keeps a 256 KiB TLS buffer per connection).

Absent objects: `get` and `delete` return None; every other call raises
`NotFound`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import pathlib
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final

import aiohttp
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from keepfix.api import conventions

logger = logging.getLogger(__name__)

#: Page size for LIST requests; big lists are read in pages of this size.
LIST_PAGE_SIZE: Final = 500
#: Seconds a group/version's discovery answers misses before it is read again.
DISCOVERY_REFRESH_INTERVAL: Final = 1.0
#: At most this many requests (other than watches) are in flight at once per Kube.
MAX_REQUESTS: Final = 16
#: Seconds a non-streaming request may take before it fails with TransportError.
REQUEST_TIMEOUT: Final = 30.0

_JSON_PATCH: Final = "application/json-patch+json"
_MERGE_PATCH: Final = "application/merge-patch+json"
_APPLY_PATCH: Final = "application/apply-patch+yaml"
_JSON: Final = "application/json"
_SERVICE_TOKEN: Final = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/token")

JsonDict = dict[str, Any]
# The method Kube.list shadows `list` inside the class body: use these aliases there.
_Query = list[tuple[str, str]]
_Items = list[JsonDict]


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """A request the API server refused, or that never reached it (status 0).

    `status` is the HTTP status, `reason` the Kubernetes Status reason
    (`NotFound`, `Conflict`, `Invalid`, ...), `message` the server's message,
    `body` the decoded Status object when there was one.
    """

    def __init__(
        self, status: int, reason: str, message: str, *, body: JsonDict | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body or {}

    @property
    def replannable(self) -> bool:
        """True for 409 and 422: re-read the object and plan the write again."""
        return self.status in (409, 422)

    @staticmethod
    def from_response(status: int, payload: bytes) -> ApiError:
        """Build the most specific subclass for an HTTP status and its body."""
        body: JsonDict = {}
        try:
            decoded = json.loads(payload) if payload else {}
            body = decoded if isinstance(decoded, dict) else {}
        except ValueError:
            body = {}
        reason = str(body.get("reason") or _DEFAULT_REASONS.get(status, "Unknown"))
        message = str(body.get("message") or payload[:500].decode("utf-8", "replace"))
        cls: type[ApiError] = _BY_STATUS.get(status, ApiError)
        if status == 409 and reason == "AlreadyExists":
            cls = AlreadyExists
        return cls(status, reason, message, body=body)


def too_large_resource_version(error: ApiError) -> bool:
    """True for the API server's "Too large resource version" answer (504).

    It means the server's storage is behind the resourceVersion asked for:
    etcd was restored or recreated and its revisions started lower.
    """
    causes = (error.body.get("details") or {}).get("causes") or []
    return error.status == 504 and any(
        cause.get("reason") == "ResourceVersionTooLarge" for cause in causes
    )


class NotFound(ApiError):
    """404: the object (or the kind) does not exist."""


class Forbidden(ApiError):
    """403: RBAC does not allow the request; retrying does not help."""


class Conflict(ApiError):
    """409: the object changed since it was read (resourceVersion mismatch)."""


class AlreadyExists(Conflict):
    """409 with reason AlreadyExists: `create` of a name that is taken."""


class Gone(ApiError):
    """410: a resourceVersion or continue token is too old; list again."""


class Invalid(ApiError):
    """422: the request was rejected, including a JSON patch whose `test` op failed."""


class TransportError(ApiError):
    """Status 0: the request never got an answer (connection, TLS, timeout)."""


class ConfigError(Exception):
    """`connect` found no usable kubeconfig or in-cluster configuration."""


class UnknownKind(LookupError):
    """Discovery does not know this apiVersion/kind, even after a refresh."""


_BY_STATUS: Final[dict[int, type[ApiError]]] = {
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
}
_DEFAULT_REASONS: Final = {
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
}


# --------------------------------------------------------------------------- resources


@dataclasses.dataclass(frozen=True)
class Resource:
    """A REST resource: where objects of one kind live in the API."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        """`apps/v1`, or `v1` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, *, namespace: str | None = None, name: str | None = None, subresource: str = ""
    ) -> str:
        """The URL path of the collection (name None) or of one object.

        A namespaced resource with namespace None is the all-namespaces
        collection; namespace is ignored for cluster-scoped resources.
        """
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{_quote(namespace)}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{_quote(name)}"
            if subresource:
                base += f"/{subresource}"
        return base


_KEEPFIX_KINDS: Final = {
    conventions.PLURAL_MITIGATIONS: (conventions.KIND_MITIGATION, True),
    conventions.PLURAL_GUARDRAILS: (conventions.KIND_GUARDRAIL, False),
    conventions.PLURAL_REGRESSIONS: (conventions.KIND_REGRESSION, True),
    conventions.PLURAL_ALERT_ROUTES: (conventions.KIND_ALERT_ROUTE, False),
}


def keepfix_resource(plural: str) -> Resource:
    """The Resource of one of keepfix's own kinds, without discovery.

    `plural` is one of the `conventions.PLURAL_*` names; anything else raises
    UnknownKind.
    """
    try:
        kind, namespaced = _KEEPFIX_KINDS[plural]
    except KeyError:
        raise UnknownKind(f"{plural!r} is not a keepfix kind") from None
    return Resource(conventions.GROUP, conventions.VERSION, kind, plural, namespaced)


def split_api_version(api_version: str) -> tuple[str, str]:
    """`apps/v1` -> (`apps`, `v1`); `v1` -> (``, `v1`)."""
    group, _, version = api_version.rpartition("/")
    return group, version


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


# --------------------------------------------------------------------------- client


async def connect(
    *, kubeconfig: str | None = None, context: str | None = None, max_requests: int = MAX_REQUESTS
) -> Kube:
    """Connect to the cluster and return a `Kube` (use it with `async with`).

    With an explicit `kubeconfig`, that file is used. Otherwise, inside a pod
    (KUBERNETES_SERVICE_HOST set and a service-account token mounted) the
    in-cluster configuration is used; else $KUBECONFIG, else ~/.kube/config.
    `context` picks a kubeconfig context (default: the current one). No
    request is made here: a cluster that is down fails the first call.
    Raises ConfigError when no usable configuration is found. At most
    `max_requests` requests other than watches are in flight at once.
    """
    configuration = k8s_client.Configuration()
    try:
        if kubeconfig is None and _in_cluster():
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await k8s_config.load_kube_config(
                config_file=_kubeconfig_path(kubeconfig),
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (k8s_config.ConfigException, OSError, ValueError) as error:
        raise ConfigError(f"No usable Kubernetes configuration: {error}") from error
    # Each watch holds one HTTP connection open: do not cap the pool.
    configuration.connection_pool_maxsize = 0
    return Kube(k8s_client.ApiClient(configuration), max_requests=max_requests)


def _kubeconfig_path(explicit: str | None) -> str:
    """The explicit file, else the first file of $KUBECONFIG, else ~/.kube/config."""
    path = explicit or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return str(pathlib.Path(path or "~/.kube/config").expanduser())


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and _SERVICE_TOKEN.is_file()


class Kube:
    """An open connection to one cluster. Create with `connect()`; `close()` when done."""

    def __init__(
        self, api_client: k8s_client.ApiClient, *, max_requests: int = MAX_REQUESTS
    ) -> None:
        self._api = api_client
        # Watches hold their own connections; other requests share a bounded set,
        # so a burst (10,000 objects found at start-up) does not open a connection
        # each (asyncio keeps a 256 KiB TLS buffer per connection).
        self._requests = asyncio.Semaphore(max_requests)
        self._discovery: dict[str, dict[str, Resource]] = {}
        self._discovery_lock = asyncio.Lock()
        #: When each group/version was last read (monotonic seconds).
        self._discovered_at: dict[str, float] = {}

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session; safe to call twice."""
        await self._api.close()

    @property
    def host(self) -> str:
        """The API server URL, e.g. `https://127.0.0.1:6443`."""
        return str(self._api.configuration.host)

    # ------------------------------------------------------------------ discovery

    async def resource_for(self, api_version: str, kind: str) -> Resource:
        """The Resource serving `kind` in `api_version`, through discovery.

        Cached per group/version; a miss refreshes that group/version, so a
        CRD created after start-up is found, but at most once per
        DISCOVERY_REFRESH_INTERVAL (100 Guardrails naming a kind that a group
        does not serve make one request, not hundreds). Raises UnknownKind
        when the group/version or the kind is still not served.
        """
        found = self._discovery.get(api_version, {}).get(kind)
        if found is not None:
            return found
        async with self._discovery_lock:
            found = self._discovery.get(api_version, {}).get(kind)
            last = self._discovered_at.get(api_version)
            fresh = last is not None and time.monotonic() - last < DISCOVERY_REFRESH_INTERVAL
            if found is None and not fresh:
                self._discovery[api_version] = await self._discover(api_version)
                self._discovered_at[api_version] = time.monotonic()
                found = self._discovery[api_version].get(kind)
        if found is None:
            raise UnknownKind(f"The API server does not serve kind {kind} in {api_version}")
        return found

    def forget(self, api_version: str) -> None:
        """Drop what discovery knows of `api_version` (its CRD may have been deleted)."""
        self._discovery.pop(api_version, None)
        self._discovered_at.pop(api_version, None)

    async def _discover(self, api_version: str) -> dict[str, Resource]:
        group, version = split_api_version(api_version)
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            listing = await self._json("GET", path)
        except NotFound:
            return {}
        resources: dict[str, Resource] = {}
        for item in listing.get("resources", []):
            if "/" in item["name"]:
                continue  # a subresource such as deployments/status
            resource = Resource(group, version, item["kind"], item["name"], item["namespaced"])
            resources[resource.kind] = resource
        return resources

    # ------------------------------------------------------------------ reads

    async def get(self, resource: Resource, *, namespace: str | None, name: str) -> JsonDict | None:
        """The object, or None if it is absent."""
        try:
            return await self._json("GET", resource.path(namespace=namespace, name=name))
        except NotFound:
            return None

    async def list(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = LIST_PAGE_SIZE,
    ) -> tuple[_Items, str]:
        """All matching objects and the list's resourceVersion (to start a watch from).

        Items carry `apiVersion` and `kind` (the API server leaves them out of
        list items). Read in pages of `page_size`; an expired continue token
        (410) starts the list again. namespace None means all namespaces (or
        a cluster-scoped kind).
        """
        while True:
            items: _Items = []
            resource_version = ""
            try:
                async for page, page_version in self.list_pages(
                    resource,
                    namespace=namespace,
                    label_selector=label_selector,
                    field_selector=field_selector,
                    page_size=page_size,
                ):
                    items.extend(page)
                    resource_version = page_version
            except Gone:
                logger.info("List continue token expired, listing again: %s", resource.plural)
                continue
            return items, resource_version

    async def list_pages(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = LIST_PAGE_SIZE,
    ) -> AsyncIterator[tuple[_Items, str]]:
        """The pages of a list, each with the list's resourceVersion, as they arrive.

        For big lists that should not sit in memory whole. Items carry
        `apiVersion` and `kind`. Raises Gone when the continue token expires
        between pages: the caller starts again (pages already yielded will
        come again).
        """
        query: _Query = [("limit", str(page_size))]
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        token = ""
        while True:
            page_query = [*query, ("continue", token)] if token else query
            page = await self._json("GET", resource.path(namespace=namespace), query=page_query)
            items: _Items = page.get("items") or []
            for item in items:
                item["apiVersion"] = resource.api_version
                item["kind"] = resource.kind
            metadata = page.get("metadata", {})
            token = metadata.get("continue") or ""
            yield items, str(metadata.get("resourceVersion", ""))
            if not token:
                return

    # ------------------------------------------------------------------ writes

    async def create(
        self,
        resource: Resource,
        *,
        body: JsonDict,
        field_manager: str = conventions.FIELD_MANAGER,
    ) -> JsonDict:
        """Create the object; the namespace comes from body.metadata.namespace.

        Raises AlreadyExists (a Conflict) when the name is taken.
        """
        namespace = body.get("metadata", {}).get("namespace")
        return await self._json(
            "POST",
            resource.path(namespace=namespace),
            query=[("fieldManager", field_manager)],
            body=body,
        )

    async def replace(
        self,
        resource: Resource,
        *,
        body: JsonDict,
        field_manager: str = conventions.FIELD_MANAGER,
    ) -> JsonDict:
        """Replace the whole object (PUT). Only for objects keepfix owns.

        With metadata.resourceVersion set, raises Conflict when the object
        changed since; raises NotFound when it is absent.
        """
        metadata = body.get("metadata", {})
        return await self._json(
            "PUT",
            resource.path(namespace=metadata.get("namespace"), name=metadata["name"]),
            query=[("fieldManager", field_manager)],
            body=body,
        )

    async def delete(
        self,
        resource: Resource,
        *,
        namespace: str | None,
        name: str,
        propagation_policy: str | None = None,
    ) -> JsonDict | None:
        """Delete the object; None if it was already absent.

        Returns what the API server answered (the object, possibly still
        present with a deletionTimestamp while finalizers run, or a Status).
        """
        body = {"propagationPolicy": propagation_policy} if propagation_policy else None
        try:
            return await self._json(
                "DELETE", resource.path(namespace=namespace, name=name), body=body
            )
        except NotFound:
            return None

    async def json_patch(
        self,
        resource: Resource,
        *,
        namespace: str | None,
        name: str,
        ops: Sequence[Mapping[str, Any]],
        field_manager: str = conventions.FIELD_MANAGER,
    ) -> JsonDict:
        """Apply an RFC 6902 JSON patch and return the patched object.

        A failed `test` op (the object changed) raises Invalid (422); so does
        a `replace`/`remove` of a path that is absent. An absent object raises
        NotFound. Either way: re-read and plan again.
        """
        return await self._json(
            "PATCH",
            resource.path(namespace=namespace, name=name),
            query=[("fieldManager", field_manager)],
            body=[dict(op) for op in ops],
            content_type=_JSON_PATCH,
        )

    async def patch_merge(
        self,
        resource: Resource,
        *,
        namespace: str | None,
        name: str,
        merge_patch: Mapping[str, Any],
        field_manager: str = conventions.FIELD_MANAGER,
    ) -> JsonDict:
        """Apply an RFC 7386 merge patch (None values delete keys); NotFound if absent."""
        return await self._json(
            "PATCH",
            resource.path(namespace=namespace, name=name),
            query=[("fieldManager", field_manager)],
            body=dict(merge_patch),
            content_type=_MERGE_PATCH,
        )

    async def patch_status(
        self,
        resource: Resource,
        *,
        namespace: str | None,
        name: str,
        merge_patch: Mapping[str, Any],
        field_manager: str = conventions.FIELD_MANAGER,
    ) -> JsonDict:
        """Merge-patch the status subresource, e.g. `{"status": {"phase": "Watching"}}`.

        The patch is the whole-object shape (with the `status` key), as the
        API server expects. Raises NotFound if the object is absent.
        """
        return await self._json(
            "PATCH",
            resource.path(namespace=namespace, name=name, subresource="status"),
            query=[("fieldManager", field_manager)],
            body=dict(merge_patch),
            content_type=_MERGE_PATCH,
        )

    async def apply(
        self,
        resource: Resource,
        *,
        body: JsonDict,
        field_manager: str = conventions.FIELD_MANAGER,
        force: bool = False,
        subresource: str = "",
    ) -> JsonDict:
        """Server-side apply `body` (apiVersion, kind, metadata.name[, namespace] + fields).

        Creates the object if absent. Without `force`, a field owned by
        another manager raises Conflict (409); with `force` keepfix takes it.
        """
        metadata = body.get("metadata", {})
        query = [("fieldManager", field_manager)]
        if force:
            query.append(("force", "true"))
        return await self._json(
            "PATCH",
            resource.path(
                namespace=metadata.get("namespace"),
                name=metadata["name"],
                subresource=subresource,
            ),
            query=query,
            body=body,
            content_type=_APPLY_PATCH,
        )

    # ------------------------------------------------------------------ transport

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: _Query | None = None,
        body: Any = None,
        content_type: str = _JSON,
    ) -> JsonDict:
        """Any other API call: the decoded JSON answer, or ApiError.

        `path` is an API path such as `Resource.path(...)` returns; `query`
        a list of (name, value) pairs.
        """
        return await self._json(method, path, query=query, body=body, content_type=content_type)

    async def _json(
        self,
        method: str,
        path: str,
        *,
        query: _Query | None = None,
        body: Any = None,
        content_type: str = _JSON,
    ) -> JsonDict:
        """One request; the decoded JSON answer or a raised ApiError."""
        async with (
            self._requests,
            self.stream(
                method, path, query=query, body=body, content_type=content_type
            ) as response,
        ):
            try:
                payload = await response.read()
            except (aiohttp.ClientError, TimeoutError) as error:
                raise TransportError(0, type(error).__name__, str(error) or repr(error)) from error
        decoded = json.loads(payload) if payload else {}
        return decoded if isinstance(decoded, dict) else {"items": decoded}

    def stream(
        self,
        method: str,
        path: str,
        *,
        query: _Query | None = None,
        body: Any = None,
        content_type: str = _JSON,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> _Stream:
        """An `async with` around a raw aiohttp response with a 2xx status.

        For watches: read `response.content` line by line. Raises ApiError
        (or TransportError) on entry when the status is not 2xx.
        """
        return _Stream(
            self._api,
            method,
            path,
            query=query or [],
            body=body,
            content_type=content_type,
            timeout=timeout or aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        )


class _Stream:
    """Async context manager for one request whose response is read by the caller."""

    def __init__(
        self,
        api: k8s_client.ApiClient,
        method: str,
        path: str,
        *,
        query: _Query,
        body: Any,
        content_type: str,
        timeout: aiohttp.ClientTimeout,
    ) -> None:
        self._api = api
        self._args = (method, path, query, body, content_type, timeout)
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        method, path, query, body, content_type, timeout = self._args
        try:
            response: aiohttp.ClientResponse = await self._api.call_api(
                path,
                method,
                query_params=query,
                header_params={"Content-Type": content_type, "Accept": _JSON},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except (aiohttp.ClientError, TimeoutError) as error:
            raise TransportError(0, type(error).__name__, str(error) or repr(error)) from error
        if not 200 <= response.status < 300:
            try:
                payload = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                payload = b""
            finally:
                response.release()
            raise ApiError.from_response(response.status, payload)
        self._response = response
        return response

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        response, self._response = self._response, None
        if response is None:
            return
        if not response.content.at_eof():
            # An abandoned stream (a watch being stopped): drop the connection at
            # once. A graceful TLS shutdown needs more loop turns than a stopping
            # operator may have, and would leave the socket to the garbage collector.
            transport = response.connection.transport if response.connection else None
            if transport is not None:
                transport.abort()
        response.release()
