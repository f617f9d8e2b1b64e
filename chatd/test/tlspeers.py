"""
TLS clients over memory buffers, for testing chatd's TLS listeners against
OpenSSL builds other than the server's own.

L{SystemClient} drives the system's C{libssl} through C{ctypes}: another
OpenSSL version than the one in cryptography's wheel, and the only one here
with C{SSL_key_update}, which neither pyOpenSSL nor cryptography's bindings
have. L{PyOpenSSLClient} is what chatd's own client uses.
"""

import ctypes
import ctypes.util
from typing import List, Optional

from cryptography.hazmat.bindings.openssl.binding import Binding
from OpenSSL import SSL

_binding = Binding()

WANT_READ = 2
ZERO_RETURN = 6
TLS1_2_VERSION = 0x0303
_SET_MAX_PROTO_VERSION = 124


class PeerError(Exception):
    """
    The client's TLS failed (the server's alert, a record that did not open).
    """


class Closed(Exception):
    """
    The server sent close_notify (L{SystemClient.read} and
    L{PyOpenSSLClient.read} say so in their C{closed} instead).
    """


def _systemLibraries():
    """
    The system's libssl with the signatures used here, or C{None}.
    """
    sslName, cryptoName = ctypes.util.find_library("ssl"), ctypes.util.find_library("crypto")
    if not sslName or not cryptoName:
        return None
    ssl, crypto = ctypes.CDLL(sslName), ctypes.CDLL(cryptoName)
    if not hasattr(ssl, "SSL_key_update"):
        return None
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    for library, name, result, arguments in [
        (ssl, "TLS_client_method", pointer, []),
        (ssl, "SSL_CTX_new", pointer, [pointer]),
        (ssl, "SSL_CTX_free", None, [pointer]),
        (ssl, "SSL_CTX_ctrl", ctypes.c_long, [pointer, integer, ctypes.c_long, pointer]),
        (ssl, "SSL_CTX_set_ciphersuites", integer, [pointer, ctypes.c_char_p]),
        (ssl, "SSL_new", pointer, [pointer]),
        (ssl, "SSL_free", None, [pointer]),
        (ssl, "SSL_set_bio", None, [pointer, pointer, pointer]),
        (ssl, "SSL_set_connect_state", None, [pointer]),
        (ssl, "SSL_do_handshake", integer, [pointer]),
        (ssl, "SSL_get_error", integer, [pointer, integer]),
        (ssl, "SSL_write", integer, [pointer, ctypes.c_char_p, integer]),
        (ssl, "SSL_read", integer, [pointer, ctypes.c_char_p, integer]),
        (ssl, "SSL_key_update", integer, [pointer, integer]),
        (ssl, "SSL_shutdown", integer, [pointer]),
        (crypto, "BIO_s_mem", pointer, []),
        (crypto, "BIO_new", pointer, [pointer]),
        (crypto, "BIO_write", integer, [pointer, ctypes.c_char_p, integer]),
        (crypto, "BIO_read", integer, [pointer, ctypes.c_char_p, integer]),
        (crypto, "ERR_clear_error", None, []),
    ]:
        function = getattr(library, name)
        function.restype = result
        function.argtypes = arguments
    return ssl, crypto


SYSTEM = _systemLibraries()


