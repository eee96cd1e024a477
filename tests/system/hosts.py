"""Separate hosts on this one machine without containers: Linux namespaces, as root.

A :class:`HostNetwork` is a bridge in the root network namespace with an address of its own (the
"cluster network"); each :class:`Host` is a network namespace joined to the bridge by a veth pair,
with its own address, and every command it runs gets a mount namespace of its own in which ``/tmp``
is a fresh tmpfs (so its Airflow home, its task scratch files and anything a task leaves in /tmp are
invisible to every other host), and a UTS namespace with the host's name as hostname. The machine's
own services, which listen on loopback only, are offered on the bridge address by
:class:`TcpForwarder`, so a host reaches PostgreSQL and Redis the way a cluster node reaches a
database server: over the network.

Everything is removed in :meth:`HostNetwork.close` (the processes left in each namespace are
SIGKILLed by pid, the namespaces, veths and bridge deleted), which the fixture calls in a ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from claude_demo.run import REPO

# Namespaces, veths and the bridge of one test all carry this prefix and a random tag.
NAME_PREFIX = "cb"
STAGING_ROOT = Path("/run/claude-batch-hosts")
# The private /tmp is mounted at a staging point first, the paths a host must still see (a checkout
# or venv under /tmp) bound into it, and then moved over /tmp.
_HOST_SETUP = """
set -eu
stage=$1; name=$2; keep=$3; shift 3
mount -t tmpfs -o mode=1777 "tmpfs-$name" "$stage"
IFS=:
for path in $keep; do
    mkdir -p "$stage${path#/tmp}"
    mount --bind "$path" "$stage${path#/tmp}"
done
unset IFS
mount --move "$stage" /tmp
hostname "$name"
exec "$@"
"""


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def namespaces_supported() -> str | None:
    """Why hosts cannot be made here (not root, no ``ip``/``unshare``), or None when they can."""
    if os.geteuid() != 0:
        return "the multi-host test creates network namespaces: it needs root"
    missing = [tool for tool in ("ip", "unshare", "mount", "hostname") if not shutil.which(tool)]
    return f"missing {', '.join(missing)} (iproute2, util-linux)" if missing else None


def _visible_paths() -> list[str]:
    """What the hosts must see that lies under /tmp: the checkout and the Python environment."""
    wanted = {REPO.resolve(), Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    under_tmp = sorted(p for p in wanted if p.is_relative_to("/tmp") and p != Path("/tmp"))
    # A path inside another kept path comes along with it.
    return [str(p) for p in under_tmp if not any(p != q and p.is_relative_to(q) for q in under_tmp)]


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.213.0.0/16 that no network of this machine overlaps yet."""
    in_use = [
        ipaddress.ip_interface(line.split()[3]).network
        for line in ip("-4", "-o", "addr", "show").splitlines()
    ]
    candidates = list(ipaddress.ip_network("10.213.0.0/16").subnets(new_prefix=24))[1:-1]
    random.shuffle(candidates)
    for subnet in candidates:
        if not any(subnet.overlaps(network) for network in in_use):
            return subnet
    raise RuntimeError("no free /24 in 10.213.0.0/16 for the test hosts")


@dataclass
class Host:
    """One host: a network namespace with one address on the cluster network."""

    name: str
    namespace: str
    address: str
    staging: Path

    def command(self, *argv: str) -> list[str]:
        """``argv`` run on this host: its network, a private /tmp, its hostname."""
        return [
            "ip", "netns", "exec", self.namespace,
            "unshare", "--mount", "--uts", "--propagation", "private", "--",
            "sh", "-c", _HOST_SETUP, "host-setup", str(self.staging), self.name, ":".join(_visible_paths()),
            *argv,
        ]  # fmt: skip

    def pids(self) -> list[int]:
        return [int(pid) for pid in ip("netns", "pids", self.namespace).split()]

    def power_off(self) -> None:
        """SIGKILL every process of the host at once, as a lost machine ends them."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class HostNetwork:
    """The bridge (the cluster network) and the hosts on it. Use as a context manager."""

    tag: str = field(default_factory=lambda: f"{random.getrandbits(24):06x}")
    hosts: dict[str, Host] = field(default_factory=dict)
    forwarders: list[TcpForwarder] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bridge = f"{NAME_PREFIX}{self.tag}"
        self.subnet = _free_subnet()
        # The root namespace's address on the cluster network: where the shared services listen.
        self.address = str(self.subnet.network_address + 1)
        self.staging = STAGING_ROOT / self.tag
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.address}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def __enter__(self) -> HostNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_host(self, name: str) -> Host:
        index = len(self.hosts) + 1
        host = Host(
            name,
            namespace=f"{self.bridge}-{name}",
            address=str(self.subnet.network_address + 10 + index),
            staging=self.staging / name,
        )
        veth = f"{self.bridge}v{index}"
        ip("netns", "add", host.namespace)
        self.hosts[name] = host
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.namespace)
        ip("link", "set", veth, "master", self.bridge, "up")
        ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", host.namespace, "link", "set", "eth0", "up")
        ip("-n", host.namespace, "link", "set", "lo", "up")
        host.staging.mkdir(parents=True, exist_ok=True)
        return host

    def forward(self, target_port: int, target_host: str = "127.0.0.1") -> int:
        """Offer ``target_host:target_port`` (a loopback-only service) on the bridge; returns the port."""
        forwarder = TcpForwarder(self.address, (target_host, target_port))
        self.forwarders.append(forwarder)
        return forwarder.port

    def close(self) -> None:
        """Remove everything made, whatever state it is in; the machine is left as it was."""
        for host in self.hosts.values():
            with contextlib.suppress(subprocess.CalledProcessError):
                host.power_off()
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("netns", "del", host.namespace)  # takes its end of the veth, and so the pair, along
        with contextlib.suppress(subprocess.CalledProcessError):
            ip("link", "del", self.bridge)
        for forwarder in self.forwarders:
            forwarder.close()
        shutil.rmtree(self.staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            STAGING_ROOT.rmdir()  # only when no other run's staging is left in it


class TcpForwarder:
    """Accept on ``(listen_host, free port)`` and pipe each connection to ``target``, in a thread."""

    def __init__(self, listen_host: str, target: tuple[str, int]) -> None:
        self._target = target
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, listen_host, 0))
        self.port: int = self._server.sockets[0].getsockname()[1]
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"forward-{target[1]}", daemon=True
        )
        self._thread.start()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer)
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        async def shut() -> None:
            self._server.close()
            # Open connections (a killed host's) must not hold the loop: cancel their pipes.
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
