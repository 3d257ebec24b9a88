"""``python -m ilphttp`` (also installed as ``ilphttp``): small tools for operators.

``ilphttp ping --url URL --token-file FILE [--name NAME]`` asks the peer at
URL for our address over IL-DCP; with ``--destination ADDRESS --amount N`` it
sends a test Prepare instead, whose condition is random unless
``--fulfillment HEX`` (the condition is its SHA-256) or ``--condition HEX``
gives it.  The reply is printed readably; the exit status is 0 for an IL-DCP
answer or a Fulfill, 1 for a Reject or a failure, 2 for a usage error.  The
token may come from ``ILPHTTP_OUTGOING_TOKEN`` (or a JWT secret from
``ILPHTTP_OUTGOING_JWT_SECRET``) instead of a file.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.python import usage

from ilphttp import __version__, ildcp, validate
from ilphttp.errors import OptionError
from ilphttp.packet import (
    ERROR_NAMES,
    Fulfill,
    InvalidPacketError,
    Prepare,
    Reject,
    condition_from_fulfillment,
    deserialize,
    is_valid_address,
    serialize_prepare,
)
from ilphttp.plugin import PluginHttp
from ilphttp.secrets import token_or_jwt_secret

__all__ = ["Options", "PingOptions", "main", "parse", "run"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

ENV_TOKEN = "ILPHTTP_OUTGOING_TOKEN"
ENV_JWT_SECRET = "ILPHTTP_OUTGOING_JWT_SECRET"

#: what a usage error adds after its one line
USAGE_HINT = "(see ilphttp --help, ilphttp ping --help)"

#: the exit statuses, as ``--help`` lists them
EXIT_HELP = (
    "Exit status:\n"
    f"  {EXIT_OK}  an IL-DCP answer, or a Fulfill\n"
    f"  {EXIT_FAILED}  a Reject, or a failure (no reply, an invalid reply)\n"
    f"  {EXIT_USAGE}  a usage error\n"
)

#: the plugin's option names -> the ping options that set them
_FLAG_OF_OPTION = {"outgoing.url": "--url", "outgoing.name": "--name"}


def _hex32(flag: str, text: str) -> bytes:
    """32 bytes given as 64 hex digits; raises UsageError naming ``flag``."""
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise usage.UsageError(f"{flag} must be 32 bytes as 64 hex digits, got {shown!r}")
    return value


class PingOptions(usage.Options):
    """Options of ``ilphttp ping``."""

    synopsis = "Usage: ilphttp ping --url URL [--destination ADDRESS --amount N] [options]"
    longdesc = (
        "Ask the peer at URL for our ILP address over IL-DCP (peer.config), or with "
        "--destination and --amount send a test Prepare, and print the reply. "
        "The Prepare's condition is random unless --fulfillment gives the preimage "
        "(the condition is its SHA-256; a handler that checks conditions can then "
        "fulfil) or --condition gives the condition itself (for a handler that knows "
        "the fulfillment). "
        f"The secret may also come from {ENV_TOKEN} or {ENV_JWT_SECRET}."
    )
    optParameters = [
        ["url", "u", None, "The peer's URL (http:// or https://)."],
        ["token-file", None, None, "File holding the token to send (Bearer)."],
        ["jwt-secret-file", None, None, "File holding the HS256 secret to sign JWTs with."],
        ["name", "n", None, "Our ILP-Peer-Name (a multi peer answers IL-DCP with <its>.<name>)."],
        ["destination", "d", None, "Send a test Prepare to this ILP address."],
        ["amount", "a", None, "The test Prepare's amount (with --destination)."],
        ["data", None, None, "The test Prepare's data, as UTF-8 text."],
        [
            "fulfillment",
            None,
            None,
            "The test Prepare's fulfillment, 32 bytes in hex (the condition is its SHA-256).",
        ],
        [
            "condition",
            None,
            None,
            "The test Prepare's condition, 32 bytes in hex (for a handler that knows the"
            " fulfillment).",
        ],
        ["timeout", "t", "10", "Seconds before the request expires."],
    ]
    optFlags = [["send-ilp-destination", None, "Send the ILP-Destination header."]]

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        usage.Options.__init__(self)
        self.environ: Mapping[str, str] = os.environ if environ is None else environ

    def getSynopsis(self) -> str:
        """Our own usage line (twisted would prefix the parent's synopsis)."""
        return self.synopsis

    def getUsage(self, width: int | None = None) -> str:
        """The options, the description, and the exit statuses."""
        return usage.Options.getUsage(self, width) + "\n" + EXIT_HELP

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"ilphttp {__version__}")
        sys.exit(0)

    def opt_token(self, value: str) -> None:
        """Not an option: secrets are read from a file (--token-file) or the environment."""
        # Without it getopt would take --token as an abbreviation of --token-file
        # and read the token itself as a file name.
        raise usage.UsageError(
            "--token is not an option: give the token in a file (--token-file FILE)"
            f" or in {ENV_TOKEN}"
        )

    def postOptions(self) -> None:
        if self["url"] is None:
            raise usage.UsageError("--url is required")
        try:
            validate.http_url("--url", self["url"])
        except OptionError as exc:
            raise usage.UsageError(str(exc)) from None
        try:
            self["token"], self["jwt_secret"] = self._secrets()
        except OptionError as exc:
            raise usage.UsageError(str(exc)) from None
        try:
            timeout = float(self["timeout"])
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= 3600:
            raise usage.UsageError(
                f"--timeout must be seconds, more than 0 and at most 3600, got {self['timeout']!r}"
            )
        self["timeout"] = timeout
        destination, amount = self["destination"], self["amount"]
        if destination is None:
            for name in ("amount", "data", "fulfillment", "condition"):
                if self[name] is not None:
                    raise usage.UsageError(f"--{name} needs --destination")
            return
        if not is_valid_address(destination):
            raise usage.UsageError(f"--destination {destination!r} is not a valid ILP address")
        if amount is None:
            raise usage.UsageError("--destination needs --amount")
        shown = amount if len(amount) <= 40 else amount[:40] + "..."
        # ASCII digits only: int() would take "10_000" and other scripts' digits.
        if not (
            amount.isascii() and amount.isdigit() and len(amount) <= 20 and int(amount) < 2**64
        ):
            raise usage.UsageError(f"--amount must be an integer from 0 to 2**64-1, got {shown!r}")
        value = int(amount)
        self["amount"] = value
        # argv bytes that are not UTF-8 come as surrogates (PEP 383): send them as given.
        data = os.fsencode(self["data"] or "")
        if len(data) > 32767:
            raise usage.UsageError("--data is longer than 32767 bytes")
        self["data"] = data
        self._condition()

    def _condition(self) -> None:
        """Set ``fulfillment`` (bytes or None) and ``condition`` (bytes), and how it was chosen."""
        fulfillment, condition = self["fulfillment"], self["condition"]
        if fulfillment is not None and condition is not None:
            raise usage.UsageError("give --fulfillment or --condition, not both")
        if condition is not None:
            self["fulfillment"], self["condition"] = None, _hex32("--condition", condition)
            self["condition_source"] = "given"
            return
        if fulfillment is None:
            preimage = os.urandom(32)
            self["condition_source"] = "random"
        else:
            preimage = _hex32("--fulfillment", fulfillment)
            self["condition_source"] = "SHA-256 of the fulfillment"
        self["fulfillment"], self["condition"] = preimage, condition_from_fulfillment(preimage)

    def _secrets(self) -> tuple[str | None, str | None]:
        return token_or_jwt_secret(
            "authentication",
            ("--token-file", self["token-file"]),
            ("--jwt-secret-file", self["jwt-secret-file"]),
            ENV_TOKEN,
            ENV_JWT_SECRET,
            self.environ,
        )


