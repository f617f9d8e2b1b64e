# -*- test-case-name: chatd.test.test_datadir -*-
"""
The data directory: where one chatd node keeps what must outlive a restart.

Layout, all created on first start::

    <data-dir>/              mode 0700; refused when open to other users
        at-rest.key          mode 0600: at-rest keys, one per line, newest first
        chatd.sqlite         mode 0600, with its -journal: the default
                             SQLite store (made by L{chatd.store})
        tls/                 mode 0700
            server.key       mode 0600: the listener's private key (EC P-256, PEM)
            server.crt       its self-signed certificate (PEM, ten years)

Everything here runs synchronously, before the reactor starts, from
L{chatd.tap.makeService}: nothing can be served until these files exist, so there
is nothing for the reactor to do in the meantime and no reason to defer the work.

Rotating the at-rest key: put a new key (C{python -c "from chatd.store.seal import
generateKey; print(generateKey().decode())"}, the format of
C{Fernet.generate_key()}) on a line of its own at the top of C{at-rest.key}
and restart. New messages are sealed with the first key; every key in the file
opens what it sealed, so older rows stay readable. Drop an old key only once
nothing sealed with it is left: chatd refuses to start while stored messages
name a key the file does not hold. Lines that are empty or start with C{#} are
ignored, so keys can be annotated.

The key file is made only where none exists. Once made, it is the only way to
read the history it sealed, so keep a copy of it: a database whose key file
is lost or replaced is refused at start by the store
(L{chatd.store.keycheck}), naming the file, rather than served with its
history unreadable.
"""

import datetime
import ipaddress
import os
import socket
import stat
from dataclasses import dataclass
from typing import List

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chatd.startup import StartupError
from chatd.store.seal import AtRestKeys, generateKey

KEY_FILE = "at-rest.key"
TLS_DIRECTORY = "tls"
PRIVATE_KEY_FILE = os.path.join(TLS_DIRECTORY, "server.key")
CERTIFICATE_FILE = os.path.join(TLS_DIRECTORY, "server.crt")

CERTIFICATE_LIFETIME = datetime.timedelta(days=3650)


class DataDirError(StartupError):
    """
    The data directory cannot be used as it is; the message says what to fix.
    """


@dataclass(frozen=True)
class DataDir:
    """
    A prepared data directory.

    @ivar path: the directory, as configured.
    @ivar keys: seal and open data at rest: seal with the first key of
        L{keyFilePath}, open with any of them.
    @ivar certificatePath: the PEM certificate the default TLS listener presents.
    @ivar privateKeyPath: the PEM private key of L{certificatePath}.
    @ivar keyFilePath: the file of at-rest keys.
    """

    path: str
    keys: AtRestKeys
    certificatePath: str
    privateKeyPath: str
    keyFilePath: str


def tlsPaths(path):
    """
    Where a data directory keeps its TLS private key and certificate, whether or
    not they exist yet; the default listener's endpoint string is built from
    these before L{prepare} has made them.

    @return: C{(privateKeyPath, certificatePath)}
    """
    return os.path.join(path, PRIVATE_KEY_FILE), os.path.join(path, CERTIFICATE_FILE)


def prepare(path, keyFile=None):
    """
    Create whatever is missing in the data directory at C{path} and load its
    at-rest keys.

    @param keyFile: the file of at-rest keys to use instead of the data
        directory's own C{at-rest.key}; it must exist, since the nodes of a
        cluster share one (a node making a key of its own could not read the
        others' history).

    @raise DataDirError: when the directory or a key file is open to other
        users, or the key file holds no usable key, or a file or directory
        cannot be read or made.
    @return: a L{DataDir}
    """
    try:
        return _prepare(path, keyFile)
    except OSError as e:
        raise DataDirError("cannot use the data directory %s: %s: %s"
                           % (path, e.filename or path, e.strerror or e)) from None


def _prepare(path, keyFile):
    """
    The work of L{prepare}.
    """
    os.makedirs(path, mode=0o700, exist_ok=True)
    _checkPrivateDirectory(path)
    if keyFile is not None:
        keyFilePath = keyFile
        if not os.path.exists(keyFilePath):
            raise DataDirError("key file %s does not exist: copy the cluster's at-rest.key "
                               "there (mode 0600)" % (keyFilePath,))
    else:
        keyFilePath = os.path.join(path, KEY_FILE)
    keys = _loadAtRestKeys(keyFilePath)
    os.makedirs(os.path.join(path, TLS_DIRECTORY), mode=0o700, exist_ok=True)
    privateKeyPath, certificatePath = tlsPaths(path)
    _ensureCertificate(privateKeyPath, certificatePath)
    return DataDir(
        path=path,
        keys=keys,
        certificatePath=certificatePath,
        privateKeyPath=privateKeyPath,
        keyFilePath=keyFilePath,
    )


