"""Certificates made at test time with Debian's ``openssl`` (no key is ever committed), and
TLS clients for the tests of TLS and WebSocket-over-TLS listeners."""

from __future__ import annotations

import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

#: ECDSA P-256 everywhere: what most deployments use today, and cheap to make.
KEY_ARGS = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"openssl {' '.join(args)}: {proc.stderr}"


@dataclass
class Pki:
    """A CA and what it signed, as PEM files in ``dir``."""
    dir: Path

    @property
    def ca(self) -> str:
        return str(self.dir / "ca.crt")

    def ca_named(self, name: str) -> str:
        return str(self.dir / f"{name}.crt")


def make_ca(dir: Path, name: str = "ca", cn: str = "Starling Test CA") -> str:
    """A self-signed CA ``name``.crt/.key in ``dir``; returns the certificate's path."""
    dir.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", *KEY_ARGS, "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-days", "30", "-subj", f"/CN={cn}", cwd=dir)
    return str(dir / f"{name}.crt")


def make_cert(dir: Path, name: str, cn: str, ca: str = "ca", days: int = 20,
              sans: Optional[str] = None, client: bool = False) -> tuple:
    """A certificate ``name``.crt/.key for ``cn`` signed by CA ``ca`` (in ``dir``), valid for
    ``days`` from now (negative: expired that long ago); returns (cert, key) paths."""
    _openssl("req", *KEY_ARGS, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={cn}", cwd=dir)
    ext = dir / f"{name}.ext"
    lines = ["basicConstraints=CA:FALSE"]
    if sans:
        lines.append(f"subjectAltName={sans}")
    lines.append("extendedKeyUsage=" + ("clientAuth" if client else "serverAuth"))
    ext.write_text("\n".join(lines) + "\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", str(days), "-extfile", ext.name,
             cwd=dir)
    return str(dir / f"{name}.crt"), str(dir / f"{name}.key")


def make_server_pki(dir: Path, days: int = 20) -> Pki:
    """A CA and a server certificate for 127.0.0.1 and localhost (``server.crt``/``.key``)."""
    make_ca(dir)
    make_cert(dir, "server", "localhost", days=days, sans="DNS:localhost,IP:127.0.0.1")
    return Pki(dir)


def client_context(ca: str, cert: Optional[str] = None, key: Optional[str] = None,
                   version: Optional[ssl.TLSVersion] = None,
                   alpn: Optional[list] = None) -> ssl.SSLContext:
    """A client context trusting ``ca`` (with a client certificate if given)."""
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_connect(host: str, port: int, ctx: ssl.SSLContext, timeout: float = 5.0,
                session: Optional[ssl.SSLSession] = None) -> ssl.SSLSocket:
    """A TLS socket to ``host:port`` past its handshake (which raises on failure)."""
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=host, session=session)
    except BaseException:
        raw.close()
        raise


def subject_cn(sock: ssl.SSLSocket) -> str:
    """The common name of the certificate the server presented."""
    cert = sock.getpeercert()
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return ""


def tls_raw_client(host: str, port: int, ctx: ssl.SSLContext, timeout: float = 5.0,
                   session: Optional[ssl.SSLSession] = None):
    """A ``RawClient`` speaking MQTT bytes over TLS."""
    from mqtt_packets import RawClient

    class TlsRawClient(RawClient):
        def __init__(self):  # noqa: D401 - the TLS socket replaces RawClient's plain one
            self.host, self.port, self.default_timeout = host, port, timeout
            self.sock = tls_connect(host, port, ctx, timeout, session)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._buf = bytearray()
            import collections
            self._pending = collections.deque()
            self._eof = False
            self._next_id = 0

        def _fill(self, deadline: float) -> bool:
            # Decrypted bytes already in the TLS layer do not make the socket readable.
            if self.sock.pending():
                self._buf += self.sock.recv(self.sock.pending())
                return True
            return super()._fill(deadline)

    return TlsRawClient()
