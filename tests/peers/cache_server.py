#!/usr/bin/env python3
"""An independent tiny-cache server on grpcio (grpc's C core), for interop tests.

The crate's client and its embedded server share one hand-written gRPC codec,
so a codec bug could hide on both sides. This peer speaks gRPC through a
different implementation and serves the tiny-cache wire contract (the one
the embedded server follows) well enough for tests/interop.rs to run the same
scenarios against it and against the embedded server and compare the results.

Usage:

    python cache_server.py [--host 127.0.0.1] [--port 0] [--max-items N]
                           [--max-memory-bytes N] [--max-value-bytes N]
                           [--stop-grace-ms N]

It generates the message modules from the repository's proto/ with
grpc_tools.protoc into a temporary directory at start-up (no generated code
is committed), binds, prints ``LISTENING <port>`` on stdout, and runs until
its standard input closes (so a test that crashes never leaves it behind).
Then it shuts down gracefully: GOAWAY, calls in flight get
``--stop-grace-ms`` to finish, new ones are refused.
Needs grpcio, grpcio-tools and protobuf, nothing else.

What it serves:

- ``cache.CacheService``, all nine methods, and ``grpc.health.v1.Health/Check``
  (SERVING for "" and "cache.CacheService", NOT_FOUND otherwise).
- Keys: 1 to 256 characters (code points); with a namespace the storage key
  ``<len>:<ns>:<key>`` must also fit in 256.
- ``x-cache-namespace``: trimmed; blank is the shared key space; at most 64
  characters; an ASCII letter or digit first, then letters, digits, ``.``,
  ``_`` and ``-``. Invalid is INVALID_ARGUMENT, checked before the key, and
  fails a Multi* call as a whole.
- TTL in whole seconds, ``<= 0`` never expires, expired once elapsed >= ttl.
- An entry costs its value length + 33 bytes; over ``--max-value-bytes`` is
  RESOURCE_EXHAUSTED, and so is one that cannot fit under ``--max-items`` /
  ``--max-memory-bytes`` at all; otherwise least-recently-used entries are
  evicted to make room.
- Handler errors go out the way the reference server sends them: response
  headers, one empty message, then trailers with the status. Errors before
  the handler (undecodable request: UNKNOWN; unknown method; a request over
  4 MiB) are trailers-only, from grpcio itself.
- ``x-request-id`` is echoed in the initial metadata (a fresh 32-hex id when
  absent).

Fault behaviours, selected per call by the request header ``x-fault``: a
comma-separated list of ``name=value`` items and bare flags, applied before
the handler runs (an unknown item is INVALID_ARGUMENT, so typos show up):

- ``sleep-ms=N``: stall N milliseconds before answering (ends early when the
  client cancels the call), then answer normally. A ``STALLING`` line on
  stdout tells the test the call arrived and is stalling.
- ``status=CODE``: fail every attempt with that gRPC code (a name such as
  ``UNAVAILABLE`` or a number) and the message in FAULT_MESSAGE below.
- ``unavailable-times=N``: fail the first N attempts on the same key with
  UNAVAILABLE, then behave normally. Counted per request key (the first key
  of a Multi* call, the service name of a health check, "" for Stats).
- ``pushback-ms=N``: attach trailing metadata ``grpc-retry-pushback-ms: N``
  to the failure; alone, it fails every attempt with UNAVAILABLE.
- ``abort-details``: attach a ``grpc-status-details-bin`` trailer (a
  serialized google.rpc.Status, see status_details()) to the failure; alone,
  it fails every attempt with ABORTED.
- ``headers-first``: send the initial metadata before failing, so the
  failure is HEADERS then trailers without a message, instead of a
  trailers-only response.
"""

import argparse
import collections
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from concurrent import futures

import grpc
from grpc_tools import protoc

# ----- limits and constants (the embedded server's defaults) --------------

