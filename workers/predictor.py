"""The predict worker: one process that keeps Xception loaded and describes crops for the
web's predict endpoint (explorer/predict_api.py), so no web process ever loads the network.

`python manage.py predictor` runs it (`explore` starts one beside its workers). It listens
on PREDICT_ADDRESS (a Unix socket in DATA_DIR by default, or host:port) and accepts only
clients that know the key derived from SECRET_KEY. Each connection is one request: a JSON
header then the crops as raw uint8 bytes; the answer is a JSON header then the features as
raw float32 bytes. No pickle crosses the socket.

Requests that arrive while the network is busy wait in a queue and go through together as
one batch: four clients at once cost one pass of the network, not four in turn.
"""
import contextlib
import hashlib
import json
import logging
import os
import queue
import socket
import struct
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge

import numpy as np

from workers.pipeline.features import CROP  # the network's input side

log = logging.getLogger(__name__)

MAX_BATCH = 32  # crops per pass of the network
MAX_CROPS = 512  # per request: a request is at most a bounded video's worth of crops
HANDSHAKE_SECONDS = 5.0  # to connect and authenticate; then reads wait as long as the request may


class PredictorUnavailable(Exception):
    """The predict worker cannot be reached or did not answer; the message says what to do."""


def address_of(setting):
    """A socket address: 'host:port' -> (host, port); anything else is a Unix socket's path."""
    host, _, port = str(setting).rpartition(":")
    if host and port.isdigit() and "/" not in host:
        return host, int(port)
    return str(setting)


def key_from(secret):
    return hashlib.sha256(b"explorer-predictor:" + secret.encode()).digest()


# --- the client side (the web process) ---

def describe(crops, precision, address, secret, timeout=60.0):
    """Features (n, 2048) float32 of uint8 crops (n, 299, 299, 3), computed by the predict worker."""
    crops = np.ascontiguousarray(crops, dtype=np.uint8)
    if crops.ndim != 4 or crops.shape[1:] != (CROP, CROP, 3) or not 0 < len(crops) <= MAX_CROPS:
        raise ValueError(f"crops must be 1 to {MAX_CROPS} of {CROP}x{CROP}x3, not {crops.shape}")
    address = address_of(address)
    try:
        connection = _connect(address, key_from(secret), timeout)
    except AuthenticationError:
        raise PredictorUnavailable(f"the predict worker at {address} refused this server's key: both must have "
                                   "the same DJANGO_SECRET_KEY") from None
    except (OSError, EOFError) as exc:
        raise PredictorUnavailable(f"the predict worker is not running at {address} ({exc}): start it with "
                                   "`python manage.py predictor`") from None
    with connection:
        try:
            connection.send_bytes(json.dumps({"precision": precision, "crops": len(crops), "seconds": timeout}).encode())
            connection.send_bytes(crops.tobytes())
            if not connection.poll(timeout):
                raise PredictorUnavailable(f"the predict worker did not answer within {timeout:.0f} s")
            header = json.loads(connection.recv_bytes())
            if "error" in header:
                raise PredictorUnavailable(f"the predict worker failed: {header['error']}")
            return np.frombuffer(connection.recv_bytes(), dtype=np.float32).reshape(len(crops), -1)
        except (OSError, EOFError) as exc:
            raise PredictorUnavailable(f"the predict worker closed the connection ({exc})") from None


def _socket_for(address):
    return socket.socket(socket.AF_INET if isinstance(address, tuple) else socket.AF_UNIX, socket.SOCK_STREAM)


