"""The settings of a DICOM node: who may send, where results go, how the queue behaves; from a YAML file or the CLI.

A node is configured by :class:`NodeConfig`. ``xray-seg listen --config node.yaml`` reads the same keys as the
command-line options (dashes or underscores), and options given on the command line win over the file::

    model: /opt/xray-seg/model.pt
    out: /var/lib/xray-seg
    ae_title: XRAYSEG
    port: 11112
    bind: 0.0.0.0
    allow: [ORTHANC@10.0.0.5, CR_ROOM1]
    forward: [dimse://ORTHANC@10.0.0.5:4242]
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["AllowRule", "Destination", "NodeConfig", "load_config_file", "parse_allow", "parse_destination"]

_AET = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII except backslash, at most 16 characters


def _check_ae_title(title: str, what: str) -> str:
    title = title.strip()
    if not _AET.match(title) or not title:
        raise ValueError(f"{what} {title!r} is not a valid AE title (1-16 printable ASCII characters, no backslash).")
    return title


@dataclass(frozen=True)
class AllowRule:
    """One entry of ``--allow``: a calling AE title, optionally bound to the host it must connect from.

    Attributes:
        ae_title: the calling AE title (exact, case-sensitive as DICOM compares them), or ``*`` for any.
        host: an IP address, a network in CIDR notation (``10.0.0.0/24``), or ``None`` for any host.
    """

    ae_title: str
    host: str | None = None

    def matches(self, ae_title: str, address: str) -> bool:
        """True when an association from ``ae_title`` at ``address`` is allowed by this rule."""
        if self.ae_title != "*" and ae_title.strip() != self.ae_title:
            return False
        if self.host is None:
            return True
        try:
            return ipaddress.ip_address(address) in ipaddress.ip_network(self.host, strict=False)
        except ValueError:
            return address == self.host

    def __str__(self) -> str:
        return self.ae_title + (f"@{self.host}" if self.host else "")


def parse_allow(text: str) -> AllowRule:
    """``AET`` or ``AET@HOST`` (HOST: an IP address or CIDR network) → :class:`AllowRule`.

    Raises:
        ValueError: an invalid AE title or host.
    """
    title, sep, host = str(text).rpartition("@") if "@" in str(text) else (str(text), "", "")
    title = "*" if title.strip() == "*" else _check_ae_title(title, "--allow")
    host = host.strip() or None
    if sep and host is None:
        raise ValueError(f"--allow {text!r}: nothing after '@' (write AET or AET@HOST).")
    if host is not None:
        try:
            ipaddress.ip_network(host, strict=False)
        except ValueError:
            raise ValueError(
                f"--allow {text!r}: {host!r} is not an IP address or network; give the sender's address "
                "(e.g. ORTHANC@10.0.0.5 or CR_ROOM@10.0.1.0/24)."
            ) from None
    return AllowRule(title, host)


@dataclass(frozen=True)
class Destination:
    """Where SEGs are sent: a DICOM peer (C-STORE) or a DICOMweb server (STOW-RS).

    Attributes:
        url: the destination as written (``dimse://AET@HOST:PORT`` or ``http(s)://HOST:PORT/dicom-web``).
        kind: ``"dimse"`` or ``"stow"``.
        ae_title: the called AE title (DIMSE).
        host: host name or address.
        port: port.
        base_url: the DICOMweb root (STOW-RS posts to ``<base_url>/studies``).
    """

    url: str
    kind: str
    host: str
    port: int
    ae_title: str = ""
    base_url: str = ""

    def __str__(self) -> str:
        return self.url


def parse_destination(text: str) -> Destination:
    """``dimse://AET@HOST:PORT`` or ``http(s)://HOST[:PORT]/path/to/dicom-web`` → :class:`Destination`.

    Raises:
        ValueError: any other form.
    """
    text = str(text).strip()
    parts = urlsplit(text)
    if parts.scheme == "dimse":
        if not parts.username or not parts.hostname or not parts.port:
            raise ValueError(f"--forward {text!r}: write dimse://AET@HOST:PORT (e.g. dimse://ORTHANC@10.0.0.5:4242).")
        title = _check_ae_title(parts.username, "--forward")
        return Destination(text, "dimse", parts.hostname, int(parts.port), ae_title=title)
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise ValueError(f"--forward {text!r}: no host (e.g. http://10.0.0.5:8042/dicom-web).")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return Destination(text, "stow", parts.hostname, port, base_url=text.rstrip("/"))
    raise ValueError(
        f"--forward {text!r}: unknown scheme; use dimse://AET@HOST:PORT (C-STORE) or http(s)://HOST:PORT/dicom-web "
        "(STOW-RS)."
    )


@dataclass
class NodeConfig:
    """Everything a :class:`~pipeline.node.DicomNode` needs.

    Attributes:
        model: checkpoint path or MLflow model URI.
        out: the node's folder (``incoming/``, ``queue/`` and the batch results in ``results/``).
        ae_title: the node's own AE title (the called AE title senders must use).
        port: DICOM port to listen on.
        bind: address to listen on (loopback unless set).
        allow: accepted callers; empty = any caller.
        forward: destinations of the SEGs (and overlay Secondary Captures).
        overlay_sc: also send a Secondary Capture of the overlay.
        workers: DataLoader worker processes decoding received images (0 = in the processing thread).
        batch_size: most images per model call.
        gather_s: how long to wait for more images once one arrived, to batch images arriving together.
        device: torch device (``None`` = CUDA when available).
        overrides: bundle config overrides for a checkpoint path (as ``xray-seg predict --override``).
        selection: selection rules file (``None`` = the project's defaults).
        min_free_mb: refuse instances (out of resources) when the disk holding ``out`` has less free space.
        retry_initial_s: first delay after a failed delivery; doubled after each failure.
        retry_max_s: longest delay between delivery attempts.
        max_pdu: maximum PDU size the node receives (0 = unlimited).
        network_timeout_s: DIMSE/ACSE/network timeouts, and the HTTP timeout of STOW-RS.
    """

    model: str = ""
    out: Path = Path("xray-seg-node")
    ae_title: str = "XRAYSEG"
    port: int = 11112
    bind: str = "127.0.0.1"
    allow: list[AllowRule] = field(default_factory=list)
    forward: list[Destination] = field(default_factory=list)
    overlay_sc: bool = False
    workers: int = 0
    batch_size: int = 4
    gather_s: float = 0.3
    device: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    selection: Path | None = None
    min_free_mb: float = 256.0
    retry_initial_s: float = 2.0
    retry_max_s: float = 60.0
    max_pdu: int = 0
    network_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.ae_title = _check_ae_title(self.ae_title, "--ae-title")
        self.allow = [a if isinstance(a, AllowRule) else parse_allow(a) for a in self.allow]
        self.forward = [d if isinstance(d, Destination) else parse_destination(d) for d in self.forward]
        if not 0 < int(self.port) < 65536:
            raise ValueError(f"--port {self.port}: must be 1-65535.")
        if self.batch_size < 1 or self.workers < 0:
            raise ValueError("--batch-size must be >= 1 and --workers >= 0.")
        if self.retry_initial_s <= 0 or self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry delays must be positive, with retry_max_s >= retry_initial_s.")
        if self.selection is not None:
            self.selection = Path(self.selection)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> NodeConfig:
        """Build from a mapping with the attribute names (dashes accepted for underscores).

        Raises:
            ValueError: an unknown key (a typo in a config file should not be ignored).
        """
        known = {f.name for f in fields(cls)}
        clean = {str(k).replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(clean) - known)
        if unknown:
            raise ValueError(f"unknown node settings {unknown}; known: {sorted(known)}.")
        for key in ("allow", "forward"):
            if isinstance(clean.get(key), str):
                clean[key] = [clean[key]]
        return cls(**clean)

    def allows(self, ae_title: str, address: str) -> bool:
        """True when a caller may associate (always, when no ``allow`` rules are set)."""
        return not self.allow or any(rule.matches(ae_title, address) for rule in self.allow)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON) node configuration file into a plain mapping.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a mapping.
    """
    import yaml

    path = Path(path)
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: a node configuration must be a mapping of settings, got {type(data).__name__}.")
    return dict(data)
