"""The Engine API as the driver uses it: one Protocol (the seam unit tests fake) and its docker-py
implementation over ``docker.APIClient``.

Everything the driver decides (limits, labels, exec result handling) lives outside this module;
``DockerEngine`` only translates calls, so the fake in the tests stands in for the daemon and the
real class for docker-py. ``exec_attach`` is the one place with more than a call: docker-py's own
socket reader polls without a deadline, so exec output is read here, frame by frame, with one.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from isobench.drivers.docker.events import api_time
from isobench.errors import CellTimeout, SandboxError

__all__ = ["ContainerConfig", "DockerEngine", "Engine", "ExecOutput", "NetworkConfig", "pump", "read_frames"]


@dataclass(frozen=True)
class ContainerConfig:
    """One container as the driver asks for it; pure data, mapped to the API by the engine."""

    name: str
    image: str
    command: tuple[str, ...]
    hostname: str
    working_dir: str
    labels: Mapping[str, str]
    cgroup_parent: str
    cpuset_cpus: str | None
    nano_cpus: int
    mem_limit: int
    memswap_limit: int
    pids_limit: int | None
    binds: Mapping[str, str] = field(default_factory=dict)
    network: str = "none"
    stop_timeout: int = 1
    #: Disk bandwidth caps: (device path such as ``/dev/vda``, bytes/s), read and write each.
    device_bps: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class NetworkConfig:
    name: str
    bridge: str
    subnet: str
    gateway: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class ExecOutput:
    stdout: bytes
    stderr: bytes


class Engine(Protocol):
    """What the driver needs from a Docker daemon."""

    def ping(self) -> bool: ...

    def version(self) -> Mapping[str, Any]: ...

    def info(self) -> Mapping[str, Any]: ...

    def image_id(self, tag: str) -> str | None:
        """The id of the image tagged ``tag``, None when there is none."""
        ...

    def import_tar(self, chunks: Iterable[bytes], repository: str, tag: str) -> None: ...

    def remove_image(self, ref: str) -> None:
        """Remove the image (gone already is fine)."""
        ...

    def commit_layer(self, image: str, tar: bytes, repository: str | None, tag: str | None) -> str:
        """A new image: ``image`` with ``tar`` unpacked at ``/`` as one more layer (a container made,
        never started, the archive put in, committed, removed); returns the new image's id."""
        ...

    def create_container(self, config: ContainerConfig) -> str: ...

    def start(self, container_id: str) -> None: ...

    def inspect(self, container_id: str) -> Mapping[str, Any]: ...

    def remove(self, container_id: str) -> None:
        """Remove with force (kills a running container); a container already gone is fine."""
        ...

    def containers(self, labels: Mapping[str, str | None]) -> list[str]:
        """Ids of every container (running or not) carrying these labels (None: any value)."""
        ...

    def exec_create(
        self, container_id: str, argv: Sequence[str], *, env: Mapping[str, str], workdir: str, stdin: bool
    ) -> str: ...

    def exec_attach(self, exec_id: str, *, stdin: bytes | None, timeout: float) -> ExecOutput:
        """Start the exec and read its output until it ends; CellTimeout past ``timeout``."""
        ...

    def exec_inspect(self, exec_id: str) -> Mapping[str, Any]: ...

    def stats(self, container_id: str) -> Mapping[str, Any]:
        """One stats document of the stats API (not streamed)."""
        ...

    def events(self, *, since_ns: int, until_ns: int) -> list[Mapping[str, Any]]:
        """The daemon's container and network events between two wall-clock times (ns since the
        epoch), oldest first; ``until_ns`` must not lie in the future (the daemon would wait)."""
        ...

    def network_id(self, name: str) -> str | None: ...

    def networks(self, labels: Mapping[str, str | None]) -> list[str]:
        """Names of the networks carrying these labels (None: any value)."""
        ...

    def create_network(self, config: NetworkConfig) -> str: ...

    def remove_network(self, name: str) -> None: ...

    def close(self) -> None: ...


_HEADER = struct.Struct(">BxxxL")