# What an entry costs on top of its value bytes: the reference server counts
# sys.getsizeof(bytes), which is the length plus 33 bytes of object header.
ENTRY_OVERHEAD_BYTES = 33
# Default limits, the same as the embedded server's StoreConfig::default().
DEFAULT_MAX_ITEMS = 1_000_000
DEFAULT_MAX_MEMORY_BYTES = 1024 * 1024 * 1024
DEFAULT_MAX_VALUE_BYTES = 4 * 1024 * 1024 + ENTRY_OVERHEAD_BYTES
# The reference server's gRPC layer refuses request messages over 4 MiB.
MAX_RECEIVE_MESSAGE_BYTES = 4 * 1024 * 1024
# Key and namespace rules of the contract, in characters.
MAX_KEY_CHARS = 256
MAX_NAMESPACE_CHARS = 64
NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
# How often expired entries are swept out, as the reference server does.
EXPIRY_SWEEP_SECONDS = 10.0
# Health service names that are served.
SERVED_HEALTH_NAMES = ("", "cache.CacheService")
# Status message of injected faults: non-ASCII and '%' so that grpc core has
# to percent-encode it and the client has to decode it.
FAULT_MESSAGE = "fault injected: naïve 100% ☃"

NAMESPACE_HEADER = "x-cache-namespace"
REQUEST_ID_HEADER = "x-request-id"
FAULT_HEADER = "x-fault"

# Filled in by load_messages(): the generated modules.
cache_pb2 = None
health_pb2 = None


