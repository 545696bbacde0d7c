"""The webhook's HTTPS server: TLS with the generated CA, reviews, reloads."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import pathlib
import ssl
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from cryptography import x509

from keepfix.adapters.webhook import certs, server

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.UTC)
HOSTS = ("127.0.0.1", "localhost")


def _echo(webhook: str, review: Mapping[str, Any]) -> Mapping[str, Any]:
    uid = review["request"]["uid"]
    return {"webhook": webhook, "response": {"uid": uid, "allowed": True}}


@pytest.fixture
async def running(tmp_path: pathlib.Path) -> AsyncIterator[server.Server]:
    paths = certs.ensure(directory=tmp_path, hosts=HOSTS, now=NOW)
    srv = server.Server(host="127.0.0.1", port=0, paths=paths, review=_echo)
    await srv.start()
    yield srv
    await srv.stop()


def _client_context(ca: pathlib.Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


async def _post(srv: server.Server, ca: pathlib.Path, body: bytes) -> tuple[int, Any]:
    url = f"https://127.0.0.1:{srv.port}/validate/guardrails.keepfix.dev"
    connector = aiohttp.TCPConnector(ssl=_client_context(ca), force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def _peer_cert(srv: server.Server, ca: pathlib.Path) -> x509.Certificate:
    _reader, writer = await asyncio.open_connection("127.0.0.1", srv.port, ssl=_client_context(ca))
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return x509.load_der_x509_certificate(der)


async def test_review_is_served_over_tls(running: server.Server, tmp_path: pathlib.Path) -> None:
    """A client trusting ca.crt reaches the review callable with the webhook name."""
    status, answer = await _post(running, tmp_path / certs.CA_FILE, b'{"request": {"uid": "u1"}}')
    assert (status, answer) == (
        200,
        {"webhook": "guardrails.keepfix.dev", "response": {"uid": "u1", "allowed": True}},
    )


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]"], ids=["not-json", "not-object"])
async def test_bad_body_is_a_400(
    running: server.Server, tmp_path: pathlib.Path, body: bytes
) -> None:
    """A body that is not a JSON object gets 400, never a crash."""
    status, _ = await _post(running, tmp_path / certs.CA_FILE, body)
    assert status == 400


async def test_rotated_files_serve_new_connections(
    running: server.Server, tmp_path: pathlib.Path
) -> None:
    """New certificate files are served to the next connection without a restart."""
    before = await _peer_cert(running, tmp_path / certs.CA_FILE)
    rotated = certs.generate(hosts=HOSTS, now=NOW)
    certs.write(rotated, directory=tmp_path)
    _bump_mtime(tmp_path)
    after = await _peer_cert(running, tmp_path / certs.CA_FILE)
    assert before.serial_number != after.serial_number
    assert after.serial_number == x509.load_pem_x509_certificate(rotated.cert_pem).serial_number
    assert running.tls.reloads == 1


async def test_broken_rotation_keeps_the_old_certificate(
    running: server.Server, tmp_path: pathlib.Path
) -> None:
    """A half-written pair keeps serving the previous certificate."""
    before = await _peer_cert(running, tmp_path / certs.CA_FILE)
    (tmp_path / certs.KEY_FILE).write_text("half written")
    _bump_mtime(tmp_path)
    after = await _peer_cert(running, tmp_path / certs.CA_FILE)
    assert after.serial_number == before.serial_number
    assert running.tls.reloads == 0


def _bump_mtime(directory: pathlib.Path) -> None:
    # Filesystems with coarse mtimes could hide a same-second rewrite.
    for name in (certs.CERT_FILE, certs.KEY_FILE):
        stamp = (directory / name).stat().st_mtime_ns + 1_000_000_000
        os.utime(directory / name, ns=(stamp, stamp))


async def test_threaded_server_answers_while_the_callers_loop_is_blocked(
    tmp_path: pathlib.Path,
) -> None:
    """On its own thread the server answers even when the operator's loop is busy."""
    paths = certs.ensure(directory=tmp_path, hosts=HOSTS, now=NOW)
    threaded = server.Threaded(server.Server(host="127.0.0.1", port=0, paths=paths, review=_echo))
    await threaded.start()
    try:
        request = urllib.request.Request(
            f"https://127.0.0.1:{threaded.server.port}/validate/x",
            data=b'{"request": {"uid": "u2"}}',
            headers={"Content-Type": "application/json"},
        )
        # A blocking call on this loop: a server on the same loop could not answer.
        context = _client_context(tmp_path / certs.CA_FILE)
        with urllib.request.urlopen(request, context=context, timeout=30) as resp:  # noqa: ASYNC210
            answer = json.loads(resp.read())
    finally:
        await threaded.stop()
    assert answer == {"webhook": "x", "response": {"uid": "u2", "allowed": True}}


async def test_threaded_server_reports_a_failed_start(tmp_path: pathlib.Path) -> None:
    """A port already taken fails `start` with the bind error."""
    paths = certs.ensure(directory=tmp_path, hosts=HOSTS, now=NOW)
    first = server.Threaded(server.Server(host="127.0.0.1", port=0, paths=paths, review=_echo))
    await first.start()
    try:
        taken = first.server.port
        second = server.Threaded(
            server.Server(host="127.0.0.1", port=taken, paths=paths, review=_echo)
        )
        with pytest.raises(OSError, match="in use"):
            await second.start()
    finally:
        await first.stop()
