# -*- test-case-name: chatd.test.test_client_process -*-
"""
C{python -m chatd.client}: the terminal client.

    python -m chatd.client [--host H] [--port 4017] [--tls | --no-tls] [--ca FILE]
                           [--home DIR] [--user NAME] [--device NAME]
                           [--script FILE] [--downloads DIR] [--chunk-size KIB]

TLS is the default. With C{--ca} the server's certificate must chain to that
certificate and name the host (service_identity checks it); without it, the
certificate is pinned on first use in C{HOME/known_servers} and a different one
later is refused, as SSH does with host keys.
"""

import os
import sys

from twisted.conch.insults.insults import ServerProtocol
from twisted.internet import stdio, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python import usage

import chatd
from chatd.client.chat import ChatClient
from chatd.client.connection import PinningTLSOptions, ServerPin
from chatd.client.console import Console
from chatd.client.devicestore import checkDeviceId
from chatd.client.editor import HISTORY_FILE, History, LineEditor
from chatd.client.files import CHUNK_SIZE, DEFAULT_DOWNLOADS
from chatd.client.keystore import Home, KeystoreError

DEFAULT_PORT = 4017
PASSPHRASE_VARIABLE = "CHATD_PASSPHRASE"


def _chunkSize(value):
    kib = int(value)
    # The server takes chunks up to its frame limit - 64 bytes (1 MiB frames
    # by default); a chunk is sealed with 16 bytes of tag and framed.
    if not 1 <= kib <= 1008:
        raise ValueError("a chunk is 1 to 1008 KiB")
    return kib * 1024


def _port(value):
    port = int(value)
    if not 0 < port < 65536:
        raise ValueError("a port is 1 to 65535")
    return port