class Options(usage.Options):
    """``ilphttp <command>``."""

    synopsis = "Usage: ilphttp <command> [options]"
    longdesc = (
        "Tools for ILP-over-HTTP links. 'ilphttp <command> --help' shows a command's options."
    )

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        usage.Options.__init__(self)
        self.subCommands = [
            [
                "ping",
                None,
                lambda: PingOptions(environ),
                "Ask a peer for our address, or send a Prepare.",
            ]
        ]

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"ilphttp {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("a command is required: ping")


def parse(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> PingOptions:
    """The command's options; raises UsageError (and SystemExit for --help)."""
    options = Options(environ)
    options.parseOptions(list(argv))
    sub = options.subOptions
    assert isinstance(sub, PingOptions)
    return sub


# -- printing -------------------------------------------------------------------------


def _hex(data: bytes, limit: int = 64) -> str:
    text = data[:limit].hex()
    return text + ("..." if len(data) > limit else "")


def _text(data: bytes) -> str:
    if not data:
        return "(empty)"
    try:
        decoded = data.decode("utf-8")
        if decoded.isprintable():
            return repr(decoded) + f" ({len(data)} bytes)"
    except UnicodeDecodeError:
        pass
    return f"{_hex(data)} ({len(data)} bytes, hex)"


def describe_reply(reply: bytes, elapsed: float) -> tuple[str, bool]:
    """The reply as lines for a human, and whether it counts as success."""
    try:
        packet = deserialize(reply)
    except InvalidPacketError as exc:
        return f"invalid reply: {exc}", False
    ms = f"{elapsed * 1000:.1f} ms"
    if isinstance(packet, Reject):
        name = ERROR_NAMES.get(packet.code, "unknown code")
        return (
            f"Reject {packet.code} {name} after {ms}\n"
            f"  triggered by: {packet.triggered_by or '(empty)'}\n"
            f"  message:      {packet.message or '(empty)'}\n"
            f"  data:         {_text(packet.data)}",
            False,
        )
    if isinstance(packet, Fulfill):
        return (
            f"Fulfill after {ms}\n"
            f"  fulfillment:  {packet.fulfillment.hex()}\n"
            f"  data:         {_text(packet.data)}",
            True,
        )
    return "invalid reply: a Prepare", False


def describe_ildcp(reply: bytes, elapsed: float) -> tuple[str, bool]:
    """An IL-DCP reply for a human, and whether it is an answer."""
    try:
        packet = deserialize(reply)
    except InvalidPacketError as exc:
        return f"invalid reply: {exc}", False
    if not isinstance(packet, Fulfill):
        text, _ = describe_reply(reply, elapsed)
        return f"IL-DCP failed: {text}", False
    try:
        info = ildcp.deserialize_response(reply)
    except ildcp.IldcpError as exc:
        return f"IL-DCP failed: {exc}", False
    return (
        f"IL-DCP answer after {elapsed * 1000:.1f} ms\n"
        f"  address:      {info.client_address}\n"
        f"  asset:        {info.asset_code}, scale {info.asset_scale}",
        True,
    )


# -- running ----------------------------------------------------------------------------


@inlineCallbacks
def ping(reactor: Any, options: PingOptions, out: IO[str]) -> Any:
    """Send one request; print the answer; return the exit status."""
    outgoing: dict[str, Any] = {"url": options["url"]}
    if options["token"] is not None:
        outgoing["static_token"] = options["token"]
    if options["jwt_secret"] is not None:
        outgoing["jwt_secret"] = options["jwt_secret"]
    if options["name"] is not None:
        outgoing["name"] = options["name"]
    outgoing["send_ilp_destination"] = bool(options["send-ilp-destination"])
    try:
        plugin = PluginHttp(outgoing=outgoing, reactor=reactor)
    except OptionError as exc:
        text = str(exc)
        for option, flag in _FLAG_OF_OPTION.items():
            text = text.replace(option, flag)
        out.write(usage_error(text))
        return EXIT_USAGE
    expires = _dt.datetime.fromtimestamp(reactor.seconds() + options["timeout"], _dt.timezone.utc)
    if options["destination"] is None:
        packet = ildcp.serialize_request(expires)
        what = "IL-DCP request (peer.config)"
        details = ""
    else:
        prepare = Prepare(
            options["amount"],
            expires,
            options["condition"],
            options["destination"],
            options["data"],
        )
        packet = serialize_prepare(prepare)
        fulfillment = options["fulfillment"]
        what = f"Prepare of {options['amount']} to {options['destination']}"
        details = (
            f"  condition:    {options['condition'].hex()} ({options['condition_source']})\n"
            f"  fulfillment:  {'(unknown)' if fulfillment is None else fulfillment.hex()}\n"
        )
    out.write(f"{what} -> {options['url']}\n{details}")
    yield plugin.connect()
    started = reactor.seconds()
    try:
        reply = yield plugin.send_data(packet)
    finally:
        yield plugin.disconnect()
    elapsed = reactor.seconds() - started
    if options["destination"] is None:
        text, ok = describe_ildcp(reply, elapsed)
    else:
        text, ok = describe_reply(reply, elapsed)
    out.write(text + "\n")
    return EXIT_OK if ok else EXIT_FAILED


def usage_error(message: str) -> str:
    """A usage error as printed: ``ilphttp: <message>``, then the help hint (two lines)."""
    return f"ilphttp: {message}\n{USAGE_HINT}\n"


def run(
    reactor: Any,
    argv: Sequence[str],
    out: IO[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Deferred[int]:
    """Parse ``argv`` and run the command; fires with the exit status."""
    stream = sys.stdout if out is None else out
    try:
        options = parse(argv, environ)
    except usage.UsageError as exc:
        stream.write(usage_error(str(exc)))
        return succeed(EXIT_USAGE)
    result: Deferred[int] = ping(reactor, options, stream)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """The console entry point: ``ilphttp`` and ``python -m ilphttp``."""
    from twisted.internet.task import react

    try:
        options = parse(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as exc:
        sys.stderr.write(usage_error(str(exc)))
        raise SystemExit(EXIT_USAGE) from None

    def _main(reactor: Any) -> Deferred[None]:
        d: Deferred[int] = ping(reactor, options, sys.stdout)
        return d.addCallback(_exit)

    react(_main)


def _exit(status: int) -> None:
    if status:
        raise SystemExit(status)
