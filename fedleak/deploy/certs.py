"""Certificates and keys of a deployment: TLS for the SuperLink, keys for SuperNode authentication.

What Flower 1.41's deployment runtime reads (``../shared/design/DEPLOYMENT-NOTES.md``):

* TLS: the SuperLink serves with ``--ssl-ca-certfile ca.crt --ssl-certfile superlink.crt
  --ssl-keyfile superlink.key``; SuperNodes, SuperExecs and the ``flwr`` CLI verify it with
  ``ca.crt``. The SuperLink certificate names every address clients dial in its subject
  alternative names: the compose service name ``superlink``, ``localhost``, ``127.0.0.1`` and
  the hosts given (another machine's IP or DNS name, when the clients run there).
* SuperNode authentication (``--enable-supernode-auth``): one ECDSA P-384 key pair per
  SuperNode in OpenSSH format (what ``ssh-keygen -t ecdsa -b 384`` writes and Flower loads);
  the public key is registered with ``flwr supernode register``, the private one given to
  ``flower-supernode --auth-supernode-private-key``.

Private keys are written 0600, certificates and public keys 0644; with ``owner`` every file
is given that uid (Flower's images run as ``app``, uid 49999). Nothing is overwritten unless
asked: rotating keys is writing a new set (``replace``) and registering the new public keys.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedleak.core.errors import FedleakError

SERVICE_NAMES = ("superlink", "localhost")
"""DNS names every SuperLink certificate carries (the compose service, the local machine)."""

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
"""A DNS name: dot-separated labels of letters, digits and inner hyphens (RFC 1123)."""


@dataclass(frozen=True)
class DeploymentCertificates:
    """The files written (paths), by role."""

    ca_certificate: Path
    ca_key: Path
    superlink_certificate: Path
    superlink_key: Path
    supernode_keys: tuple[tuple[Path, Path], ...]
    """(private, public) per SuperNode, in order."""

    def all(self) -> list[Path]:
        return [self.ca_certificate, self.ca_key, self.superlink_certificate, self.superlink_key,
                *(path for pair in self.supernode_keys for path in pair)]


def planned_files(directory: Path, supernodes: int) -> DeploymentCertificates:
    """Where :func:`write_certificates` puts each file."""
    keys = tuple((directory / f"supernode-{i}", directory / f"supernode-{i}.pub") for i in range(supernodes))
    return DeploymentCertificates(directory / "ca.crt", directory / "ca.key", directory / "superlink.crt",
                                  directory / "superlink.key", keys)


def subject_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """The SuperLink certificate's alternative names: the service names, 127.0.0.1 and ``hosts``.

    Raises:
        FedleakError: a host is neither an IP address nor a DNS name (one line naming it).
    """
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in SERVICE_NAMES]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    for host in hosts:
        try:
            name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            if not _HOSTNAME.match(host):
                raise FedleakError(f"--host: '{host}' is neither an IP address nor a DNS name") from None
            name = x509.DNSName(host)
        if name not in names:
            names.append(name)
    return names


def write_certificates(directory: Path, hosts: Sequence[str] = (), supernodes: int = 2, days: int = 365,
                       owner: int | None = None, replace: bool = False) -> DeploymentCertificates:
    """Write a CA, the SuperLink's certificate and key, and ``supernodes`` key pairs into ``directory``.

    Parameters
    ----------
    directory : Path
        Made (0700) if missing.
    hosts : Sequence[str]
        Further addresses clients dial the SuperLink at (IP addresses or DNS names).
    supernodes : int
        How many SuperNode key pairs.
    days : int
        Validity of the certificates.
    owner : int | None
        A uid to give every file (49999: the ``app`` user of Flower's and fedleak's images); needs
        the right to ``chown``.
    replace : bool
        Overwrite files already there (a key rotation); otherwise they are refused.

    Returns
    -------
    DeploymentCertificates
        The paths written.

    Raises:
        FedleakError: a bad argument, a file already there, or a ``chown`` refused (one line each,
            before anything is written where the arguments are at fault).
    """
    if not 1 <= supernodes <= 1000:
        raise FedleakError(f"--supernodes: expected 1..1000, got {supernodes}")
    if not 1 <= days <= 3650:
        raise FedleakError(f"--days: expected 1..3650, got {days}")
    names = subject_names(hosts)
    files = planned_files(Path(directory), supernodes)
    present = [path for path in files.all() if path.exists()]
    if present and not replace:
        raise FedleakError(f"{present[0]} exists (and {len(present) - 1} more): pass --replace to rotate the keys")
    _make_folder(Path(directory))
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = _certificate(_name("fedleak deployment CA"), _name("fedleak deployment CA"), ca_key.public_key(), ca_key,
                      days, ca=True)
    link_key = ec.generate_private_key(ec.SECP384R1())
    link = _certificate(_name("superlink"), ca.subject, link_key.public_key(), ca_key, days, ca=False, names=names)
    _write(files.ca_certificate, ca.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(files.ca_key, _pem(ca_key), 0o600)
    _write(files.superlink_certificate, link.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(files.superlink_key, _pem(link_key), 0o600)
    for private, public in files.supernode_keys:
        key = ec.generate_private_key(ec.SECP384R1())
        _write(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()), 0o600)
        _write(public, key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH) + b"\n", 0o644)
    if owner is not None:
        _give(files.all(), owner)
    return files


def _make_folder(directory: Path) -> None:
    """Create ``directory`` (0700) if missing and check that files can be made in it, before any
    key is generated: a folder that cannot be made or written is one line, not a traceback.

    Raises:
        FedleakError: it is a file, cannot be created (no such parent, read-only, no permission)
            or is not writable.
    """
    if directory.exists() and not directory.is_dir():
        raise FedleakError(f"{directory} is a file; expected a folder for the certificates")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise FedleakError(f"{directory}: cannot create it: {error.strerror or error}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise FedleakError(f"{directory}: not writable")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
                 signing_key: ec.EllipticCurvePrivateKey, days: int, ca: bool,
                 names: list[x509.GeneralName] | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        builder = (builder.add_extension(x509.SubjectAlternativeName(names or []), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    return builder.sign(signing_key, hashes.SHA384())


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` with ``mode`` from the first byte (a private key is never readable by others)."""
    try:
        path.unlink(missing_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.chmod(path, mode)  # the umask may have taken bits away
    except OSError as error:  # e.g. the disk full, or a folder in the file's place
        raise FedleakError(f"{path}: cannot write it: {error.strerror or error}") from None


def _give(paths: list[Path], owner: int) -> None:
    try:
        for path in paths:
            os.chown(path, owner, owner)
    except PermissionError:
        raise FedleakError(f"--owner {owner}: not allowed to chown {path} (run as root, or "
                           f"'sudo chown {owner}:{owner} {path.parent}/*')") from None
