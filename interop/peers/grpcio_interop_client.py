#!/usr/bin/env python3
"""grpc's interop client cases, run by grpcio (gRPC's C-core, an independent HTTP/2 stack)
against one of our servers over TLS.

Cases follow grpc/grpc doc/interop-test-descriptions.md. Prints one line per case,
``CASE PASS`` or ``CASE FAIL reason``, then ``N passed, N failed``; exits 0 iff every case
passed, 1 if one failed, 2 on bad arguments.
"""

import argparse
import concurrent.futures
import os
import queue
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import peer_protos  # noqa: E402

# Upper bound on one call, so a hung server fails the case instead of the run.
CALL_TIMEOUT = 30.0
SPECIAL_STATUS_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"
ECHO_INITIAL = ("x-grpc-test-echo-initial", "test_initial_metadata_value")
ECHO_TRAILING = ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab")

empty_pb2 = messages_pb2 = test_pb2_grpc = None  # set by main() once the protos are compiled


class CaseFailed(Exception):
    """A case's assertion did not hold."""


def check(cond, message):
    if not cond:
        raise CaseFailed(message)


def zeros(n):
    return messages_pb2.Payload(body=bytes(n))


def check_payload(payload, size, what="payload"):
    got = len(payload.body)
    check(got == size, f"{what} is {got} bytes, expected {size}")
    check(payload.body == bytes(size), f"{what} is not all zeros")


class Pipe:
    """A request iterator fed one message at a time, for bidi calls driven step by step."""

    _CLOSE = object()

    def __init__(self):
        self._queue = queue.Queue()

    def add(self, request):
        self._queue.put(request)

    def close(self):
        self._queue.put(self._CLOSE)

    def __iter__(self):
        return self

    def __next__(self):
        item = self._queue.get()
        if item is self._CLOSE:
            raise StopIteration()
        return item

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        # grpcio reads requests on its own thread; it must never be left blocked.
        self.close()


def metadata_value(metadata, key):
    values = [m.value for m in metadata or () if m.key == key]
    check(len(values) <= 1, f"{key} appears {len(values)} times")
    return values[0] if values else None


def expect_status(err, code, message=None):
    check(isinstance(err, grpc.RpcError), f"expected an RPC error, got {err!r}")
    check(err.code() == code, f"status {err.code()} {err.details()!r}, expected {code}")
    if message is not None:
        check(err.details() == message, f"message {err.details()!r}, expected {message!r}")


def case_empty_unary(stub, _channel):
    response = stub.EmptyCall(empty_pb2.Empty(), timeout=CALL_TIMEOUT)
    check(isinstance(response, empty_pb2.Empty), f"response is {type(response)}")
    check(response.ByteSize() == 0, "response is not empty")


def large_unary_request(**extra):
    return messages_pb2.SimpleRequest(response_size=314159, payload=zeros(271828), **extra)


def case_large_unary(stub, _channel):
    response = stub.UnaryCall(large_unary_request(), timeout=CALL_TIMEOUT)
    check_payload(response.payload, 314159)


def case_client_compressed_unary(stub, _channel):
    probe = large_unary_request(expect_compressed=messages_pb2.BoolValue(value=True))
    try:
        stub.UnaryCall(probe, timeout=CALL_TIMEOUT)
        raise CaseFailed("uncompressed probe expecting compression succeeded")
    except grpc.RpcError as err:
        expect_status(err, grpc.StatusCode.INVALID_ARGUMENT)
    response = stub.UnaryCall(probe, timeout=CALL_TIMEOUT, compression=grpc.Compression.Gzip)
    check_payload(response.payload, 314159)
    plain = large_unary_request(expect_compressed=messages_pb2.BoolValue(value=False))
    response = stub.UnaryCall(plain, timeout=CALL_TIMEOUT, compression=grpc.Compression.NoCompression)
    check_payload(response.payload, 314159)


def case_server_compressed_unary(stub, _channel):
    # grpcio hides the per-message compression flag; this checks both answers decode.
    for compressed in (True, False):
        request = large_unary_request(response_compressed=messages_pb2.BoolValue(value=compressed))
        response = stub.UnaryCall(request, timeout=CALL_TIMEOUT)
        check_payload(response.payload, 314159, f"payload (response_compressed={compressed})")