def _read_timeout(sock, seconds):
    """Every read on the (blocking) socket gives up after `seconds`: a peer that goes silent
    mid-handshake or mid-request cannot hold a thread for good."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", int(seconds), int(seconds % 1 * 1e6)))


def _connect(address, key, timeout):
    """A connection to the predict worker, authenticated both ways (multiprocessing's HMAC
    challenge), with the connect and every read bounded in time."""
    sock = _socket_for(address)
    try:
        sock.settimeout(min(timeout, HANDSHAKE_SECONDS))
        sock.connect(address)
        sock.settimeout(None)
        _read_timeout(sock, timeout)
    except BaseException:
        sock.close()
        raise
    connection = Connection(sock.detach())
    try:
        answer_challenge(connection, key)
        deliver_challenge(connection, key)
    except BaseException:
        connection.close()
        raise
    return connection


# --- the server side (its own process) ---

class _Request:
    def __init__(self, precision, crops, seconds):
        self.precision, self.crops = precision, crops
        self.deadline = time.monotonic() + seconds  # past it, its client has given up
        self.features, self.error = None, None
        self.done = threading.Event()


class Predictor:
    """Serves `describe` requests on `address` with one network per precision, batching the
    requests that wait while it runs. `weights` as XCEPTION_WEIGHTS; a request's precision is
    its collection's, and names the runtime that describes it (Keras or OpenVINO, whose
    conversion goes to `models_dir` when the weights' folder cannot be written)."""

    def __init__(self, address, secret, weights, models_dir=None):
        self.address, self.key, self.weights = address_of(address), key_from(secret), weights
        self.models_dir = models_dir
        self.waiting = queue.Queue()
        self.batches = 0  # passes of the network, for the log and the tests
        self.listener = None

    def serve(self, ready=None):
        """Listen and answer until close(). Each connection is authenticated and read in a
        thread of its own, so a slow or silent client never holds up the others."""
        listener = _socket_for(self.address)
        if isinstance(self.address, tuple):
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        elif os.path.exists(self.address):
            if listening(self.address):
                raise RuntimeError(f"another predict worker is listening on {self.address}")
            os.unlink(self.address)  # left by a predict worker that was killed
        listener.bind(self.address)
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._run_network, name="network", daemon=True).start()
        log.info("predict worker listening on %s", self.address)
        if ready:
            ready()
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                if self.listener is None:
                    return
                continue
            threading.Thread(target=self._answer, args=(client,), daemon=True).start()

    def close(self):
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()
            if not isinstance(self.address, tuple):
                with contextlib.suppress(OSError):
                    os.unlink(self.address)

    def _answer(self, client):
        _read_timeout(client, HANDSHAKE_SECONDS)
        with Connection(client.detach()) as connection:
            try:
                deliver_challenge(connection, self.key)
                answer_challenge(connection, self.key)
            except (OSError, EOFError, AuthenticationError) as exc:  # a wrong key, or a client that went silent
                log.warning("refused a predict client: %s", exc)
                return
            try:
                header = json.loads(connection.recv_bytes(1 << 16))
                count = int(header["crops"])
                if not 0 < count <= MAX_CROPS:
                    raise ValueError(f"1 to {MAX_CROPS} crops per request, not {count}")
                data = connection.recv_bytes(count * CROP * CROP * 3)
                crops = np.frombuffer(data, np.uint8).reshape(count, CROP, CROP, 3)
                request = _Request(str(header["precision"]), crops, float(header.get("seconds", 60.0)))
            except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
                self._reply(connection, {"error": f"a bad request ({exc})"})
                return
            self.waiting.put(request)
            if not request.done.wait(max(0.0, request.deadline - time.monotonic()) + 1.0):
                return  # its client gave up; the network skips it
            if request.error:
                self._reply(connection, {"error": request.error})
            else:
                self._reply(connection, {"features": list(request.features.shape)}, request.features.tobytes())

    @staticmethod
    def _reply(connection, header, payload=None):
        try:
            connection.send_bytes(json.dumps(header).encode())
            if payload is not None:
                connection.send_bytes(payload)
        except OSError:
            pass  # the client gave up

    def _run_network(self):
        while True:
            batch = [self.waiting.get()]
            crops = len(batch[0].crops)
            while crops < MAX_BATCH:  # everything that queued while the last batch ran
                try:
                    more = self.waiting.get_nowait()
                except queue.Empty:
                    break
                batch.append(more)
                crops += len(more.crops)
            now = time.monotonic()
            for request in batch:
                if request.deadline < now:
                    request.error = "its client gave up waiting"
                    request.done.set()
            live = [request for request in batch if not request.done.is_set()]
            for precision in {request.precision for request in live}:
                self._describe([r for r in live if r.precision == precision], precision)

    def _describe(self, requests, precision):
        from workers.pipeline.features import WeightsError, load_xception

        try:
            network = load_xception(self.weights, precision, models_dir=self.models_dir)
            crops = np.concatenate([r.crops for r in requests])
            features = np.concatenate([network(crops[i:i + MAX_BATCH])
                                       for i in range(0, len(crops), MAX_BATCH)])
            self.batches += 1
        except Exception as exc:  # noqa: BLE001 - the worker stays up, and every client hears why
            if not isinstance(exc, (WeightsError, ValueError)):
                log.exception("the network failed on a batch of %d request(s)", len(requests))
            for request in requests:
                request.error = str(exc)
                request.done.set()
            return
        start = 0
        for request in requests:
            request.features = features[start:start + len(request.crops)].astype(np.float32)
            start += len(request.crops)
            request.done.set()


def listening(address):
    """True when something accepts connections at `address` (a PREDICT_ADDRESS)."""
    address = address_of(address)
    with _socket_for(address) as probe:
        probe.settimeout(HANDSHAKE_SECONDS)
        try:
            probe.connect(address)
            return True
        except OSError:
            return False