class Options(usage.Options):
    """
    The client's command line.
    """

    synopsis = "Usage: python -m chatd.client [options]"
    longdesc = ("A terminal client for chatd, with end-to-end encryption. Type /help "
                "once connected. The passphrase of an identity key is read from "
                "CHATD_PASSPHRASE when set, else asked for.")

    optParameters = [
        ["host", None, "localhost", "The server's host name."],
        ["port", None, DEFAULT_PORT, "The server's binary-protocol port.", _port],
        ["ca", None, None, "Verify the server's certificate against this CA "
                           "certificate (PEM) instead of pinning it on first use."],
        ["home", None, None, "Directory for keys and pins [default: ~/.chatd]."],
        ["user", None, None, "Log in as this user at start (/auth), with the key "
                             "already in the home directory."],
        ["device", None, None, "This device's name on accounts it logs in to "
                               "[default: the one used before, else the host name]."],
        ["script", None, None, "Run the lines of this file instead of reading the "
                               "terminal, then exit."],
        ["downloads", None, DEFAULT_DOWNLOADS, "Folder that accepted files are saved in "
                                               "(/accept ID DIR picks another)."],
        ["chunk-size", None, None, "Size of the chunks of files sent, in KiB "
                                         "[default: %d]." % (CHUNK_SIZE // 1024,), _chunkSize],
    ]

    optFlags = [
        ["tls", None, "Connect over TLS (the default)."],
        ["no-tls", None, "Connect over plain TCP (only for a server on this machine "
                         "or in tests: anyone on the way sees who talks when)."],
    ]

    def opt_version(self):
        """Print chatd's version and exit."""
        chatd.printVersion()

    def postOptions(self):
        if self["device"] is not None:
            try:
                checkDeviceId(self["device"])
            except KeystoreError as e:
                raise usage.UsageError(str(e)) from None
        if self["tls"] and self["no-tls"]:
            raise usage.UsageError("--tls and --no-tls contradict each other")
        if self["no-tls"] and self["ca"]:
            raise usage.UsageError("--ca is for TLS; it makes no sense with --no-tls")


def makeEndpoint(reactor, options, home):
    """
    The server's endpoint, and the C{checkPeer} its certificate needs.

    @return: C{(endpoint, checkPeer)}; C{checkPeer} is L{None} on plain TCP and
        when a CA verifies the certificate.
    """
    host, port = options["host"], options["port"]
    tcp = HostnameEndpoint(reactor, host, port)
    if options["no-tls"]:
        return tcp, None
    if options["ca"]:
        with open(options["ca"], "rb") as f:
            trustRoot = Certificate.loadPEM(f.read())
        return wrapClientTLS(optionsForClientTLS(host, trustRoot=trustRoot), tcp), None
    return (wrapClientTLS(PinningTLSOptions(host), tcp),
            ServerPin(home.knownServers, "%s:%d" % (host, port)))


def rawTerminal(fd):
    """
    Put the terminal on C{fd} in the mode a line editor needs: every key as it
    is typed, nothing echoed by the terminal; output processing (newline to
    CR LF) and signals (Ctrl-C, Ctrl-Z) are kept.

    @return: a function that puts the terminal back as it was.
    """
    import termios
    saved = termios.tcgetattr(fd)
    attributes = termios.tcgetattr(fd)
    attributes[0] &= ~(termios.ICRNL | termios.IXON)
    attributes[3] &= ~(termios.ICANON | termios.ECHO | termios.IEXTEN)
    attributes[6][termios.VMIN] = 1
    attributes[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attributes)

    def restore():
        termios.tcsetattr(fd, termios.TCSANOW, saved)
    return restore


def _logWarnings():
    """
    Twisted's own warnings and errors go to standard error; standard output is
    the conversation.
    """
    observer = FilteringLogObserver(
        textFileLogObserver(sys.stderr),
        [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def _fail(message, code=2):
    sys.stderr.write("chatd.client: %s\n" % (message,))
    raise SystemExit(code)


async def run(reactor, options):
    """
    Run the client until the person (or the script) is done.

    @return: the exit status.
    """
    home = Home(os.path.expanduser(options["home"]) if options["home"] else None)
    script = None
    if options["script"]:
        try:
            with open(options["script"], encoding="utf-8") as f:
                script = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            _fail("cannot read the script: %s" % (e,))
    interactive = script is None and os.isatty(0)
    # On a terminal the line editor reads keys in raw mode and hides secrets
    # itself; whatever ends the run (Ctrl-C included), the terminal is put
    # back as it was.
    restore = rawTerminal(0) if interactive else (lambda: None)
    reactor.addSystemEventTrigger("before", "shutdown", restore)
    try:
        endpoint, checkPeer = makeEndpoint(reactor, options, home)
    except (OSError, ValueError) as e:
        _fail("cannot use the CA certificate: %s" % (e,))

    startup, hint = [], None
    user = options["user"]
    if user:
        try:
            known = home.hasIdentity(user)
        except KeystoreError as e:
            _fail(str(e))
        if known:
            startup.append("/auth %s" % (user,))
        else:
            hint = ("there is no key for %s in %s: /register %s [PASSWORD] creates the account"
                    % (user, home.path, user))

    def makeClient(ui):
        return ChatClient(home, ui, endpoint, reactor, checkPeer=checkPeer,
                          passphrase=os.environ.get(PASSPHRASE_VARIABLE) or None,
                          downloads=options["downloads"],
                          chunkSize=options["chunk-size"] or CHUNK_SIZE,
                          device=options["device"])

    console = Console(makeClient, reactor, interactive=interactive, script=script,
                      startup=startup)
    if interactive:
        history = History(os.path.join(home.path, HISTORY_FILE))
        stdio.StandardIO(ServerProtocol(LineEditor, console, history), reactor=reactor)
    else:
        stdio.StandardIO(console, reactor=reactor)
    if hint:
        console.notice(hint)
    console.client.start()
    try:
        code = await console.done
    finally:
        restore()
    await console.client.stop()
    return code


def main(reactor, *argv):
    options = Options()
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        _fail("%s (see --help)" % (e,))
    _logWarnings()

    def exit(code):
        if code:
            raise SystemExit(code)
    return Deferred.fromCoroutine(run(reactor, options)).addCallback(exit)


def script():
    """
    The C{chatd-client} console script.
    """
    task.react(main, sys.argv[1:])


if __name__ == "__main__":
    script()
