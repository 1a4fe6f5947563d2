"""Fixtures of the docker driver tests: a fake Docker Engine (the ``Engine`` seam with recorded
calls and injectable failures)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from isobench.drivers.docker.engine import ContainerConfig, Engine, ExecOutput, NetworkConfig
from isobench.errors import SandboxError


@dataclass
class FakeExec:
    argv: tuple[str, ...]
    env: Mapping[str, str]
    stdin: bytes | None = None
    pid: int = 0


@dataclass
class FakeEngine:
    """Containers, images, networks and execs in dicts. ``fail`` maps a method name to the error it
    raises; ``run`` decides what an exec gives (stdout, stderr, exit code) from its argv."""

    fail: dict[str, Exception] = field(default_factory=dict)
    run: Callable[[Sequence[str], bytes | None], tuple[bytes, bytes, int]] = lambda argv, stdin: (b"", b"", 0)
    exec_pid: int = 0
    #: Whether ping answers (a daemon that has come up), asked on every ping.
    answers: Callable[[], bool] = lambda: True
    containers_made: dict[str, ContainerConfig] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)
    removed: list[str] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)
    imported_bytes: int = 0
    networks_made: dict[str, NetworkConfig] = field(default_factory=dict)
    execs: dict[str, FakeExec] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)
    #: The daemon's container events, as the Engine API gives them (wall-clock ``timeNano``).
    daemon_events: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False
    #: Per committed layer: (the image it went on, the archive's size, the tag).
    commits: list[tuple[str, int, str | None]] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def _check(self, name: str) -> None:
        if name in self.fail:
            raise self.fail[name]

    def _event(self, container_id: str, action: str, network: str | None = None) -> None:
        actor = (
            {"ID": container_id}
            if network is None
            else {"ID": network, "Attributes": {"container": container_id}}
        )
        self.daemon_events.append(
            {
                "Type": "container" if network is None else "network",
                "Action": action,
                "Actor": actor,
                "timeNano": time.time_ns(),
            }
        )

    def ping(self) -> bool:
        self._check("ping")
        return self.answers()

    def version(self) -> Mapping[str, Any]:
        self._check("version")
        return {
            "Version": "20.10.24",
            "ApiVersion": "1.41",
            "Components": [{"Name": "containerd", "Version": "1.6.20"}],
        }

    def info(self) -> Mapping[str, Any]:
        return {
            "DefaultRuntime": "runc",
            "Driver": "overlay2",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": "1",
            "SecurityOptions": ["name=seccomp,profile=default"],
        }

    def image_id(self, tag: str) -> str | None:
        return self.images.get(tag)

    def import_tar(self, chunks: Iterable[bytes], repository: str, tag: str) -> None:
        for chunk in chunks:
            self.imported_bytes += len(chunk)
            self._check("import_tar")
        self.images[f"{repository}:{tag}"] = f"sha256:{tag}"

    def remove_image(self, ref: str) -> None:
        self.images.pop(ref, None)
        for tag, image_id in list(self.images.items()):
            if image_id == ref:
                del self.images[tag]

    def commit_layer(self, image: str, tar: bytes, repository: str | None, tag: str | None) -> str:
        self._check("commit_layer")
        image_id = f"sha256:layer{next(self._ids)}"
        self.commits.append((image, len(tar), tag))
        self.images[f"{repository}:{tag}" if tag else image_id] = image_id
        return image_id

    def create_container(self, config: ContainerConfig) -> str:
        self._check("create_container")
        cid = f"c{next(self._ids)}"
        self.containers_made[cid] = config
        self._event(cid, "create")
        return cid

    def start(self, container_id: str) -> None:
        self._check("start")
        self._event(container_id, "connect", network=self.containers_made[container_id].network)
        self.running.add(container_id)
        self._event(container_id, "start")

    def inspect(self, container_id: str) -> Mapping[str, Any]:
        config = self.containers_made[container_id]
        nets = {} if config.network == "none" else {config.network: {"IPAddress": "10.216.0.2"}}
        return {
            "Name": f"/{config.name}",
            "State": {"Running": container_id in self.running, "Pid": 4242, "Status": "running"},
            "NetworkSettings": {"Networks": nets},
        }

    def remove(self, container_id: str) -> None:
        self._check("remove")
        if container_id in self.running:
            self._event(container_id, "kill")
            self._event(container_id, "die")
        self.running.discard(container_id)
        if self.containers_made.pop(container_id, None) is not None:
            self._event(container_id, "destroy")
        self.removed.append(container_id)

    def containers(self, labels: Mapping[str, str | None]) -> list[str]:
        def match(config: ContainerConfig) -> bool:
            return all(k in config.labels and (v is None or config.labels[k] == v) for k, v in labels.items())

        return [cid for cid, config in self.containers_made.items() if match(config)]

    def exec_create(
        self, container_id: str, argv: Sequence[str], *, env: Mapping[str, str], workdir: str, stdin: bool
    ) -> str:
        self._check("exec_create")
        if container_id not in self.running:
            raise SandboxError(f"docker exec create: container {container_id} is not running")
        eid = f"e{next(self._ids)}"
        self.execs[eid] = FakeExec(tuple(argv), dict(env), pid=self.exec_pid)
        return eid

    def exec_attach(self, exec_id: str, *, stdin: bytes | None, timeout: float) -> ExecOutput:
        self._check("exec_attach")
        ex = self.execs[exec_id]
        ex.stdin = stdin
        out, err, code = self.run(ex.argv, stdin)
        self.exit_codes[exec_id] = code
        return ExecOutput(out, err)

    def exec_inspect(self, exec_id: str) -> Mapping[str, Any]:
        code = self.exit_codes.get(exec_id)
        return {"ExitCode": code, "Running": code is None, "Pid": self.execs[exec_id].pid}

    def stats(self, container_id: str) -> Mapping[str, Any]:
        return {"memory_stats": {"usage": 1000}, "cpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000}}}

    def events(self, *, since_ns: int, until_ns: int) -> list[Mapping[str, Any]]:
        self._check("events")
        return [ev for ev in self.daemon_events if since_ns <= ev["timeNano"] <= until_ns]

    def network_id(self, name: str) -> str | None:
        return name if name in self.networks_made else None

    def networks(self, labels: Mapping[str, str | None]) -> list[str]:
        def match(config: NetworkConfig) -> bool:
            return all(k in config.labels and (v is None or config.labels[k] == v) for k, v in labels.items())

        return [name for name, config in self.networks_made.items() if match(config)]

    def create_network(self, config: NetworkConfig) -> str:
        self._check("create_network")
        self.networks_made[config.name] = config
        return config.name

    def remove_network(self, name: str) -> None:
        self.networks_made.pop(name, None)

    def close(self) -> None:
        self.closed = True


def _is_an_engine(fake: FakeEngine) -> Engine:
    return fake  # mypy checks that the fake keeps up with the Engine protocol