class SystemClient:
    """
    A TLS client made with the system's libssl.

    @ivar closed: whether the server's close_notify has been read.
    """

    closed = False

    def __init__(self, suites: Optional[bytes] = None, tls12: bool = False) -> None:
        assert SYSTEM is not None
        self._ssl, self._crypto = SYSTEM
        self._context = self._ssl.SSL_CTX_new(self._ssl.TLS_client_method())
        if suites is not None:
            assert self._ssl.SSL_CTX_set_ciphersuites(self._context, suites) == 1
        if tls12:
            self._ssl.SSL_CTX_ctrl(self._context, _SET_MAX_PROTO_VERSION, TLS1_2_VERSION, None)
        self._connection = self._ssl.SSL_new(self._context)
        self._in = self._crypto.BIO_new(self._crypto.BIO_s_mem())
        self._out = self._crypto.BIO_new(self._crypto.BIO_s_mem())
        self._ssl.SSL_set_bio(self._connection, self._in, self._out)
        self._ssl.SSL_set_connect_state(self._connection)

    def close(self) -> None:
        self._ssl.SSL_free(self._connection)
        self._ssl.SSL_CTX_free(self._context)

    def _check(self, result: int) -> bool:
        """
        Whether an SSL call succeeded; C{False} if it wants more input.
        """
        if result > 0:
            return True
        error = self._ssl.SSL_get_error(self._connection, result)
        self._crypto.ERR_clear_error()
        if error == WANT_READ:
            return False
        if error == ZERO_RETURN:
            raise Closed()
        raise PeerError("libssl error %d" % (error,))

    def handshake(self) -> bool:
        return self._check(self._ssl.SSL_do_handshake(self._connection))

    def receive(self, data: bytes) -> None:
        if data:
            assert self._crypto.BIO_write(self._in, data, len(data)) == len(data)

    def outgoing(self) -> bytes:
        pieces: List[bytes] = []
        buffer = ctypes.create_string_buffer(65536)
        while True:
            count = self._crypto.BIO_read(self._out, buffer, len(buffer))
            if count <= 0:
                return b"".join(pieces)
            pieces.append(buffer.raw[:count])

    def write(self, data: bytes) -> None:
        assert self._check(self._ssl.SSL_write(self._connection, data, len(data)))

    def read(self) -> bytes:
        pieces: List[bytes] = []
        buffer = ctypes.create_string_buffer(65536)
        while True:
            count = self._ssl.SSL_read(self._connection, buffer, len(buffer))
            try:
                if not self._check(count):
                    return b"".join(pieces)
            except Closed:
                self.closed = True
                return b"".join(pieces)
            pieces.append(buffer.raw[:count])

    def keyUpdate(self, requested: bool) -> None:
        """
        Send a KeyUpdate now, asking the server for one back or not.
        """
        assert self._ssl.SSL_key_update(self._connection, int(requested)) == 1
        self.handshake()

    def shutdown(self) -> None:
        self._ssl.SSL_shutdown(self._connection)


class PyOpenSSLClient:
    """
    A TLS client made with pyOpenSSL, whose OpenSSL offers the hybrid group.

    @ivar closed: whether the server's close_notify has been read.
    """

    closed = False

    def __init__(self, suites: Optional[bytes] = None, tls12: bool = False) -> None:
        context = SSL.Context(SSL.TLS_METHOD)
        if suites is not None:
            context.set_tls13_ciphersuites(suites)
        if tls12:
            context.set_max_proto_version(SSL.TLS1_2_VERSION)
        self._connection = SSL.Connection(context, None)
        self._connection.set_connect_state()

    def close(self) -> None:
        pass

    def _call(self, function, *arguments):
        """
        C{(True, result)} of a pyOpenSSL call, or C{(False, None)} if it
        wants more input.
        """
        try:
            return True, function(*arguments)
        except SSL.WantReadError:
            return False, None
        except SSL.ZeroReturnError:
            raise Closed()
        except SSL.Error as error:
            raise PeerError(str(error))

    def handshake(self) -> bool:
        return self._call(self._connection.do_handshake)[0]

    def receive(self, data: bytes) -> None:
        if data:
            self._connection.bio_write(data)

    def outgoing(self) -> bytes:
        pieces: List[bytes] = []
        while True:
            try:
                pieces.append(self._connection.bio_read(65536))
            except SSL.WantReadError:
                return b"".join(pieces)

    def write(self, data: bytes) -> None:
        assert self._call(self._connection.sendall, data)[0]

    def read(self) -> bytes:
        pieces: List[bytes] = []
        while True:
            try:
                ready, data = self._call(self._connection.recv, 65536)
            except Closed:
                self.closed = True
                return b"".join(pieces)
            if not ready:
                return b"".join(pieces)
            pieces.append(data)

    def shutdown(self) -> None:
        self._call(self._connection.shutdown)

    def group(self) -> str:
        """
        The key-exchange group the handshake agreed.
        """
        return _binding.ffi.string(_binding.lib.SSL_get0_group_name(self._connection._ssl)).decode()