def load_messages(proto_dir, out_dir):
    """Compiles proto/*.proto with grpc_tools.protoc into out_dir and imports
    the generated message modules (no service stubs: the handlers below are
    registered generically)."""
    global cache_pb2, health_pb2
    args = [
        "grpc_tools.protoc",
        "-I" + proto_dir,
        "--python_out=" + out_dir,
        "cache.proto",
        "health.proto",
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on " + proto_dir)
    sys.path.insert(0, out_dir)
    import cache_pb2 as cache_module  # noqa: E402 (generated just above)
    import health_pb2 as health_module  # noqa: E402

    cache_pb2, health_pb2 = cache_module, health_module


class ServiceError(Exception):
    """A handler's refusal: becomes the call's status (code, message)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message):
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message)


def exhausted(message):
    return ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)


# ----- keys and namespaces ----------------------------------------------------


def parse_namespace(raw):
    """The namespace from the raw header value: None for the shared space."""
    if raw is None:
        return None
    namespace = raw.strip()
    if not namespace:
        return None
    if len(namespace) > MAX_NAMESPACE_CHARS:
        raise invalid(
            "namespace must be at most %d characters, got %d"
            % (MAX_NAMESPACE_CHARS, len(namespace))
        )
    if not NAMESPACE_PATTERN.match(namespace):
        raise invalid(
            "namespace %r must start with a letter or digit and contain only "
            "letters, digits, '.', '_' and '-'" % namespace
        )
    return namespace


def storage_key(namespace, key):
    """The validated key the store files `key` under in `namespace`."""
    if not 1 <= len(key) <= MAX_KEY_CHARS:
        raise invalid("key must be 1 to %d characters, got %d" % (MAX_KEY_CHARS, len(key)))
    if namespace is None:
        return key
    stored = "%d:%s:%s" % (len(namespace), namespace, key)
    if len(stored) > MAX_KEY_CHARS:
        raise invalid(
            "key is %d characters once namespaced, over the %d-character limit"
            % (len(stored), MAX_KEY_CHARS)
        )
    return stored


# ----- the store: LRU + TTL with byte accounting ------------------------------


class Entry:
    __slots__ = ("value", "expires_at")

    def __init__(self, value, ttl_seconds, now):
        self.value = value
        # ttl <= 0 never expires; otherwise expired once now >= expires_at.
        self.expires_at = now + ttl_seconds if ttl_seconds > 0 else None

    def cost(self):
        return len(self.value) + ENTRY_OVERHEAD_BYTES

    def expired(self, now):
        return self.expires_at is not None and now >= self.expires_at


class Store:
    """The cache. One lock around everything; the OrderedDict keeps recency
    (least recently used first)."""

    def __init__(self, max_items, max_memory_bytes, max_value_bytes):
        self.max_items = max_items
        self.max_memory_bytes = max_memory_bytes
        self.max_value_bytes = max_value_bytes
        self.lock = threading.Lock()
        self.entries = collections.OrderedDict()
        self.memory_bytes = 0
        self.hits = 0
        self.misses = 0
        self.lru_evictions = 0
        self.expired_removals = 0
        self.rejected_oversize = 0
        self.rejected_capacity = 0

    # All methods below that start with an underscore expect the lock held.

    def _remove(self, key):
        entry = self.entries.pop(key)
        self.memory_bytes -= entry.cost()
        return entry

    def _live(self, key, now):
        """The live entry without touching recency; removes an expired one."""
        entry = self.entries.get(key)
        if entry is not None and entry.expired(now):
            self._remove(key)
            self.expired_removals += 1
            return None
        return entry

    def _insert(self, key, entry, now):
        cost = entry.cost()
        if cost > self.max_value_bytes:
            self.rejected_oversize += 1
            raise exhausted(
                "value too large: the entry needs %d bytes (value + %d bytes overhead) "
                "and the per-entry limit is %d bytes"
                % (cost, ENTRY_OVERHEAD_BYTES, self.max_value_bytes)
            )
        # Refused before evicting anything: evicting for a write that fails
        # anyway would lose data for nothing.
        if cost > self.max_memory_bytes or self.max_items == 0:
            self.rejected_capacity += 1
            raise exhausted("cache capacity exhausted: an entry of %d bytes cannot fit" % cost)
        # A replaced entry is released first, so it never evicts another key.
        if key in self.entries:
            self._remove(key)
        while self.entries and (
            self.memory_bytes + cost > self.max_memory_bytes
            or len(self.entries) >= self.max_items
        ):
            _, victim = self.entries.popitem(last=False)
            self.memory_bytes -= victim.cost()
            if victim.expired(now):
                self.expired_removals += 1
            else:
                self.lru_evictions += 1
        self.entries[key] = entry
        self.memory_bytes += cost

    def _purge_expired(self, now):
        for key in [k for k, e in self.entries.items() if e.expired(now)]:
            self._remove(key)
            self.expired_removals += 1

    def get(self, key):
        now = time.monotonic()
        with self.lock:
            entry = self._live(key, now)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            self.entries.move_to_end(key)
            return entry.value

    def set(self, key, value, ttl):
        now = time.monotonic()
        with self.lock:
            self._insert(key, Entry(value, ttl, now), now)

    def set_if_absent(self, key, value, ttl):
        now = time.monotonic()
        with self.lock:
            if self._live(key, now) is not None:
                return cache_pb2.EXISTS
            self._insert(key, Entry(value, ttl, now), now)
            return cache_pb2.STORED

    def compare_and_set(self, key, expected, value, ttl):
        now = time.monotonic()
        with self.lock:
            current = self._live(key, now)
            if current is None:
                return cache_pb2.NOT_FOUND
            if current.value != expected:
                return cache_pb2.MISMATCH
            self._insert(key, Entry(value, ttl, now), now)
            return cache_pb2.STORED

    def delete(self, key):
        now = time.monotonic()
        with self.lock:
            if key in self.entries:
                if self._remove(key).expired(now):
                    self.expired_removals += 1

    def sweep(self):
        with self.lock:
            self._purge_expired(time.monotonic())

    def stats(self):
        def i32(n):  # the proto's counters are int32: saturate, never wrap
            return min(n, 2**31 - 1)

        with self.lock:
            self._purge_expired(time.monotonic())
            reads = self.hits + self.misses
            return cache_pb2.CacheStats(
                size=i32(len(self.entries)),
                hits=i32(self.hits),
                misses=i32(self.misses),
                evictions=i32(self.lru_evictions + self.expired_removals),
                hit_rate=self.hits / reads if reads else 0.0,
                memory_usage_bytes=self.memory_bytes,
                max_memory_bytes=self.max_memory_bytes,
                max_items=i32(self.max_items),
                max_value_bytes=self.max_value_bytes,
                lru_evictions=i32(self.lru_evictions),
                expired_removals=i32(self.expired_removals),
                rejected_oversize=i32(self.rejected_oversize),
                rejected_capacity=i32(self.rejected_capacity),
            )


# ----- the RPCs: request message in, response message out --------------------


class CacheService:
    def __init__(self, store):
        self.store = store

    def Get(self, request, namespace):
        namespace = parse_namespace(namespace)
        value = self.store.get(storage_key(namespace, request.key))
        if value is None:
            return cache_pb2.CacheValue(found=False)
        return cache_pb2.CacheValue(found=True, value=value)

    def MultiGet(self, request, namespace):
        namespace = parse_namespace(namespace)
        reply = cache_pb2.MultiCacheValueResponse()
        for key in request.keys:
            try:
                value = self.store.get(storage_key(namespace, key))
            except ServiceError as error:
                reply.items.add(key=key, found=False, error=error.message)
                continue
            if value is None:
                reply.items.add(key=key, found=False)
            else:
                reply.items.add(key=key, found=True, value=value)
        return reply

    def Set(self, request, namespace):
        namespace = parse_namespace(namespace)
        self.store.set(storage_key(namespace, request.key), request.value, request.ttl)
        return cache_pb2.CacheResponse(status=cache_pb2.OK)

    def SetIfAbsent(self, request, namespace):
        namespace = parse_namespace(namespace)
        status = self.store.set_if_absent(
            storage_key(namespace, request.key), request.value, request.ttl
        )
        return cache_pb2.ConditionalCacheResponse(status=status)

    def CompareAndSet(self, request, namespace):
        namespace = parse_namespace(namespace)
        status = self.store.compare_and_set(
            storage_key(namespace, request.key),
            request.expected_value,
            request.value,
            request.ttl,
        )
        return cache_pb2.ConditionalCacheResponse(status=status)

    def MultiSet(self, request, namespace):
        namespace = parse_namespace(namespace)
        reply = cache_pb2.MultiCacheResponse()
        for item in request.items:
            try:
                self.store.set(storage_key(namespace, item.key), item.value, item.ttl)
            except ServiceError as error:
                reply.items.add(key=item.key, status=cache_pb2.ERROR, error=error.message)
            else:
                reply.items.add(key=item.key, status=cache_pb2.OK)
        return reply

    def Delete(self, request, namespace):
        namespace = parse_namespace(namespace)
        self.store.delete(storage_key(namespace, request.key))
        return cache_pb2.CacheResponse(status=cache_pb2.OK)

    def MultiDelete(self, request, namespace):
        namespace = parse_namespace(namespace)
        reply = cache_pb2.MultiCacheResponse()
        for key in request.keys:
            try:
                self.store.delete(storage_key(namespace, key))
            except ServiceError as error:
                reply.items.add(key=key, status=cache_pb2.ERROR, error=error.message)
            else:
                reply.items.add(key=key, status=cache_pb2.OK)
        return reply

    def Stats(self, request, namespace):
        # Counters of the whole server: the namespace header is ignored.
        return self.store.stats()


def health_check(request, namespace):
    if request.service in SERVED_HEALTH_NAMES:
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
    raise ServiceError(grpc.StatusCode.NOT_FOUND, "unknown service %r" % request.service)


def request_key(request):
    """The key a fault counter is kept under (see unavailable-times): the
    request's key, the first key of a Multi* call, the service name of a
    health check, "" for Stats."""
    fields = request.DESCRIPTOR.fields_by_name
    if "key" in fields:
        return request.key
    if "service" in fields:
        return request.service
    if "keys" in fields:
        return request.keys[0] if request.keys else ""
    if "items" in fields:
        return request.items[0].key if request.items else ""
    return ""


# ----- faults -----------------------------------------------------------------


def status_details(code, message):
    """A serialized google.rpc.Status{code, message}, encoded by hand (field 1
    varint, field 2 length-delimited UTF-8) so no googleapis package is
    needed. tests/interop.rs expects exactly these bytes."""

    def varint(n):
        out = bytearray()
        while True:
            low = n & 0x7F
            n >>= 7
            if n:
                out.append(low | 0x80)
            else:
                out.append(low)
                return bytes(out)

    text = message.encode("utf-8")
    return b"\x08" + varint(code) + b"\x12" + varint(len(text)) + text


def parse_code(text):
    if text.isdigit():
        for code in grpc.StatusCode:
            if code.value[0] == int(text):
                return code
    else:
        for code in grpc.StatusCode:
            if code.name == text.upper():
                return code
    raise invalid("x-fault: unknown status code %r" % text)


class Faults:
    """Parses x-fault and applies it; keeps the per-key attempt counters."""

    def __init__(self):
        self.lock = threading.Lock()
        self.attempts = collections.Counter()

    def apply(self, spec, key, context, rid):
        """Stalls or fails the call as `spec` asks; returns normally when the
        call should go on to its handler."""
        options = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, value = item.partition("=")
            if name not in (
                "sleep-ms",
                "status",
                "unavailable-times",
                "pushback-ms",
                "abort-details",
                "headers-first",
            ):
                raise invalid("x-fault: unknown item %r" % item)
            options[name] = value

        def number(name):
            try:
                return int(options[name])
            except ValueError:
                raise invalid("x-fault: %s needs a whole number, got %r" % (name, options[name]))

        if "sleep-ms" in options:
            # Wait, but stop as soon as the client gives up on the call.
            cancelled = threading.Event()
            context.add_callback(cancelled.set)
            print("STALLING", flush=True)
            cancelled.wait(number("sleep-ms") / 1000.0)

        code = None
        if "status" in options:
            code = parse_code(options["status"])
        if "unavailable-times" in options:
            with self.lock:
                self.attempts[key] += 1
                attempt = self.attempts[key]
            if attempt <= number("unavailable-times"):
                code = grpc.StatusCode.UNAVAILABLE
        elif code is None and "pushback-ms" in options:
            code = grpc.StatusCode.UNAVAILABLE
        elif code is None and "abort-details" in options:
            code = grpc.StatusCode.ABORTED
        if code is None:
            return

        trailers = []
        if "pushback-ms" in options:
            # Sent as given (a negative value means "do not retry").
            trailers.append(("grpc-retry-pushback-ms", str(number("pushback-ms"))))
        if "abort-details" in options:
            details = status_details(code.value[0], FAULT_MESSAGE)
            trailers.append(("grpc-status-details-bin", details))
        if trailers:
            context.set_trailing_metadata(trailers)
        if "headers-first" in options:
            context.send_initial_metadata(((REQUEST_ID_HEADER, rid),))
        context.abort(code, FAULT_MESSAGE)


# ----- wiring: one generic handler per method ---------------------------------


def metadata_value(context, name):
    for key, value in context.invocation_metadata():
        if key == name:
            return value
    return None


def request_id(context):
    """The caller's x-request-id, or a fresh 32-hex one."""
    return metadata_value(context, REQUEST_ID_HEADER) or uuid.uuid4().hex


def unary(request_type, response_type, handler, faults):
    """A grpcio method handler that takes and returns raw bytes, so that
    decoding and the error shapes stay under this file's control."""

    def behaviour(raw, context):
        try:
            request = request_type.FromString(raw)
        except Exception as error:  # protobuf's DecodeError, bad UTF-8 keys...
            # The contract: an undecodable request is UNKNOWN, trailers-only.
            context.abort(grpc.StatusCode.UNKNOWN, "cannot decode the request: %s" % error)
        rid = request_id(context)
        try:
            spec = metadata_value(context, FAULT_HEADER)
            if spec:
                faults.apply(spec, request_key(request), context, rid)
            context.send_initial_metadata(((REQUEST_ID_HEADER, rid),))
            return handler(request, metadata_value(context, NAMESPACE_HEADER)).SerializeToString()
        except ServiceError as error:
            # The reference server's shape for handler errors: headers, an
            # empty message, then the status in the trailers.
            context.set_code(error.code)
            context.set_details(error.message)
            return response_type().SerializeToString()

    return grpc.unary_unary_rpc_method_handler(behaviour)


def build_handlers(service, faults):
    c = cache_pb2
    methods = {
        "Get": (c.CacheKey, c.CacheValue),
        "MultiGet": (c.MultiCacheKeyRequest, c.MultiCacheValueResponse),
        "Set": (c.CacheItem, c.CacheResponse),
        "SetIfAbsent": (c.CacheItem, c.ConditionalCacheResponse),
        "CompareAndSet": (c.CompareAndSetRequest, c.ConditionalCacheResponse),
        "MultiSet": (c.MultiCacheItemRequest, c.MultiCacheResponse),
        "Delete": (c.CacheKey, c.CacheResponse),
        "MultiDelete": (c.MultiCacheKeyRequest, c.MultiCacheResponse),
        "Stats": (c.Empty, c.CacheStats),
    }
    cache = grpc.method_handlers_generic_handler(
        "cache.CacheService",
        {
            name: unary(request, response, getattr(service, name), faults)
            for name, (request, response) in methods.items()
        },
    )
    health = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {
            "Check": unary(
                health_pb2.HealthCheckRequest,
                health_pb2.HealthCheckResponse,
                health_check,
                faults,
            )
        },
    )
    return (cache, health)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--max-items", type=int, default=DEFAULT_MAX_ITEMS)
    parser.add_argument("--max-memory-bytes", type=int, default=DEFAULT_MAX_MEMORY_BYTES)
    parser.add_argument("--max-value-bytes", type=int, default=DEFAULT_MAX_VALUE_BYTES)
    parser.add_argument(
        "--stop-grace-ms",
        type=int,
        default=500,
        help="how long calls in flight may still run once stdin closes",
    )
    parser.add_argument(
        "--proto-dir",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto"),
        help="where cache.proto and health.proto are (default: the repository's proto/)",
    )
    args = parser.parse_args()

    generated = tempfile.mkdtemp(prefix="tiny-cache-peer-")
    try:
        load_messages(os.path.abspath(args.proto_dir), generated)
        store = Store(args.max_items, args.max_memory_bytes, args.max_value_bytes)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=32),
            handlers=build_handlers(CacheService(store), Faults()),
            options=[
                ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES),
                ("grpc.max_send_message_length", -1),
                # Never share a port with another process's server.
                ("grpc.so_reuseport", 0),
            ],
        )
        port = server.add_insecure_port("%s:%d" % (args.host, args.port))
        if port == 0:
            raise SystemExit("cannot bind %s:%d" % (args.host, args.port))
        server.start()

        def sweep_forever():
            while True:
                time.sleep(EXPIRY_SWEEP_SECONDS)
                store.sweep()

        threading.Thread(target=sweep_forever, daemon=True).start()
        print("LISTENING %d" % port, flush=True)
        # Serve until whoever started us closes our standard input.
        while sys.stdin.buffer.read(4096):
            pass
        server.stop(grace=args.stop_grace_ms / 1000.0).wait()
    finally:
        shutil.rmtree(generated, ignore_errors=True)


if __name__ == "__main__":
    main()
