#!/usr/bin/env python3
"""A gRPC-over-HTTP/3 client written from the specs on aioquic, run against our servers.

aioquic supplies QUIC, HTTP/3 framing (RFC 9114) and QPACK (RFC 9204), and checks the
server's header sections (lowercase names, pseudo-header rules, no connection-specific
fields, RFC 9114 section 4.2). The gRPC layer is written here from grpc/grpc
doc/PROTOCOL-HTTP2.md: request HEADERS (:method POST, :scheme https, :path, :authority,
content-type application/grpc, te trailers, grpc-timeout), Length-Prefixed-Messages in DATA
frames (1-byte compressed flag, 4-byte big-endian length, message), and a response of HEADERS,
DATA and trailing HEADERS, or a single Trailers-Only HEADERS. grpcio-tools' generated classes
are used for protobuf encoding only.

Cases follow grpc/grpc doc/interop-test-descriptions.md, plus HTTP/3 checks (ALPN and
SETTINGS, Trailers-Only, cancellation with H3_REQUEST_CANCELLED). Prints one line per case,
``CASE PASS`` or ``CASE FAIL reason``, then ``N passed, N failed``; exits 0 iff every case
passed, 1 if one failed, 2 on bad arguments.
"""

import argparse
import asyncio
import base64
import gzip
import os
import ssl
import struct
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import aioquic  # noqa: E402
from aioquic.asyncio.client import connect  # noqa: E402
from aioquic.asyncio.protocol import QuicConnectionProtocol  # noqa: E402
from aioquic.buffer import encode_uint_var  # noqa: E402
from aioquic.h3.connection import H3_ALPN, ErrorCode, FrameType, H3Connection, encode_frame  # noqa: E402
from aioquic.h3.events import DataReceived, HeadersReceived  # noqa: E402
from aioquic.quic.configuration import QuicConfiguration  # noqa: E402
from aioquic.quic.events import (  # noqa: E402
    ConnectionTerminated,
    ProtocolNegotiated,
    StreamReset,
)

import peer_protos  # noqa: E402

# RFC 9114 section 8.1.
H3_NO_ERROR = 0x100
H3_REQUEST_CANCELLED = 0x10C
# Upper bound on waiting for one thing from the server.
WAIT = 20.0
# Upper bound on one case.
CASE_TIME_LIMIT = 60.0
SPECIAL_STATUS_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"
ECHO_INITIAL = (b"x-grpc-test-echo-initial", b"test_initial_metadata_value")
ECHO_TRAILING_KEY = b"x-grpc-test-echo-trailing-bin"
ECHO_TRAILING_VALUE = b"\xab\xab\xab"
USER_AGENT = f"grpc-h3-peer-aioquic/{aioquic.__version__}".encode()
GRPC_CODES = {
    0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
    13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}

empty_pb2 = messages_pb2 = None  # set by main() once the protos are compiled


class CaseFailed(Exception):
    """A case's assertion, or a protocol rule, did not hold."""


def check(cond, message):
    if not cond:
        raise CaseFailed(message)


def error_name(code):
    try:
        return f"{ErrorCode(code).name} (0x{code:x})"
    except ValueError:
        return f"0x{code:x}"


def percent_decode(raw):
    """Status-Message decoding (PROTOCOL-HTTP2.md): %XX is one UTF-8 byte; a malformed
    escape is kept as it is rather than failing the call."""
    out = bytearray()
    i = 0
    hexdigits = b"0123456789abcdefABCDEF"
    while i < len(raw):
        if raw[i] == 0x25 and i + 2 < len(raw) and all(c in hexdigits for c in raw[i + 1:i + 3]):
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", errors="replace")


def decode_bin(value):
    """Binary metadata is base64; receivers must accept padded and unpadded values."""
    try:
        return base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)
    except ValueError as err:
        raise CaseFailed(f"-bin metadata value {value!r} is not base64: {err}") from None


def frame_message(payload, compressed=False):
    """Length-Prefixed-Message: Compressed-Flag, Message-Length (4 bytes, big endian), Message."""
    return struct.pack(">BI", 1 if compressed else 0, len(payload)) + payload


class Outcome:
    """A finished call: status, decoded messages and both header sections."""

    def __init__(self, call):
        self.headers = call.header_blocks[0]
        self.trailers = call.header_blocks[-1]
        self.trailers_only = call.trailers_only
        self.messages = list(call.messages)
        self.code = int(self.trailers[b"grpc-status"])
        self.message = percent_decode(self.trailers.get(b"grpc-message", b""))
        self.flags = list(call.flags)

    def describe(self):
        return f"{GRPC_CODES.get(self.code, self.code)} {self.message!r}"

    def expect_ok(self):
        check(self.code == 0, f"call failed: {self.describe()}")
        return self

    def expect_status(self, code, message=None):
        check(
            self.code == code,
            f"status {self.describe()}, expected {GRPC_CODES[code]}",
        )
        if message is not None:
            check(self.message == message, f"message {self.message!r}, expected {message!r}")
        return self