def read_frames(buffer: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Complete multiplexed frames (stream id, payload) at the head of ``buffer``, and the rest."""
    frames: list[tuple[int, bytes]] = []
    while len(buffer) >= _HEADER.size:
        stream, size = _HEADER.unpack_from(buffer)
        if len(buffer) < _HEADER.size + size:
            break
        frames.append((stream, buffer[_HEADER.size : _HEADER.size + size]))
        buffer = buffer[_HEADER.size + size :]
    return frames, buffer


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """docker-py's errors as SandboxError, one line each (the boundary where they become ours)."""
    import docker.errors
    import requests.exceptions

    try:
        yield
    except docker.errors.APIError as err:
        raise SandboxError(f"docker {what}: {err.explanation or err}") from err
    except docker.errors.DockerException as err:
        raise SandboxError(f"docker {what}: {err}") from err
    except requests.exceptions.RequestException as err:
        raise SandboxError(
            f"docker {what}: the daemon does not answer ({type(err).__name__}: {err})"
        ) from err


def pump(raw: socket.socket, stdin: bytes | None, timeout: float) -> ExecOutput:
    """Feed ``stdin`` and read the multiplexed output until the daemon closes the stream, both at
    once and under one deadline: a command that stops reading its input (or never reads it) must
    neither block the feeding nor hide its output."""
    deadline = time.monotonic() + timeout
    raw.setblocking(False)  # select says "some room", not "room for a whole chunk"
    out: dict[int, list[bytes]] = {1: [], 2: []}
    pending = memoryview(stdin) if stdin is not None else None
    if pending is not None and not pending:
        raw.shutdown(socket.SHUT_WR)
        pending = None
    buffer = b""
    while True:
        left = deadline - time.monotonic()
        writers = [raw] if pending is not None else []
        readable, writable, _ = select.select([raw], writers, [], max(left, 0))
        if left <= 0 or not (readable or writable):
            raise CellTimeout(f"docker exec did not finish within {timeout:g}s")
        if writable and pending is not None:
            try:
                sent = raw.send(pending[:65536])
            except BlockingIOError:
                sent = 0
            except (BrokenPipeError, ConnectionResetError):
                sent = len(pending)  # the command is gone; its output is still to be read
            pending = pending[sent:]
            if not pending:
                with contextlib.suppress(OSError):
                    raw.shutdown(socket.SHUT_WR)
                pending = None
        if readable:
            try:
                chunk = raw.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                # The daemon closed the stream with our input still unread in its buffer: the
                # kernel then reports a reset instead of EOF, after every byte it had queued for us.
                break
            if not chunk:
                break
            frames, buffer = read_frames(buffer + chunk)
            for stream, payload in frames:
                out.setdefault(stream, []).append(payload)
    return ExecOutput(b"".join(out[1]), b"".join(out[2]))


def _raw_socket(sock: Any) -> socket.socket:
    raw = getattr(sock, "_sock", sock)
    if not isinstance(raw, socket.socket):
        raise SandboxError(f"docker exec gave no socket to read from ({type(sock).__name__})")
    return raw


class DockerEngine:
    """``Engine`` over docker-py's low-level client."""

    def __init__(self, base_url: str, *, timeout: float, version: str | None = None) -> None:
        with _translated("connect"):
            import docker

            self._timeout = timeout
            # version None: asks the daemon (one request); a pinned one lets a not-yet-running daemon be pinged.
            self._api = docker.APIClient(base_url=base_url, version=version or "auto", timeout=int(timeout))

    def ping(self) -> bool:
        with _translated("ping"):
            return bool(self._api.ping())

    def version(self) -> Mapping[str, Any]:
        with _translated("version"):
            return dict(self._api.version())

    def info(self) -> Mapping[str, Any]:
        with _translated("info"):
            return dict(self._api.info())

    def image_id(self, tag: str) -> str | None:
        with _translated("inspect image"):
            import docker.errors

            try:
                return str(self._api.inspect_image(tag)["Id"])  # type: ignore[no-untyped-call]
            except docker.errors.ImageNotFound:
                return None

    def import_tar(self, chunks: Iterable[bytes], repository: str, tag: str) -> None:
        with _translated("import"):
            # The response comes once the whole tree is unpacked: no read timeout for it.
            saved = self._api.timeout
            self._api.timeout = None  # type: ignore[assignment]
            try:
                text = self._api.import_image(src=chunks, repository=repository, tag=tag, stream_src=True)
            finally:
                self._api.timeout = saved
            for line in str(text).splitlines():
                try:
                    doc = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(doc, dict) and doc.get("error"):
                    raise SandboxError(f"docker import failed: {doc['error']}")

    def remove_image(self, ref: str) -> None:
        with _translated("remove image"):
            import docker.errors

            with contextlib.suppress(docker.errors.NotFound):
                self._api.remove_image(ref, force=True)

    def commit_layer(self, image: str, tar: bytes, repository: str | None, tag: str | None) -> str:
        with _translated("commit a layer"):
            api = self._api
            cid = str(api.create_container(image, command=["/bin/true"])["Id"])
            try:
                if not api.put_archive(cid, "/", tar):
                    raise SandboxError(f"docker refused the layer archive for a container of {image}")
                return str(api.commit(cid, repository=repository, tag=tag)["Id"])
            finally:
                with contextlib.suppress(Exception):
                    api.remove_container(cid, force=True, v=True)

    def host_config(self, config: ContainerConfig) -> dict[str, Any]:
        """The HostConfig docker-py builds for ``config`` (offline: no request is made)."""
        return dict(
            self._api.create_host_config(
                cpuset_cpus=config.cpuset_cpus,
                nano_cpus=config.nano_cpus,
                mem_limit=config.mem_limit,
                memswap_limit=config.memswap_limit,
                pids_limit=config.pids_limit,
                cgroup_parent=config.cgroup_parent,
                binds={src: {"bind": dst, "mode": "rw"} for src, dst in config.binds.items()},
                network_mode=config.network,
                device_read_bps=[{"Path": path, "Rate": rate} for path, rate in config.device_bps] or None,
                device_write_bps=[{"Path": path, "Rate": rate} for path, rate in config.device_bps] or None,
            )
        )

    def create_container(self, config: ContainerConfig) -> str:
        with _translated("create"):
            api = self._api
            host_config = self.host_config(config)
            created = api.create_container(
                config.image,
                command=list(config.command),
                name=config.name,
                hostname=config.hostname,
                working_dir=config.working_dir,
                labels=dict(config.labels),
                host_config=host_config,
                stop_timeout=config.stop_timeout,
            )
            return str(created["Id"])

    def start(self, container_id: str) -> None:
        with _translated("start"):
            self._api.start(container_id)

    def inspect(self, container_id: str) -> Mapping[str, Any]:
        with _translated("inspect"):
            return dict(self._api.inspect_container(container_id))

    def remove(self, container_id: str) -> None:
        with _translated("remove"):
            import docker.errors

            with contextlib.suppress(docker.errors.NotFound):
                self._api.remove_container(container_id, force=True, v=True)

    def containers(self, labels: Mapping[str, str | None]) -> list[str]:
        with _translated("list containers"):
            wanted = [k if v is None else f"{k}={v}" for k, v in labels.items()]
            return [str(c["Id"]) for c in self._api.containers(all=True, filters={"label": wanted})]

    def exec_create(
        self, container_id: str, argv: Sequence[str], *, env: Mapping[str, str], workdir: str, stdin: bool
    ) -> str:
        with _translated("exec create"):
            created = self._api.exec_create(
                container_id, list(argv), stdin=stdin, environment=dict(env) or None, workdir=workdir
            )
            return str(created["Id"])

    def exec_attach(self, exec_id: str, *, stdin: bytes | None, timeout: float) -> ExecOutput:
        with _translated("exec"):
            raw = _raw_socket(self._api.exec_start(exec_id, socket=True))
            try:
                return pump(raw, stdin, timeout)
            finally:
                raw.close()

    def exec_inspect(self, exec_id: str) -> Mapping[str, Any]:
        with _translated("exec inspect"):
            return dict(self._api.exec_inspect(exec_id))

    def stats(self, container_id: str) -> Mapping[str, Any]:
        with _translated("stats"):
            return dict(self._api.stats(container_id, stream=False))

    def events(self, *, since_ns: int, until_ns: int) -> list[Mapping[str, Any]]:
        with _translated("events"):
            # A bounded query: with ``until`` in the past the daemon replays its buffered events and
            # closes the stream. docker-py forwards since/until as given and its stubs say int, but
            # whole seconds would miss the current second's events or make the daemon wait for the
            # next one: the API also takes "seconds.nanoseconds".
            stream = self._api.events(  # type: ignore[call-overload]
                since=api_time(since_ns),
                until=api_time(until_ns),
                # Not filtered by container: that filter drops the network events (their actor is
                # the network), which name the container only in an attribute.
                filters={"type": ["container", "network"]},
                decode=True,
            )
            try:
                return [dict(ev) for ev in stream]
            finally:
                stream.close()

    def network_id(self, name: str) -> str | None:
        with _translated("list networks"):
            found = self._api.networks(names=[name])
            exact = [n for n in found if n.get("Name") == name]
            return str(exact[0]["Id"]) if exact else None

    def networks(self, labels: Mapping[str, str | None]) -> list[str]:
        with _translated("list networks"):
            wanted = [k if v is None else f"{k}={v}" for k, v in labels.items()]
            return [str(n["Name"]) for n in self._api.networks(filters={"label": wanted})]

    def create_network(self, config: NetworkConfig) -> str:
        with _translated("create network"):
            from docker.types import IPAMConfig, IPAMPool

            ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=config.subnet, gateway=config.gateway)])
            created = self._api.create_network(
                config.name,
                driver="bridge",
                ipam=ipam,
                labels=dict(config.labels),
                options={
                    "com.docker.network.bridge.name": config.bridge,
                    # Host <-> container only: no NAT, no forwarding (the daemon runs with --iptables=false).
                    "com.docker.network.bridge.enable_ip_masquerade": "false",
                },
            )
            return str(created["Id"])

    def remove_network(self, name: str) -> None:
        with _translated("remove network"):
            import docker.errors

            with contextlib.suppress(docker.errors.NotFound):
                self._api.remove_network(name)

    def close(self) -> None:
        self._api.close()
