"""The stage registry: every stage of every job, declared once, in the order jobs walk them.

A job walks STAGES in order and skips those it does not need (workers/lifecycle.py). Each
stage says which job kinds pass through it, when it is needed, what does its work, how its
pieces are found again after a lost message (workers/recovery.py) and what it adds to the
job's closing summary. Everything else (the models, the job flow, recovery, the Celery
tasks, the API) reads this list and never names a stage itself; workers/ARCHITECTURE.md
says how to add one.

This module imports nothing of the project nor any library beyond the standard one: the
web process reads it (which stage a new job starts at, the task names) without loading
the pipeline or Celery's worker side. The code of a stage is named by "module:attribute"
strings and loaded only where it runs.
"""
from dataclasses import dataclass
from importlib import import_module

# Celery task names. They are part of the messages in the broker: renaming one strands the
# messages in flight, so they keep their first names whatever module declares them.
RUN_STAGE_TASK = "workers.tasks.run_stage"  # (job id, stage name): begins or resumes a stage
# (collection id, map version, first row, stop row): a hover preview of the map (workers/stages/colour.py)
PREVIEW_TASK = "workers.previews.make_preview"


@dataclass(frozen=True)
class Stage:
    name: str
    kinds: frozenset  # the job kinds (Job.Kind values) that pass through this stage
    # "module:function(job)": the stage's work, run as one task; the job moves on when it
    # returns. A fanned-out stage's function only prepares its pieces (it may be omitted).
    run: str = ""
    # "module:FANOUT" (a workers.pieces.FanOut): the stage is done as many pieces, one task
    # each (the FanOut names it); the last piece to finish moves the job on. Recovery sends
    # pending and stalled pieces again with the same task.
    pieces: str = ""
    # Works towards the collection's map: runs only for a job that embeds and a collection
    # with sampled frames.
    on_map: bool = False
    # Rewrites the collection's models and map: one job at a time per collection holds them.
    holds_models: bool = False
    # "module:function(job) -> bool": a further condition for a job to need this stage.
    when: str = ""
    # "module:function(job) -> Report": what the stage adds to the job's closing summary.
    report: str = ""

    def load(self, attribute):
        """The object that `attribute` ("run", "pieces", "when", "report") names."""
        module, _, name = getattr(self, attribute).partition(":")
        return getattr(import_module(module), name)


@dataclass(frozen=True)
class Report:
    """A stage's part of a job's closing summary: phrases for its message, how many pieces
    failed (the job is then partial), and `fatal`, the error when nothing usable came out."""
    parts: tuple = ()
    failed: int = 0
    fatal: str = ""


INGEST, TRAIN, POSTER, CLUSTER, TAG, GIF, CUTOUTS, DUPLICATES = (  # Job.Kind values
    "ingest", "train", "poster", "cluster", "tag", "gif", "cutouts", "duplicates")

STAGES = (
    Stage("scan", kinds=frozenset({INGEST}), run="workers.stages.ingest:scan"),
    Stage("sample", kinds=frozenset({INGEST}), pieces="workers.stages.ingest:SAMPLING",
          report="workers.stages.ingest:report"),
    Stage("features", kinds=frozenset({INGEST, TRAIN}), on_map=True, run="workers.stages.describe:prepare",
          pieces="workers.stages.describe:DESCRIBING", report="workers.stages.describe:report"),
    Stage("pca", kinds=frozenset({INGEST, TRAIN}), on_map=True, holds_models=True, run="workers.stages.embed:fit_pca"),
    Stage("train", kinds=frozenset({INGEST, TRAIN}), on_map=True, holds_models=True, run="workers.stages.embed:train",
          when="workers.stages.embed:needs_training"),
    Stage("layout", kinds=frozenset({INGEST, TRAIN}), on_map=True, holds_models=True, run="workers.stages.embed:place_frames",
          report="workers.stages.embed:report"),
    Stage("cluster", kinds=frozenset({INGEST, TRAIN, CLUSTER}), on_map=True, run="workers.stages.clusters:cluster",
          when="workers.stages.clusters:wanted", report="workers.stages.clusters:report"),
    Stage("duplicates", kinds=frozenset({INGEST, TRAIN, DUPLICATES}), on_map=True,
          run="workers.stages.duplicates:find", when="workers.stages.duplicates:wanted",
          report="workers.stages.duplicates:report"),
    Stage("tag", kinds=frozenset({TAG}), run="workers.stages.tagging:train_tagger",
          report="workers.stages.tagging:train_report"),
    Stage("predict", kinds=frozenset({INGEST, TRAIN, TAG}), on_map=True, run="workers.stages.tagging:predict",
          when="workers.stages.tagging:wanted", report="workers.stages.tagging:predict_report"),
    Stage("poster", kinds=frozenset({POSTER}), run="workers.stages.render:render_poster",
          report="workers.stages.render:report"),
    Stage("gif", kinds=frozenset({GIF}), run="workers.stages.colour:make_gif", report="workers.stages.colour:gif_report"),
    Stage("cutouts", kinds=frozenset({CUTOUTS}), run="workers.stages.colour:prepare_cutouts",
          pieces="workers.stages.colour:CUTTING", report="workers.stages.colour:cutouts_report"),
)
DONE = "done"  # the stage of a finished job

BY_NAME = {stage.name: stage for stage in STAGES}
FANNED_OUT = tuple(stage for stage in STAGES if stage.pieces)


def get(name):
    """The stage called `name`; KeyError names the stages there are."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no stage {name!r}; the stages are {', '.join(BY_NAME)}") from None


def first_for(kind):
    """The stage a new job of this kind starts at."""
    return next(stage.name for stage in STAGES if kind in stage.kinds)


def after(name):
    """The stages after `name`, in order."""
    names = [stage.name for stage in STAGES]
    return STAGES[names.index(name) + 1:]


def task_modules():
    """The modules that declare Celery tasks: the worker imports them at start."""
    modules = {"workers.tasks"}
    for stage in STAGES:
        for attribute in ("run", "pieces"):
            if getattr(stage, attribute):
                modules.add(getattr(stage, attribute).partition(":")[0])
    return sorted(modules)