class Call:
    """One gRPC call on one HTTP/3 request stream."""

    def __init__(self, client, stream_id, path, accept_encoding):
        self.client = client
        self.stream_id = stream_id
        self.path = path
        self.accept_encoding = accept_encoding
        self.header_blocks = []  # each a dict name -> value; the first is the response head
        self.raw_blocks = []  # the same as lists of (name, value), for duplicate checks
        self.data_after_head = 0
        self.buffer = bytearray()
        self.messages = []  # decoded message bytes, in order
        self.flags = []  # compressed flag of each message
        self.read = 0  # messages handed out by next_message
        self.fin = False
        self.reset_code = None
        self.violation = None  # first protocol violation seen while receiving
        self.changed = asyncio.Event()

    # --- receiving (called from the protocol) ---

    def on_headers(self, headers, ended):
        block = {}
        for name, value in headers:
            if name in block and not name.startswith(b":"):
                block[name] = block[name] + b"," + value
            else:
                block[name] = value
        self.header_blocks.append(block)
        self.raw_blocks.append(list(headers))
        if ended:
            self.fin = True
        self.changed.set()

    def on_data(self, data, ended):
        if data:
            self.data_after_head += len(data)
            self.buffer.extend(data)
            self._parse_messages()
        if ended:
            self.fin = True
        self.changed.set()

    def on_reset(self, code):
        self.reset_code = code
        self.changed.set()

    def _parse_messages(self):
        while len(self.buffer) >= 5 and self.violation is None:
            flag, length = struct.unpack(">BI", self.buffer[:5])
            if flag not in (0, 1):
                self.violation = f"message compressed-flag is {flag}, must be 0 or 1"
                return
            if len(self.buffer) < 5 + length:
                return
            payload = bytes(self.buffer[5:5 + length])
            del self.buffer[:5 + length]
            if flag == 1:
                encoding = self.header_blocks[0].get(b"grpc-encoding") if self.header_blocks else None
                if encoding is None or encoding == b"identity":
                    self.violation = "compressed message without a grpc-encoding response header"
                    return
                if encoding not in self.accept_encoding:
                    self.violation = f"message compressed with {encoding!r}, which the client did not accept"
                    return
                if encoding != b"gzip":
                    self.violation = f"unexpected grpc-encoding {encoding!r}"
                    return
                payload = gzip.decompress(payload)
            self.flags.append(flag)
            self.messages.append(payload)

    @property
    def trailers_only(self):
        return len(self.header_blocks) == 1 and self.data_after_head == 0 and self.fin

    # --- sending ---

    def send(self, message, end=False, compressed=False):
        payload = message.SerializeToString()
        if compressed:
            payload = gzip.compress(payload)
        self.client.http.send_data(self.stream_id, frame_message(payload, compressed), end_stream=end)
        self.client.transmit()

    def send_raw(self, data, end=False):
        """Bytes straight onto the request stream, for frame layouts aioquic would not make."""
        self.client._quic.send_stream_data(self.stream_id, data, end_stream=end)
        self.client.transmit()

    def close_send(self):
        self.client.http.send_data(self.stream_id, b"", end_stream=True)
        self.client.transmit()

    def cancel(self, code=H3_REQUEST_CANCELLED):
        """RFC 9114 section 4.1.1: a client cancels a request by resetting the stream and
        aborting reading (STOP_SENDING), with H3_REQUEST_CANCELLED."""
        self.client._quic.reset_stream(self.stream_id, code)
        self.client._quic.stop_stream(self.stream_id, code)
        self.client.transmit()

    # --- waiting ---

    async def wait(self, done, what, timeout=WAIT):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            if self.violation:
                raise CaseFailed(f"{self.path}: {self.violation}")
            if self.client.closed is not None:
                raise CaseFailed(f"{self.path}: connection closed while waiting for {what}: {self.client.closed}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise CaseFailed(f"{self.path}: no {what} within {timeout:g} s")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def _ended(self):
        return self.fin or self.reset_code is not None

    async def next_message(self, timeout=WAIT):
        """The next response message, or None once the response has ended."""
        await self.wait(lambda: len(self.messages) > self.read or self._ended(), "response message", timeout)
        if len(self.messages) > self.read:
            self.read += 1
            return self.messages[self.read - 1]
        return None

    async def finish(self, timeout=WAIT):
        """Waits for the end of the response and checks it against the protocol."""
        await self.wait(self._ended, "end of the response", timeout)
        if self.violation:
            raise CaseFailed(f"{self.path}: {self.violation}")
        if self.reset_code is not None:
            raise CaseFailed(f"{self.path}: server reset the stream with {error_name(self.reset_code)}")
        self.check_response()
        return Outcome(self)

    def dump(self):
        """The response as received, for --verbose."""
        parts = [f"{self.path} stream {self.stream_id}:"]
        for i, block in enumerate(self.raw_blocks):
            parts.append(("headers " if i == 0 else "trailers ") + repr(block))
        parts.append(f"data {self.data_after_head} bytes, {len(self.messages)} messages, flags {self.flags}")
        parts.append("FIN" if self.fin else f"reset {error_name(self.reset_code)}" if self.reset_code is not None else "open")
        return " ".join(parts)

    def check_response(self):
        """PROTOCOL-HTTP2.md "Responses": Response-Headers *Length-Prefixed-Message Trailers,
        or Trailers-Only; HTTP-Status 200; Content-Type application/grpc[+...|;...]."""
        p = self.path
        check(self.header_blocks, f"{p}: stream ended without response headers")
        head = self.header_blocks[0]
        check(head.get(b":status") == b"200", f"{p}: HTTP status {head.get(b':status')!r}, expected 200")
        ctype = head.get(b"content-type", b"")
        check(
            ctype == b"application/grpc" or ctype.startswith((b"application/grpc+", b"application/grpc;")),
            f"{p}: content-type {ctype!r}, expected application/grpc",
        )
        check(len(self.header_blocks) <= 2, f"{p}: {len(self.header_blocks)} header sections")
        if not self.trailers_only:
            check(len(self.header_blocks) == 2, f"{p}: response has no trailers (ended after DATA)")
            check(b"grpc-status" not in head, f"{p}: grpc-status in the response headers and again in trailers")
        check(not self.buffer, f"{p}: response ends inside a message ({len(self.buffer)} stray bytes)")
        raw = self.raw_blocks[-1]
        statuses = [v for n, v in raw if n == b"grpc-status"]
        check(len(statuses) == 1, f"{p}: {len(statuses)} grpc-status fields in the trailers")
        check(statuses[0].isdigit(), f"{p}: grpc-status {statuses[0]!r} is not a decimal number")
        for name, value in raw:
            if name == b"grpc-message":
                bad = [c for c in value if c < 0x20 or c > 0x7E]
                check(not bad, f"{p}: grpc-message {value!r} is not percent-encoded (bytes {bad[:3]})")
        for block in self.raw_blocks:
            for name, value in block:
                if name.endswith(b"-bin"):
                    decode_bin(value)


class H3Client(QuicConnectionProtocol):
    """QUIC connection carrying an aioquic H3Connection; routes events to calls."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic)
        self.calls = {}
        self.alpn = None
        self.closed = None

    def quic_event_received(self, event):
        if isinstance(event, ProtocolNegotiated):
            self.alpn = event.alpn_protocol
        elif isinstance(event, ConnectionTerminated):
            self._on_closed(f"error {error_name(event.error_code)} {event.reason_phrase!r}")
        elif isinstance(event, StreamReset) and event.stream_id in self.calls:
            self.calls[event.stream_id].on_reset(event.error_code)
        for h3_event in self.http.handle_event(event):
            call = self.calls.get(h3_event.stream_id)
            if call is None:
                continue
            if isinstance(h3_event, HeadersReceived):
                call.on_headers(h3_event.headers, h3_event.stream_ended)
            elif isinstance(h3_event, DataReceived):
                call.on_data(h3_event.data, h3_event.stream_ended)
        # aioquic closes the connection itself on an HTTP/3 or QPACK error by the server.
        close = self._quic._close_event
        if close is not None and self.closed is None:
            self._on_closed(f"client closed it: {error_name(close.error_code)} {close.reason_phrase!r}")

    def _on_closed(self, reason):
        if self.closed is None:
            self.closed = reason
        for call in self.calls.values():
            call.changed.set()

    def start(self, path, *, authority, metadata=(), timeout=b"30S", encoding=None, accept_encoding=()):
        """Sends the request headers (PROTOCOL-HTTP2.md "Requests") on a new request stream."""
        stream_id = self._quic.get_next_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", authority),
            (b":path", path.encode()),
            (b"te", b"trailers"),
            (b"content-type", b"application/grpc"),
            (b"user-agent", USER_AGENT),
        ]
        if timeout is not None:
            headers.append((b"grpc-timeout", timeout))
        if encoding is not None:
            headers.append((b"grpc-encoding", encoding))
        if accept_encoding:
            headers.append((b"grpc-accept-encoding", b",".join(accept_encoding)))
        headers.extend(metadata)
        call = Call(self, stream_id, path, tuple(accept_encoding))
        self.calls[stream_id] = call
        self.http.send_headers(stream_id, headers, end_stream=False)
        self.transmit()
        return call


class Session:
    """The connection the cases share; reopened if a case left it closed."""

    def __init__(self, args):
        self.args = args
        self.client = None
        self._context = None

    async def client_ready(self):
        if self.client is not None and self.client.closed is None:
            return self.client
        await self.close()
        config = QuicConfiguration(
            is_client=True,
            alpn_protocols=H3_ALPN,
            server_name=self.args.server_name,
            verify_mode=ssl.CERT_REQUIRED,
            idle_timeout=30.0,
            max_data=16 * 1024 * 1024,
            max_stream_data=4 * 1024 * 1024,
        )
        config.load_verify_locations(cafile=self.args.ca)
        self._context = connect(self.args.host, self.args.port, configuration=config, create_protocol=H3Client)
        try:
            self.client = await asyncio.wait_for(self._context.__aenter__(), WAIT)
        except Exception as err:
            self._context = None
            raise CaseFailed(f"cannot connect over QUIC to {self.args.host}:{self.args.port}: {type(err).__name__} {err}")
        return self.client

    async def close(self):
        if self._context is not None:
            context, self._context, self.client = self._context, None, None
            try:
                await asyncio.wait_for(context.__aexit__(None, None, None), 5)
            except Exception:
                pass

    def authority(self):
        return f"{self.args.server_name}:{self.args.port}".encode()

    async def start(self, method, **kwargs):
        client = await self.client_ready()
        return client.start(f"/grpc.testing.TestService/{method}", authority=self.authority(), **kwargs)

    async def unary(self, method, request, response_cls, **kwargs):
        call = await self.start(method, **kwargs)
        call.send(request, end=True)
        outcome = await call.finish()
        if outcome.code == 0:
            check(len(outcome.messages) == 1, f"{method}: {len(outcome.messages)} response messages, expected 1")
            outcome.response = response_cls.FromString(outcome.messages[0])
        return outcome


def zeros(n):
    return messages_pb2.Payload(body=bytes(n))


def check_payload(payload, size, what="payload"):
    got = len(payload.body)
    check(got == size, f"{what} is {got} bytes, expected {size}")
    check(payload.body == bytes(size), f"{what} is not all zeros")


def large_unary_request(**extra):
    return messages_pb2.SimpleRequest(response_size=314159, payload=zeros(271828), **extra)


def duplex_request(response_size, payload_size=0, **extra):
    return messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=response_size)],
        payload=zeros(payload_size),
        **extra,
    )


async def case_connection(s):
    """RFC 9114 section 3.1 (ALPN "h3") and 6.2.1/7.2.4 (the server's SETTINGS on its control
    stream, without HTTP/2-only identifiers)."""
    client = await s.client_ready()
    check(client.alpn == "h3", f"ALPN {client.alpn!r}, expected 'h3'")
    deadline = time.monotonic() + WAIT
    while client.http.received_settings is None and time.monotonic() < deadline:
        await client.ping()
        await asyncio.sleep(0.01)
    settings = client.http.received_settings
    check(settings is not None, "no SETTINGS frame from the server")
    reserved = sorted(k for k in settings if k in (0x02, 0x03, 0x04, 0x05))
    check(not reserved, f"SETTINGS carries HTTP/2 identifiers {reserved}")


async def case_empty_unary(s):
    out = (await s.unary("EmptyCall", empty_pb2.Empty(), empty_pb2.Empty)).expect_ok()
    check(out.messages[0] == b"", f"response is {len(out.messages[0])} bytes, expected an empty message")


async def case_large_unary(s):
    out = (await s.unary("UnaryCall", large_unary_request(), messages_pb2.SimpleResponse)).expect_ok()
    check_payload(out.response.payload, 314159)


async def case_client_compressed_unary(s):
    probe = large_unary_request(expect_compressed=messages_pb2.BoolValue(value=True))
    out = await s.unary("UnaryCall", probe, messages_pb2.SimpleResponse)
    out.expect_status(3)
    call = await s.start("UnaryCall", encoding=b"gzip")
    call.send(probe, end=True, compressed=True)
    out = (await call.finish()).expect_ok()
    check(len(out.messages) == 1, f"{len(out.messages)} responses")
    check_payload(messages_pb2.SimpleResponse.FromString(out.messages[0]).payload, 314159)
    plain = large_unary_request(expect_compressed=messages_pb2.BoolValue(value=False))
    out = (await s.unary("UnaryCall", plain, messages_pb2.SimpleResponse)).expect_ok()
    check_payload(out.response.payload, 314159)


async def case_server_compressed_unary(s):
    for compressed in (True, False):
        request = large_unary_request(response_compressed=messages_pb2.BoolValue(value=compressed))
        out = (
            await s.unary("UnaryCall", request, messages_pb2.SimpleResponse, accept_encoding=(b"gzip",))
        ).expect_ok()
        check_payload(out.response.payload, 314159, f"payload (response_compressed={compressed})")
        want = 1 if compressed else 0
        check(out.flags == [want], f"compressed flag {out.flags} with response_compressed={compressed}")
        if compressed:
            check(out.headers.get(b"grpc-encoding") == b"gzip", f"grpc-encoding {out.headers.get(b'grpc-encoding')!r}")


async def case_client_streaming(s):
    call = await s.start("StreamingInputCall")
    for n in (27182, 8, 1828, 45904):
        call.send(messages_pb2.StreamingInputCallRequest(payload=zeros(n)))
    call.close_send()
    out = (await call.finish()).expect_ok()
    check(len(out.messages) == 1, f"{len(out.messages)} responses, expected 1")
    got = messages_pb2.StreamingInputCallResponse.FromString(out.messages[0]).aggregated_payload_size
    check(got == 74922, f"aggregated_payload_size is {got}, expected 74922")


async def case_server_streaming(s):
    sizes = (31415, 9, 2653, 58979)
    request = messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=n) for n in sizes]
    )
    call = await s.start("StreamingOutputCall")
    call.send(request, end=True)
    out = (await call.finish()).expect_ok()
    check(len(out.messages) == 4, f"{len(out.messages)} responses, expected 4")
    for i, (raw, size) in enumerate(zip(out.messages, sizes)):
        check_payload(messages_pb2.StreamingOutputCallResponse.FromString(raw).payload, size, f"response {i} payload")


async def case_ping_pong(s):
    call = await s.start("FullDuplexCall")
    for i, (response_size, payload_size) in enumerate(((31415, 27182), (9, 8), (2653, 1828), (58979, 45904))):
        ended = f"stream ended after {i} responses, expected 4"
        check(not call._ended(), ended)
        try:
            call.send(duplex_request(response_size, payload_size))
        except Exception as err:  # aioquic refuses once the server sent STOP_SENDING
            raise CaseFailed(f"{ended} (cannot send request {i + 1}: {err})") from None
        raw = await call.next_message()
        check(raw is not None, ended)
        check_payload(messages_pb2.StreamingOutputCallResponse.FromString(raw).payload, response_size, f"response {i}")
        check(len(call.messages) == i + 1, f"{len(call.messages)} responses after request {i + 1}")
    call.close_send()
    out = (await call.finish()).expect_ok()
    check(len(out.messages) == 4, f"{len(out.messages)} responses, expected 4")


async def case_empty_stream(s):
    call = await s.start("FullDuplexCall")
    call.close_send()
    out = (await call.finish()).expect_ok()
    check(not out.messages, f"{len(out.messages)} responses, expected none")


def check_echoed(out, what):
    initial = out.headers.get(ECHO_INITIAL[0])
    check(initial == ECHO_INITIAL[1], f"{what}: initial {ECHO_INITIAL[0].decode()} is {initial!r}")
    trailing = out.trailers.get(ECHO_TRAILING_KEY)
    check(trailing is not None, f"{what}: trailing {ECHO_TRAILING_KEY.decode()} is missing")
    check(
        decode_bin(trailing) == ECHO_TRAILING_VALUE,
        f"{what}: trailing {ECHO_TRAILING_KEY.decode()} is {trailing!r}",
    )
    check(ECHO_TRAILING_KEY not in out.headers or out.trailers_only, f"{what}: trailing metadata sent as initial")


async def case_custom_metadata(s):
    metadata = (ECHO_INITIAL, (ECHO_TRAILING_KEY, base64.b64encode(ECHO_TRAILING_VALUE)))
    out = (await s.unary("UnaryCall", large_unary_request(), messages_pb2.SimpleResponse, metadata=metadata)).expect_ok()
    check_echoed(out, "UnaryCall")
    check_payload(out.response.payload, 314159)
    call = await s.start("FullDuplexCall", metadata=metadata)
    call.send(duplex_request(314159, 271828), end=True)
    out = (await call.finish()).expect_ok()
    check_echoed(out, "FullDuplexCall")
    check(len(out.messages) == 1, f"FullDuplexCall: {len(out.messages)} responses, expected 1")
    check_payload(messages_pb2.StreamingOutputCallResponse.FromString(out.messages[0]).payload, 314159)


def echo_status(cls, message):
    return cls(response_status=messages_pb2.EchoStatus(code=2, message=message))


async def case_status_code_and_message(s):
    message = "test status message"
    out = await s.unary("UnaryCall", echo_status(messages_pb2.SimpleRequest, message), messages_pb2.SimpleResponse)
    out.expect_status(2, message)
    call = await s.start("FullDuplexCall")
    call.send(echo_status(messages_pb2.StreamingOutputCallRequest, message), end=True)
    (await call.finish()).expect_status(2, message)


async def case_special_status_message(s):
    request = echo_status(messages_pb2.SimpleRequest, SPECIAL_STATUS_MESSAGE)
    out = await s.unary("UnaryCall", request, messages_pb2.SimpleResponse)
    out.expect_status(2, SPECIAL_STATUS_MESSAGE)


async def case_unimplemented_method(s):
    out = await s.unary("UnimplementedCall", empty_pb2.Empty(), empty_pb2.Empty)
    out.expect_status(12)


async def case_unimplemented_service(s):
    client = await s.client_ready()
    call = client.start("/grpc.testing.UnimplementedService/UnimplementedCall", authority=s.authority())
    call.send(empty_pb2.Empty(), end=True)
    (await call.finish()).expect_status(12)


async def case_trailers_only(s):
    """An immediate error as Trailers-Only (PROTOCOL-HTTP2.md: HTTP-Status Content-Type
    Trailers): on HTTP/3 one HEADERS frame, then the end of the stream, no DATA."""
    client = await s.client_ready()
    call = client.start("/grpc.testing.UnimplementedService/UnimplementedCall", authority=s.authority())
    call.send(empty_pb2.Empty(), end=True)
    out = (await call.finish()).expect_status(12)
    check(
        out.trailers_only,
        f"{len(call.header_blocks)} header sections and {call.data_after_head} DATA bytes; this case checks "
        "the Trailers-Only form (one HEADERS, then FIN)",
    )
    for name in (b":status", b"content-type", b"grpc-status"):
        check(name in out.trailers, f"Trailers-Only response lacks {name.decode()}")


async def case_request_header_forms(s):
    """Request forms the spec allows: content-type application/grpc+proto, grpc-timeout in
    every unit at up to 8 digits, and -bin metadata padded or not."""
    client = await s.client_ready()
    for timeout in (b"99999999n", b"99999999u", b"30000m", b"30S", b"5M", b"1H"):
        call = client.start("/grpc.testing.TestService/EmptyCall", authority=s.authority(), timeout=timeout)
        call.send(empty_pb2.Empty(), end=True)
        (await call.finish()).expect_ok()
    # content-type with a +proto suffix (Content-Type rule) and no grpc-timeout at all.
    stream_id = client._quic.get_next_available_stream_id()
    call = Call(client, stream_id, "UnaryCall (application/grpc+proto)", ())
    client.calls[stream_id] = call
    client.http.send_headers(stream_id, [
        (b":method", b"POST"), (b":scheme", b"https"), (b":authority", s.authority()),
        (b":path", b"/grpc.testing.TestService/UnaryCall"), (b"content-type", b"application/grpc+proto"),
        (b"te", b"trailers"),
    ])
    call.send(messages_pb2.SimpleRequest(response_size=7), end=True)
    out = (await call.finish()).expect_ok()
    check_payload(messages_pb2.SimpleResponse.FromString(out.messages[0]).payload, 7)
    for encoded in (b"q6s=", b"q6s"):
        out = (await s.unary("EmptyCall", empty_pb2.Empty(), empty_pb2.Empty,
                             metadata=((ECHO_TRAILING_KEY, encoded),))).expect_ok()
        echoed = out.trailers.get(ECHO_TRAILING_KEY)
        check(echoed is not None and decode_bin(echoed) == b"\xab\xab",
              f"-bin value {encoded!r} echoed as {echoed!r}")


def client_streaming_bytes():
    """The four client_streaming requests as one run of Length-Prefixed-Messages."""
    return b"".join(
        frame_message(messages_pb2.StreamingInputCallRequest(payload=zeros(n)).SerializeToString())
        for n in (27182, 8, 1828, 45904)
    )


async def client_streaming_in_frames(s, frames, fin_on_last=False):
    call = await s.start("StreamingInputCall")
    for i, frame in enumerate(frames):
        call.send_raw(frame, end=fin_on_last and i == len(frames) - 1)
    if not fin_on_last:
        call.close_send()
    out = (await call.finish()).expect_ok()
    check(len(out.messages) == 1, f"{len(out.messages)} responses, expected 1")
    got = messages_pb2.StreamingInputCallResponse.FromString(out.messages[0]).aggregated_payload_size
    check(got == 74922, f"aggregated_payload_size is {got}, expected 74922")


async def case_message_framing(s):
    """Length-Prefixed-Messages are independent of DATA frames: a message prefix split over
    frames, one message over several frames, several messages in one frame."""
    data = client_streaming_bytes()
    cuts = [0, 3, 5, 6, 27000, 27195, 27220, len(data) - 1, len(data)]
    frames = [encode_frame(FrameType.DATA, data[a:b]) for a, b in zip(cuts, cuts[1:])]
    await client_streaming_in_frames(s, frames, fin_on_last=True)


async def case_empty_data_frames(s):
    """Zero-length DATA frames are valid anywhere in a body (RFC 9114 7.2.1 sets no minimum
    length; section 4.1 allows any number of DATA frames): before, between and after the
    messages."""
    data = client_streaming_bytes()
    empty = encode_frame(FrameType.DATA, b"")
    await client_streaming_in_frames(s, [empty, encode_frame(FrameType.DATA, data[:100]), empty,
                                         encode_frame(FrameType.DATA, data[100:]), empty])
    await check_still_serving(s, "zero-length DATA frames")


async def case_unknown_frames_and_streams(s):
    """RFC 9114 section 9: unknown frame types (reserved 0x1f*N+0x21) on a request stream and
    unknown unidirectional stream types are ignored, not errors."""
    client = await s.client_ready()
    uni = client._quic.get_next_available_stream_id(is_unidirectional=True)
    client._quic.send_stream_data(uni, encode_uint_var(0x1F * 2 + 0x21) + b"grease stream")
    call = await s.start("UnaryCall")
    call.send_raw(encode_frame(0x21, b"") + encode_frame(0x40, b"reserved frame"))
    call.send(messages_pb2.SimpleRequest(response_size=5))
    call.send_raw(encode_frame(0x1F * 3 + 0x21, b"x" * 100))
    call.close_send()
    out = (await call.finish()).expect_ok()
    check_payload(messages_pb2.SimpleResponse.FromString(out.messages[0]).payload, 5)
    await check_still_serving(s, "unknown frames and streams")


def request_head(s, path=b"/grpc.testing.TestService/EmptyCall"):
    return [
        (b":method", b"POST"), (b":scheme", b"https"), (b":authority", s.authority()), (b":path", path),
        (b"content-type", b"application/grpc"), (b"te", b"trailers"),
    ]


async def expect_malformed(s, name, headers, body=None):
    """RFC 9114 4.1.2: a malformed request MUST be treated as a stream error of type
    H3_MESSAGE_ERROR; the server may answer with an HTTP error first, or escalate to a
    connection error (section 8). Returns None if so, else what the server did instead."""
    client = await s.client_ready()
    stream_id = client._quic.get_next_available_stream_id()
    call = Call(client, stream_id, name, ())
    client.calls[stream_id] = call
    client.http.send_headers(stream_id, headers)
    if body is None:
        call.send(empty_pb2.Empty(), end=True)
    else:
        call.send_raw(body, end=True)
    try:
        await call.wait(call._ended, "the server's reaction", 5.0)
    except CaseFailed:
        if client.closed is not None:
            await s.close()
            if "H3_MESSAGE_ERROR" in client.closed:
                return None
            return f"closed the connection: {client.closed}"
        return "neither answered nor reset the stream within 5 s"
    if call.reset_code is not None:
        if call.reset_code == ErrorCode.H3_MESSAGE_ERROR:
            return None
        return f"reset the stream with {error_name(call.reset_code)}, not H3_MESSAGE_ERROR"
    status = call.header_blocks[0].get(b":status", b"") if call.header_blocks else b""
    if status.startswith(b"4"):
        return None
    grpc_status = call.header_blocks[-1].get(b"grpc-status") if call.header_blocks else None
    return f"answered :status {status.decode() or '-'} grpc-status {grpc_status.decode() if grpc_status else '-'}"


async def expect_all_malformed(s, variants, section):
    accepted = []
    for name, headers, *body in variants:
        outcome = await expect_malformed(s, name, headers, *body)
        if outcome is not None:
            accepted.append(f"{name}: {outcome}")
    check(not accepted, f"malformed requests (RFC 9114 {section}) not rejected: " + "; ".join(accepted))
    await check_still_serving(s, "malformed requests")


async def case_malformed_requests(s):
    """Malformed requests (RFC 9114 4.1.2, 4.2, 4.3.1, 10.3) are stream errors, not calls."""
    head = request_head(s)
    without = lambda name: [f for f in head if f[0] != name]  # noqa: E731
    await expect_all_malformed(s, [
        ("uppercase field name", head + [(b"X-Upper", b"1")]),
        ("field name with a space", head + [(b"x bad", b"1")]),
        ("CR in a field value", head + [(b"x-bad", b"a\rb")]),
        ("no :method", without(b":method")),
        ("no :scheme", without(b":scheme")),
        ("no :path", without(b":path")),
        ("empty :path", without(b":path") + [(b":path", b"")]),
        ("undefined pseudo-header", head[:4] + [(b":foo", b"bar")] + head[4:]),
    ], "4.1.2, 4.2, 4.3.1, 10.3")


async def case_connection_specific_fields(s):
    """RFC 9114 4.2: a message with a connection-specific field is malformed; TE is allowed in
    requests with the value "trailers" only."""
    head = request_head(s)
    no_te = [f for f in head if f[0] != b"te"]
    await expect_all_malformed(s, [
        ("connection", head + [(b"connection", b"keep-alive")]),
        ("keep-alive", head + [(b"keep-alive", b"timeout=5")]),
        ("proxy-connection", head + [(b"proxy-connection", b"keep-alive")]),
        ("transfer-encoding", head + [(b"transfer-encoding", b"chunked")]),
        ("upgrade", head + [(b"upgrade", b"h2c")]),
        ("te: gzip", no_te + [(b"te", b"gzip")]),
    ], "4.2")


async def case_pseudo_header_rules(s):
    """RFC 9114 4.3: pseudo-header fields come first, once each, and response ones (:status)
    never appear in requests; 4.3.1: exactly one :method, :scheme and :path."""
    head = request_head(s)
    await expect_all_malformed(s, [
        ("pseudo-header after a regular field", head[:3] + head[4:] + [head[3]]),
        ("two :path fields", head[:4] + [head[3]] + head[4:]),
        ("two :method fields", head[:1] + [head[0]] + head[1:]),
        (":status in a request", head[:4] + [(b":status", b"200")] + head[4:]),
    ], "4.3, 4.3.1")


async def case_content_length_mismatch(s):
    """RFC 9114 4.1.2: content-length not equal to the DATA received makes a request
    malformed."""
    body = encode_frame(FrameType.DATA, frame_message(b""))
    await expect_all_malformed(s, [
        ("content-length larger than the body", request_head(s) + [(b"content-length", b"100")], body),
        ("content-length smaller than the body", request_head(s) + [(b"content-length", b"2")], body),
    ], "4.1.2")


async def check_still_serving(s, what):
    client = s.client
    check(client is not None and client.closed is None, f"connection closed after {what}: {client and client.closed}")
    out = (await s.unary("EmptyCall", empty_pb2.Empty(), empty_pb2.Empty)).expect_ok()
    check(s.client is client, f"a new connection was needed after {what}")
    return out


async def case_cancel_after_begin(s):
    call = await s.start("StreamingInputCall")
    call.cancel()
    # The server may answer with RESET_STREAM (RFC 9000 section 3.5) or have nothing to send;
    # it must not complete the call, and the connection must carry on.
    await asyncio.sleep(0.2)
    check(not call.messages, "server answered a cancelled call")
    await check_still_serving(s, "cancelling a call before its first message")


async def case_cancel_after_first_response(s):
    call = await s.start("FullDuplexCall")
    call.send(duplex_request(31415, 27182))
    raw = await call.next_message()
    check(raw is not None, "stream ended before the first response")
    check_payload(messages_pb2.StreamingOutputCallResponse.FromString(raw).payload, 31415)
    call.cancel()
    # STOP_SENDING on a stream the server still sends on obliges a RESET_STREAM (RFC 9000 3.5).
    await call.wait(lambda: call.reset_code is not None or call.fin, "RESET_STREAM after STOP_SENDING", 5.0)
    check(call.reset_code is not None, "server finished the stream instead of resetting it after STOP_SENDING")
    await check_still_serving(s, "cancelling a call after its first response")


async def case_timeout_on_sleeping_server(s):
    """The server enforces grpc-timeout: the call ends with DEADLINE_EXCEEDED although this
    client keeps no deadline of its own."""
    call = await s.start("FullDuplexCall", timeout=b"1m")
    call.send(messages_pb2.StreamingOutputCallRequest(payload=zeros(27182)))
    await call.wait(call._ended, "end of the call after its 1 ms deadline", 10.0)
    if call.reset_code is not None and not call.header_blocks:
        raise CaseFailed(f"server reset the stream ({error_name(call.reset_code)}) without a status")
    if call.reset_code is not None:
        # Trailers may precede a reset; a reset alone says nothing about the deadline.
        check(len(call.header_blocks) >= 1 and b"grpc-status" in call.header_blocks[-1],
              f"server reset the stream ({error_name(call.reset_code)}) without trailers")
        code = int(call.header_blocks[-1][b"grpc-status"])
        check(code == 4, f"status {GRPC_CODES.get(code, code)}, expected DEADLINE_EXCEEDED")
        return
    out = await call.finish()
    out.expect_status(4)
    check(not out.messages, f"{len(out.messages)} responses to a request asking for none")


async def case_concurrent_large_unary(s):
    """Many calls at once on the one connection (after the cancellations above)."""
    outs = await asyncio.gather(
        *(s.unary("UnaryCall", large_unary_request(), messages_pb2.SimpleResponse) for _ in range(8))
    )
    for i, out in enumerate(outs):
        out.expect_ok()
        check_payload(out.response.payload, 314159, f"call {i} payload")


CASES = {
    "connection": case_connection,
    "empty_unary": case_empty_unary,
    "large_unary": case_large_unary,
    "client_compressed_unary": case_client_compressed_unary,
    "server_compressed_unary": case_server_compressed_unary,
    "client_streaming": case_client_streaming,
    "server_streaming": case_server_streaming,
    "ping_pong": case_ping_pong,
    "empty_stream": case_empty_stream,
    "custom_metadata": case_custom_metadata,
    "status_code_and_message": case_status_code_and_message,
    "special_status_message": case_special_status_message,
    "unimplemented_method": case_unimplemented_method,
    "unimplemented_service": case_unimplemented_service,
    "trailers_only": case_trailers_only,
    "request_header_forms": case_request_header_forms,
    "message_framing": case_message_framing,
    "empty_data_frames": case_empty_data_frames,
    "unknown_frames_and_streams": case_unknown_frames_and_streams,
    "malformed_requests": case_malformed_requests,
    "connection_specific_fields": case_connection_specific_fields,
    "pseudo_header_rules": case_pseudo_header_rules,
    "content_length_mismatch": case_content_length_mismatch,
    "cancel_after_begin": case_cancel_after_begin,
    "cancel_after_first_response": case_cancel_after_first_response,
    "timeout_on_sleeping_server": case_timeout_on_sleeping_server,
    "concurrent_large_unary": case_concurrent_large_unary,
}


def one_line(text):
    return " ".join(str(text).split()) or "(no detail)"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--ca", help="PEM file of the CA that signed the server")
    parser.add_argument("--server-name", default="localhost", help="TLS name and :authority host")
    parser.add_argument("--test-case", "--test_case", default="all", help="comma list or 'all'")
    parser.add_argument("--proto-root", default=None, help="directory holding grpc/testing/*.proto")
    parser.add_argument("--verbose", action="store_true", help="print every response to stderr")
    parser.add_argument("--list-cases", action="store_true", help="print the case names and exit")
    args = parser.parse_args(argv)
    if not args.list_cases and (args.port is None or args.ca is None):
        parser.error("--port and --ca are required")
    if args.test_case == "all":
        args.cases = list(CASES)
    else:
        args.cases = [c for c in args.test_case.split(",") if c]
        unknown = [c for c in args.cases if c not in CASES]
        if unknown:
            parser.error(f"unknown test case {unknown[0]!r}")
    return args


async def run(args):
    session = Session(args)
    passed = failed = 0
    try:
        for name in args.cases:
            started = time.monotonic()
            failure = None
            try:
                await asyncio.wait_for(CASES[name](session), CASE_TIME_LIMIT)
            except CaseFailed as err:
                failure = one_line(err)
            except asyncio.TimeoutError:
                failure = f"did not finish within {CASE_TIME_LIMIT:g} s"
            except Exception as err:  # a bug in a case must still yield a FAIL line
                failure = f"{type(err).__name__}: {one_line(err)}"
            if failure is None:
                passed += 1
                print(f"{name} PASS", flush=True)
            else:
                failed += 1
                print(f"{name} FAIL {failure}", flush=True)
            print(f"  {name}: {time.monotonic() - started:.3f} s", file=sys.stderr)
            if args.verbose and session.client is not None:
                for call in session.client.calls.values():
                    if not getattr(call, "dumped", False):
                        call.dumped = True
                        print(f"    {call.dump()}", file=sys.stderr)
            if failure is not None:
                # A failed case may leave the connection broken; the next one starts afresh.
                await session.close()
    finally:
        await session.close()
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


def main(argv):
    args = parse_args(argv)
    if args.list_cases:
        print("\n".join(CASES))
        return 0
    global empty_pb2, messages_pb2
    empty_pb2, messages_pb2, _test_pb2, _grpc = peer_protos.load(args.proto_root)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