def case_client_streaming(stub, _channel):
    sizes = (27182, 8, 1828, 45904)
    requests = (messages_pb2.StreamingInputCallRequest(payload=zeros(n)) for n in sizes)
    response = stub.StreamingInputCall(requests, timeout=CALL_TIMEOUT)
    got = response.aggregated_payload_size
    check(got == 74922, f"aggregated_payload_size is {got}, expected 74922")


def case_server_streaming(stub, _channel):
    sizes = (31415, 9, 2653, 58979)
    request = messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=n) for n in sizes]
    )
    responses = list(stub.StreamingOutputCall(request, timeout=CALL_TIMEOUT))
    check(len(responses) == 4, f"{len(responses)} responses, expected 4")
    for i, (response, size) in enumerate(zip(responses, sizes)):
        check_payload(response.payload, size, f"response {i} payload")


def duplex_request(response_size, payload_size, **extra):
    return messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=response_size)],
        payload=zeros(payload_size),
        **extra,
    )


def case_ping_pong(stub, _channel):
    steps = ((31415, 27182), (9, 8), (2653, 1828), (58979, 45904))
    with Pipe() as pipe:
        responses = stub.FullDuplexCall(pipe, timeout=CALL_TIMEOUT)
        for i, (response_size, payload_size) in enumerate(steps):
            pipe.add(duplex_request(response_size, payload_size))
            response = next(responses, None)
            check(response is not None, f"stream ended after {i} responses, expected 4")
            check_payload(response.payload, response_size, f"response {i} payload")
        pipe.close()
        extra = list(responses)
        check(not extra, f"{len(extra)} responses after the 4th")


def case_empty_stream(stub, _channel):
    responses = list(stub.FullDuplexCall(iter(()), timeout=CALL_TIMEOUT))
    check(not responses, f"{len(responses)} responses, expected none")


def check_echoed(call, what):
    initial = metadata_value(call.initial_metadata(), ECHO_INITIAL[0])
    check(initial == ECHO_INITIAL[1], f"{what}: initial {ECHO_INITIAL[0]} is {initial!r}")
    trailing = metadata_value(call.trailing_metadata(), ECHO_TRAILING[0])
    check(trailing == ECHO_TRAILING[1], f"{what}: trailing {ECHO_TRAILING[0]} is {trailing!r}")


def case_custom_metadata(stub, _channel):
    metadata = (ECHO_INITIAL, ECHO_TRAILING)
    response, call = stub.UnaryCall.with_call(
        large_unary_request(), metadata=metadata, timeout=CALL_TIMEOUT
    )
    check_echoed(call, "UnaryCall")
    check_payload(response.payload, 314159)
    responses = stub.FullDuplexCall(
        iter([duplex_request(314159, 271828)]), metadata=metadata, timeout=CALL_TIMEOUT
    )
    got = list(responses)
    check_echoed(responses, "FullDuplexCall")
    check(len(got) == 1, f"FullDuplexCall: {len(got)} responses, expected 1")
    check_payload(got[0].payload, 314159)


def status_request(cls, message):
    return cls(response_status=messages_pb2.EchoStatus(code=2, message=message))


def case_status_code_and_message(stub, _channel):
    message = "test status message"
    try:
        stub.UnaryCall(status_request(messages_pb2.SimpleRequest, message), timeout=CALL_TIMEOUT)
        raise CaseFailed("UnaryCall succeeded, expected UNKNOWN")
    except grpc.RpcError as err:
        expect_status(err, grpc.StatusCode.UNKNOWN, message)
    request = status_request(messages_pb2.StreamingOutputCallRequest, message)
    try:
        list(stub.FullDuplexCall(iter([request]), timeout=CALL_TIMEOUT))
        raise CaseFailed("FullDuplexCall succeeded, expected UNKNOWN")
    except grpc.RpcError as err:
        expect_status(err, grpc.StatusCode.UNKNOWN, message)


def case_special_status_message(stub, _channel):
    request = status_request(messages_pb2.SimpleRequest, SPECIAL_STATUS_MESSAGE)
    try:
        stub.UnaryCall(request, timeout=CALL_TIMEOUT)
        raise CaseFailed("UnaryCall succeeded, expected UNKNOWN")
    except grpc.RpcError as err:
        expect_status(err, grpc.StatusCode.UNKNOWN, SPECIAL_STATUS_MESSAGE)


def case_unimplemented_method(stub, _channel):
    try:
        stub.UnimplementedCall(empty_pb2.Empty(), timeout=CALL_TIMEOUT)
        raise CaseFailed("call succeeded, expected UNIMPLEMENTED")
    except grpc.RpcError as err:
        expect_status(err, grpc.StatusCode.UNIMPLEMENTED)


