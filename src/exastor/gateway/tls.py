"""TLS for both endpoints: the operator's certificate, or a self-signed one for development.

``--tls self-signed`` makes, once, a private CA and a server certificate signed by it under
``DATA/tls`` (directory 0700, key 0600): clients trust ``ca.pem`` (``aws --ca-bundle``, boto3's
``verify=``, ``REQUESTS_CA_BUNDLE`` for azure-storage-blob). The CA's own key is thrown away once it
has signed, so nothing can mint more certificates from it. The server certificate names
``localhost``, the loopback addresses, this host's name and the address the server listens on;
delete ``DATA/tls`` to make new ones (for example after changing ``--host``).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from pathlib import Path

from exastor.datadir.files import write_private

TLS_DIR = "tls"
VALID_DAYS = 825  # the longest validity Apple's and browsers' clients accept for a server certificate


def self_signed(data: Path, host: str) -> tuple[Path, Path, Path, bool]:
    """(certificate, key, CA to trust, generated now) under ``DATA/tls``, made if missing."""
    folder = data / TLS_DIR
    cert, key, ca = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    if cert.exists() and key.exists() and ca.exists():  # not a drive: certificates in --data
        return cert, key, ca, False
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # not a drive: certificates in --data
    os.chmod(folder, 0o700)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"exastor development CA ({socket.gethostname()})")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                     x509.IPAddress(ipaddress.ip_address("::1"))]
    hostname = socket.gethostname()
    if hostname and hostname != "localhost":
        names.append(x509.DNSName(hostname))
    if host not in ("0.0.0.0", "::", "127.0.0.1", "::1", "localhost", ""):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "exastor")]))
                   .issuer_name(ca_name).public_key(server_key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.SubjectAlternativeName(names), critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=False, crl_sign=False, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False)
                   .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    write_private(key, server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    write_private(cert, server_cert.public_bytes(pem) + ca_cert.public_bytes(pem))  # the chain: server, then CA
    write_private(ca, ca_cert.public_bytes(pem))
    return cert, key, ca, True
