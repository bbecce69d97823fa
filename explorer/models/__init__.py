"""The app's models, one module per concern, all importable from here (explorer.models.X):

  collection.py  Collection, Source (and the rule for a collection's name)
  job.py         Job, WorkItem (a piece of a fanned-out stage), WorkerHeartbeat
  rendered.py    what jobs render for people to take away: Poster, Gif
  labelling.py   Clustering, Label, LabelAction, FrameLabel, LabelChange, Tagger
  copies.py      Duplicates (a detection of copies), SameContent (exact copies met at scan)
"""
from explorer.models.collection import COLLECTION_NAME, Collection, Source
from explorer.models.copies import Duplicates, SameContent
from explorer.models.job import Job, WorkerHeartbeat, WorkItem
from explorer.models.labelling import Clustering, FrameLabel, Label, LabelAction, LabelChange, Tagger
from explorer.models.rendered import Gif, Poster

__all__ = ["COLLECTION_NAME", "Collection", "Source", "Job", "WorkerHeartbeat", "WorkItem", "Poster", "Gif", "Clustering",
           "Label", "LabelAction", "FrameLabel", "LabelChange", "Tagger", "Duplicates", "SameContent"]
