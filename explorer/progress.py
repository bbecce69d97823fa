"""Following a job from the command line: a bar per stage that redraws in place on a
terminal, and a few plain lines per stage anywhere else (a pipe, a log file, CI).

The bars go to the real stream under Django's OutputWrapper (self.stderr): the wrapper
ends every write with a newline, which turned each redraw of a bar into a new line."""
import sys
import time
from contextlib import ExitStack

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

# Off a terminal, a stage still running says how far it is this often: a long features
# stage leaves a sign of life in a log, and a short one only its closing line.
PLAIN_EVERY = 30.0  # seconds


def raw_stream(out):
    """The stream under a Django OutputWrapper (or `out` itself)."""
    return getattr(out, "_out", out)


def clock(seconds):
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


class Bars:
    """On a terminal: one tqdm bar per stage, redrawn in place; log records of this process
    are printed above it rather than through it."""

    def __init__(self, stream):
        self.stream, self.bar, self.stack = stream, None, ExitStack()

    def __enter__(self):
        self.stack.enter_context(logging_redirect_tqdm())
        return self

    def __exit__(self, *exc):
        self.close_bar()
        self.stack.close()
        return False

    def start(self, stage):
        self.bar = tqdm(total=1000, desc=f"{stage:>8}", file=self.stream, dynamic_ncols=True, mininterval=0.2,
                        bar_format="{desc} |{bar:30}| {percentage:3.0f}% {elapsed}{postfix}")

    def show(self, progress, message):
        self.bar.n = min(1000, int(progress * 1000))
        self.bar.set_postfix_str(message, refresh=False)
        self.bar.refresh()

    def end(self, outcome, elapsed):
        if outcome == "done":
            self.bar.n = 1000
            self.bar.set_postfix_str("", refresh=False)
        else:
            self.bar.set_postfix_str(outcome, refresh=False)
        self.close_bar()

    def close_bar(self):
        if self.bar is not None:
            self.bar.close()  # draws the bar one last time, then moves to the next line
            self.bar = None


class Lines:
    """Anywhere else: a line when a stage ends (done, failed or cancelled, and its time),
    and one every PLAIN_EVERY seconds while it runs."""

    def __init__(self, stream, every=PLAIN_EVERY):
        self.stream, self.every = stream, every
        self.stage, self.started, self.said = None, 0.0, 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def start(self, stage):
        self.stage, self.started = stage, time.monotonic()
        self.said = self.started

    def show(self, progress, message):
        now = time.monotonic()
        if now - self.said >= self.every:
            self.said = now
            self.write(f"{progress:4.0%} after {clock(now - self.started)}" + (f": {message}" if message else ""))

    def end(self, outcome, elapsed):
        self.write(f"{outcome} in {clock(elapsed)}" if outcome == "done" else f"{outcome} after {clock(elapsed)}")

    def write(self, text):
        self.stream.write(f"{self.stage:>8}  {text}\n")
        self.stream.flush()


def display_for(out):
    stream = raw_stream(out)
    isatty = getattr(stream, "isatty", None)
    return Bars(stream) if isatty and isatty() else Lines(stream)


def stage_times(job):
    """(stage, seconds) of each stage the job has finished, in order (Job.stage_log)."""
    began = (job.started_at or job.created_at).timestamp()
    for name, finished in job.stage_log:
        yield name, max(0.0, finished - began)
        began = finished


def follow(job, out, poll=0.3):
    """Show the job's progress, stage by stage, on `out` (a stream or Django's
    OutputWrapper) until the job finishes; returns the finished job."""
    sys.stdout.flush()  # what the command said before (block-buffered in a pipe) comes first
    stage, started, shown = None, 0.0, set()
    with display_for(out) as display:
        while True:
            job.refresh_from_db()
            if stage is not None and (job.finished or job.stage != stage):
                moved_on = job.stage != stage or job.status not in (job.Status.FAILED, job.Status.CANCELLED)
                display.end("done" if moved_on else job.status, time.monotonic() - started)
                shown.add(stage)
                stage = None
            for name, seconds in stage_times(job):  # stages that went by between two looks
                if name not in shown and name != stage:
                    display.start(name)
                    display.end("done", seconds)
                    shown.add(name)
            if job.finished:
                return job
            if stage is None:
                stage, started = job.stage, time.monotonic()
                display.start(stage)
            display.show(job.progress, job.message)  # the bar names its stage
            time.sleep(poll)
