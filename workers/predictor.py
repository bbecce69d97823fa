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
import hashlib
import json
import logging
import queue
import threading
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener

import numpy as np

log = logging.getLogger(__name__)

CROP = 299  # workers/pipeline/features.py CROP; the network's input side
MAX_BATCH = 32  # crops per pass of the network
MAX_CROPS = 512  # per request: a request is at most a bounded video's worth of crops


class PredictorUnavailable(Exception):
    """The predict worker cannot be reached or did not answer; the message says what to do."""


def address_of(setting):
    """A Listener/Client address: 'host:port' -> (host, port); anything else is a socket path."""
    host, _, port = str(setting).rpartition(":")
    if host and port.isdigit() and "/" not in host:
        return host, int(port)
    return str(setting)


def family_of(address):
    return "AF_INET" if isinstance(address, tuple) else "AF_UNIX"


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
        connection = Client(address, family=family_of(address), authkey=key_from(secret))
    except AuthenticationError:
        raise PredictorUnavailable(f"the predict worker at {address} refused this server's key: both must have "
                                   "the same DJANGO_SECRET_KEY") from None
    except (OSError, EOFError) as exc:
        raise PredictorUnavailable(f"the predict worker is not running at {address} ({exc}): start it with "
                                   "`python manage.py predictor`") from None
    with connection:
        try:
            connection.send_bytes(json.dumps({"precision": precision, "crops": len(crops)}).encode())
            connection.send_bytes(crops.tobytes())
            if not connection.poll(timeout):
                raise PredictorUnavailable(f"the predict worker did not answer within {timeout:.0f} s")
            header = json.loads(connection.recv_bytes())
            if "error" in header:
                raise PredictorUnavailable(f"the predict worker failed: {header['error']}")
            return np.frombuffer(connection.recv_bytes(), dtype=np.float32).reshape(len(crops), -1)
        except (OSError, EOFError) as exc:
            raise PredictorUnavailable(f"the predict worker closed the connection ({exc})") from None


# --- the server side (its own process) ---

class _Request:
    def __init__(self, precision, crops):
        self.precision, self.crops = precision, crops
        self.features, self.error = None, None
        self.done = threading.Event()


class Predictor:
    """Serves `describe` requests on `address` with one network per precision, batching the
    requests that wait while it runs. `weights` as XCEPTION_WEIGHTS."""

    def __init__(self, address, secret, weights):
        self.address, self.key, self.weights = address_of(address), key_from(secret), weights
        self.waiting = queue.Queue()
        self.batches = 0  # passes of the network, for the log and the tests
        self.listener = None

    def serve(self, ready=None):
        import os

        if family_of(self.address) == "AF_UNIX" and os.path.exists(self.address):
            os.unlink(self.address)  # left by a predictor that was killed
        self.listener = Listener(self.address, family=family_of(self.address), authkey=self.key)
        threading.Thread(target=self._run_network, name="network", daemon=True).start()
        log.info("predict worker listening on %s", self.address)
        if ready:
            ready()
        while True:
            try:
                connection = self.listener.accept()
            except (OSError, EOFError, AuthenticationError) as exc:  # a client with the wrong key, or that hung up
                if self.listener is None:
                    return
                log.warning("refused a predict client: %s", exc)
                continue
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def close(self):
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()

    def _answer(self, connection):
        with connection:
            try:
                header = json.loads(connection.recv_bytes(1 << 16))
                count = int(header["crops"])
                if not 0 < count <= MAX_CROPS:
                    raise ValueError(f"1 to {MAX_CROPS} crops per request, not {count}")
                data = connection.recv_bytes(count * CROP * CROP * 3)
                request = _Request(str(header["precision"]), np.frombuffer(data, np.uint8).reshape(count, CROP, CROP, 3))
            except (OSError, EOFError, ValueError, KeyError) as exc:
                self._reply(connection, {"error": f"a bad request ({exc})"})
                return
            self.waiting.put(request)
            request.done.wait()
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
            for precision in {request.precision for request in batch}:
                self._describe([r for r in batch if r.precision == precision], precision)

    def _describe(self, requests, precision):
        from workers.pipeline.features import WeightsError, load_xception

        try:
            network = load_xception(self.weights, precision)
            crops = np.concatenate([r.crops for r in requests])
            features = np.concatenate([network(crops[i:i + MAX_BATCH]).numpy()
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