def case_unimplemented_service(_stub, channel):
    stub = test_pb2_grpc.UnimplementedServiceStub(channel)
    try:
        stub.UnimplementedCall(empty_pb2.Empty(), timeout=CALL_TIMEOUT)
        raise CaseFailed("call succeeded, expected UNIMPLEMENTED")
    except grpc.RpcError as err:
        expect_status(err, grpc.StatusCode.UNIMPLEMENTED)


def case_cancel_after_begin(stub, _channel):
    with Pipe() as pipe:
        future = stub.StreamingInputCall.future(pipe, timeout=CALL_TIMEOUT)
        future.cancel()
        check(future.cancelled(), "the call does not report itself cancelled")
        check(future.code() == grpc.StatusCode.CANCELLED, f"status {future.code()}, expected CANCELLED")


def case_cancel_after_first_response(stub, _channel):
    with Pipe() as pipe:
        responses = stub.FullDuplexCall(pipe, timeout=CALL_TIMEOUT)
        pipe.add(duplex_request(31415, 27182))
        check_payload(next(responses).payload, 31415)
        responses.cancel()
        try:
            next(responses)
            raise CaseFailed("the stream went on after cancel")
        except grpc.RpcError as err:
            expect_status(err, grpc.StatusCode.CANCELLED)


def case_timeout_on_sleeping_server(stub, _channel):
    with Pipe() as pipe:
        responses = stub.FullDuplexCall(pipe, timeout=0.001)
        pipe.add(messages_pb2.StreamingOutputCallRequest(payload=zeros(27182)))
        try:
            next(responses)
            raise CaseFailed("got a response, expected DEADLINE_EXCEEDED")
        except StopIteration:
            raise CaseFailed("the call ended OK, expected DEADLINE_EXCEEDED")
        except grpc.RpcError as err:
            expect_status(err, grpc.StatusCode.DEADLINE_EXCEEDED)


def case_concurrent_large_unary(stub, _channel):
    # Runs after the cancellation cases: the same channel (one HTTP/2 connection) must still
    # carry many calls at once.
    futures = [stub.UnaryCall.future(large_unary_request(), timeout=CALL_TIMEOUT) for _ in range(16)]
    for i, future in enumerate(futures):
        check_payload(future.result().payload, 314159, f"call {i} payload")


CASES = {
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
    parser.add_argument("--server-name", default="localhost", help="TLS name and :authority")
    parser.add_argument("--test-case", "--test_case", default="all", help="comma list or 'all'")
    parser.add_argument("--proto-root", default=None, help="directory holding grpc/testing/*.proto")
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


def main(argv):
    args = parse_args(argv)
    if args.list_cases:
        print("\n".join(CASES))
        return 0
    global empty_pb2, messages_pb2, test_pb2_grpc
    empty_pb2, messages_pb2, _test_pb2, test_pb2_grpc = peer_protos.load(args.proto_root)
    with open(args.ca, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    options = [
        ("grpc.ssl_target_name_override", args.server_name),
        ("grpc.default_authority", args.server_name),
        ("grpc.enable_http_proxy", 0),
        ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ]
    passed = failed = 0
    with grpc.secure_channel(f"{args.host}:{args.port}", credentials, options=options) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=15)
            connect_error = None
        except grpc.FutureTimeoutError:
            connect_error = f"cannot connect to {args.host}:{args.port} within 15 s"
        stub = test_pb2_grpc.TestServiceStub(channel)
        for name in args.cases:
            started = time.monotonic()
            try:
                if connect_error:
                    raise CaseFailed(connect_error)
                CASES[name](stub, channel)
            except CaseFailed as err:
                failed += 1
                print(f"{name} FAIL {one_line(err)}", flush=True)
            except grpc.RpcError as err:
                failed += 1
                print(f"{name} FAIL unexpected status {err.code()} {err.details()!r}", flush=True)
            except concurrent.futures.CancelledError:
                failed += 1
                print(f"{name} FAIL call cancelled", flush=True)
            except Exception as err:  # a bug in a case must still yield a FAIL line
                failed += 1
                print(f"{name} FAIL {type(err).__name__}: {one_line(err)}", flush=True)
            else:
                passed += 1
                print(f"{name} PASS", flush=True)
            print(f"  {name}: {time.monotonic() - started:.3f} s", file=sys.stderr)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