def _checkPrivateDirectory(path):
    """
    Refuse a data directory that other users may enter, list or write: the
    database, its journal and the TLS key inside it would be theirs to read or
    replace, whatever the mode of each file.
    """
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise DataDirError(
            "data directory %s is open to other users (mode %04o); it holds the "
            "database and keys and must be accessible by its owner only: "
            "chmod 700 it" % (path, mode)
        )


def _createExclusively(path, content):
    """
    Write a new file that only its owner can read, such that no reader (another
    chatd starting at the same moment, or this one after a crash) ever sees it
    half written: the content goes to a private temporary file, which is then
    hard-linked to C{path}; the link fails rather than replace a file that
    appeared in the meantime.

    @return: C{True} if this call created C{path}, C{False} if it already
        existed (the caller reads the existing one).
    """
    temporary = "%s.new-%d" % (path, os.getpid())
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(temporary)
    return True


def _readPrivateFile(path):
    """
    Read a secret file, refusing one that other users may read or write: its
    secrets must be assumed leaked, and silently carrying on would hide that.
    """
    with open(path, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if mode & 0o077:
            raise DataDirError(
                "%s is open to other users (mode %04o); it holds secrets and must "
                "be readable by its owner only: chmod 600 it (and consider the "
                "keys in it leaked)" % (path, stat.S_IMODE(mode))
            )
        return f.read()


def _loadAtRestKeys(path):
    """
    Load the at-rest keys, creating the file with one new key on first start.
    """
    created = not os.path.exists(path) and _createExclusively(path, generateKey() + b"\n")
    keys = []
    for number, line in enumerate(_readPrivateFile(path).splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        try:
            AtRestKeys([line])
        except ValueError:
            raise DataDirError(
                "%s, line %d: not an at-rest key (32 url-safe base64-encoded bytes)"
                % (path, number)
            )
        keys.append(line)
    if not keys:
        raise DataDirError("%s holds no key" % (path,))
    try:
        return AtRestKeys(keys, source=path, created=created)
    except ValueError as e:
        raise DataDirError("%s: %s" % (path, e))


def _loadPrivateKey(path):
    """
    Load the listener's private key.
    """
    try:
        return serialization.load_pem_private_key(
            _readPrivateFile(path), password=None
        )
    except (ValueError, TypeError) as e:
        raise DataDirError("%s is not an unencrypted PEM private key: %s" % (path, e))


def _ensureCertificate(privateKeyPath, certificatePath):
    """
    Make a private key if there is none, and a self-signed certificate for it if
    there is none (or the key is new), so that deleting either file renews it.
    """
    newKey = False
    if os.path.exists(privateKeyPath):
        key = _loadPrivateKey(privateKeyPath)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        newKey = _createExclusively(privateKeyPath, pem)
        if not newKey:
            key = _loadPrivateKey(privateKeyPath)
    if newKey or not os.path.exists(certificatePath):
        certificate = selfSignedCertificate(key, socket.gethostname())
        temporary = "%s.new-%d" % (certificatePath, os.getpid())
        with open(temporary, "wb") as f:
            f.write(certificate.public_bytes(serialization.Encoding.PEM))
        os.replace(temporary, certificatePath)


def selfSignedCertificate(key, hostName):
    """
    A certificate for C{key}, signed by C{key}, naming this machine.

    It is a leaf (C{CA:FALSE}, for server authentication only): a client can
    trust exactly this certificate (C{--ca server.crt}) and still check the host
    name, besides pinning it on first use, but its key cannot vouch for any
    other certificate, so a stolen copy of it cannot mint certificates for
    other names that a client trusting it would accept.

    @param hostName: this machine's name: the subject's common name and, with
        C{localhost}, C{127.0.0.1} and C{::1}, a subject alternative name.
    @return: an L{x509.Certificate} valid from an hour ago for ten years.
    """
    names: List[x509.GeneralName] = [x509.DNSName("localhost")]
    if hostName and hostName.isascii() and hostName.lower() != "localhost":
        names.append(x509.DNSName(hostName))
    names += [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    commonName = hostName if 0 < len(hostName) <= 64 else "localhost"
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName)])
    now = datetime.datetime.now(datetime.timezone.utc)
    publicKey = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(publicKey)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + CERTIFICATE_LIFETIME)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(publicKey), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(publicKey),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
