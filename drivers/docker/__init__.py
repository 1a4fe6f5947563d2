"""The ``docker`` driver: Docker Engine over its API (docker-py), a private dockerd per run."""

from isobench.drivers.docker.driver import DockerDriver

DRIVER = DockerDriver

__all__ = ["DRIVER", "DockerDriver"]
