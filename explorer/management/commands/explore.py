import os
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import CommandError

from explorer.cli import LocalWorkers, add_ingest_arguments, run_ingest, summarize
from explorer.progress import follow
from explorer.database import DatabaseCommand


class Command(DatabaseCommand):
    help = ("Ingest files and folders (as `ingest` does), then serve the explorer and open its map in the "
            "browser until interrupted (Ctrl-C). `make explore MEDIA=PATH ARGS='...'` runs it with ARGS "
            "added, e.g. ARGS='--fps 1 --port 8001'. Progress shows as a bar per stage on a terminal, as a "
            "line per stage otherwise; the web server's log of requests for JSON, tiles and frames goes to "
            "DATA_DIR/logs/web.log.")

    def add_arguments(self, parser):
        add_ingest_arguments(parser)
        parser.add_argument("--host", default="127.0.0.1",
                            help="address the web server listens on (default 127.0.0.1: this machine only, "
                                 "login-free). Any other address requires login and DJANGO_SECRET_KEY")
        parser.add_argument("--port", type=int, default=8000, help="port of the web server (default 8000)")
        parser.add_argument("--no-browser", action="store_true",
                            help="print the map's address, do not open a browser (none is opened anyway "
                                 "without a display)")

    def handle(self, *args, **options):
        url = f"http://{options['host']}:{options['port']}/"
        env = dict(os.environ)
        # The folders given here may also be ingested again from the web page.
        roots = [str(p) for p in settings.MEDIA_ROOTS] + [
            os.path.abspath(p) for p in options["paths"] if os.path.isdir(p)]
        env["MEDIA_ROOTS"] = os.pathsep.join(dict.fromkeys(roots))
        settings.LOG_DIR.mkdir(parents=True, exist_ok=True)
        web_log = settings.LOG_DIR / "web.log"
        with LocalWorkers(options["workers"], self.stdout), open(web_log, "ab") as log:
            # Its banner goes to its log; its errors, its access rule and the pages it serves
            # come here (explorer/logs.py), the requests pages make by themselves go to the log.
            self.stdout.flush()
            server = subprocess.Popen(
                [sys.executable, "manage.py", "runserver", "--noreload", "--insecure",
                 f"{options['host']}:{options['port']}"], cwd=settings.BASE_DIR, env=env, stdout=log)
            # The predict endpoint's network (workers/predictor.py): it loads on the first request.
            with open(settings.LOG_DIR / "predictor.log", "ab") as predictor_log:
                predictor = subprocess.Popen([sys.executable, "manage.py", "predictor"], cwd=settings.BASE_DIR,
                                             env=env, stdout=predictor_log, stderr=subprocess.STDOUT)
            try:
                time.sleep(2)
                if server.poll() is not None:
                    raise CommandError(f"the web server did not start on {options['host']}:{options['port']} "
                                       f"(is the port in use? choose another with --port; see {web_log})")
                self.stdout.write(f"Serving the explorer at {url} (Ctrl-C stops); log: {web_log}\n")
                collection, job = run_ingest(options, self.stdout)
                summarize(follow(job, self.stderr), self.stdout, options["verbosity"])
                map_url = f"{url}collections/{collection.pk}/map/"
                self.stdout.write(f"\nThe map of {collection.name!r}: {map_url}\nCtrl-C stops.\n")
                if not options["no_browser"]:
                    open_in_browser(map_url)
                server.wait()
            except KeyboardInterrupt:
                pass
            finally:
                for process in (server, predictor):
                    process.terminate()
                for process in (server, predictor):
                    try:
                        process.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        process.kill()


def open_in_browser(url):
    """Open the map in the desktop's browser. Not on a machine without a display: there
    Python would start a text browser (lynx, w3m) in this terminal."""
    import webbrowser

    graphical = sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if graphical:
        webbrowser.open(url, new=2)
