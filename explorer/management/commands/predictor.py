import logging
import signal
import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from workers.predictor import Predictor


class Command(BaseCommand):
    help = ("Run the predict worker: the one process that keeps Xception loaded for the predict endpoint "
            "(POST /api/collections/ID/predict/), batching the requests that arrive together. It listens on "
            "PREDICT_ADDRESS (default DATA_DIR/predictor.sock) until interrupted. The network loads on the first "
            "request.")

    def handle(self, *args, **options):
        # Stopped with SIGTERM (docker, explore), it still goes through `finally` and removes its socket.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        predictor = Predictor(settings.PREDICT_ADDRESS, settings.SECRET_KEY, settings.XCEPTION_WEIGHTS,
                              models_dir=settings.FEATURE_MODELS_DIR)
        try:
            predictor.serve(ready=lambda: self.stdout.write(
                f"Predict worker listening on {settings.PREDICT_ADDRESS} (Ctrl-C stops it)\n"))
        except KeyboardInterrupt:
            pass
        finally:
            predictor.close()
