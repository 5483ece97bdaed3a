"""fedleak deploy certs: a CA, a SuperLink certificate that TLS clients accept for every name
they dial, SuperNode keys in the format Flower loads, private files 0600, nothing overwritten."""

from __future__ import annotations

import socket
import ssl
import stat
import subprocess
import sys
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key
from flwr.supercore.primitives.asymmetric import uses_nist_ec_curve

from fedleak.core.errors import FedleakError
from fedleak.deploy.certs import write_certificates


def _handshake(files, name: str) -> None:
    """A TLS handshake over a socket pair: the SuperLink's certificate, verified with the CA for ``name``."""
    server_side, client_side = socket.socketpair()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files.superlink_certificate, files.superlink_key)
    client = ssl.create_default_context(cafile=str(files.ca_certificate))

    def serve():
        try:
            with server.wrap_socket(server_side, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass  # the client's verdict is what is tested

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(client_side, server_hostname=name):
            pass
    finally:
        thread.join(5)


def test_the_certificates_verify_for_every_name_clients_dial(tmp_path):
    files = write_certificates(tmp_path / "certs", hosts=["10.0.0.5", "link.example.org"], supernodes=3)
    for name in ("superlink", "localhost", "127.0.0.1", "10.0.0.5", "link.example.org"):
        _handshake(files, name)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(files, "10.0.0.6")  # a name the certificate does not carry
    sans = x509.load_pem_x509_certificate(files.superlink_certificate.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert sorted(map(str, sans.get_values_for_type(x509.IPAddress))) == ["10.0.0.5", "127.0.0.1"]


def test_supernode_keys_load_as_flower_loads_them_and_private_files_are_0600(tmp_path):
    files = write_certificates(tmp_path / "certs", supernodes=2)
    assert stat.S_IMODE((tmp_path / "certs").stat().st_mode) == 0o700
    for private, public in files.supernode_keys:
        key = load_ssh_private_key(private.read_bytes(), None)
        shared = load_ssh_public_key(public.read_bytes())
        assert isinstance(key, ec.EllipticCurvePrivateKey) and uses_nist_ec_curve(shared)
        assert key.public_key().public_numbers() == shared.public_numbers()
    for path in files.all():
        private = path.suffix not in (".crt", ".pub")
        assert stat.S_IMODE(path.stat().st_mode) == (0o600 if private else 0o644), path


def test_nothing_is_overwritten_unless_the_keys_are_rotated(tmp_path):
    first = write_certificates(tmp_path, supernodes=1)
    old = first.supernode_keys[0][1].read_bytes()
    with pytest.raises(FedleakError, match="exists .* pass --replace"):
        write_certificates(tmp_path, supernodes=1)
    assert first.supernode_keys[0][1].read_bytes() == old
    rotated = write_certificates(tmp_path, supernodes=1, replace=True)
    assert rotated.supernode_keys[0][1].read_bytes() != old


def test_a_bad_host_is_one_line_and_exit_2_before_anything_is_written(tmp_path):
    done = subprocess.run([sys.executable, "-m", "fedleak", "deploy", "certs", str(tmp_path / "c"), "--host", "a b"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr == "error: --host: 'a b' is neither an IP address nor a DNS name\n"
    assert not (tmp_path / "c").exists()
