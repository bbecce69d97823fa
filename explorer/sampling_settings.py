"""The sampling parameters that the settings ask for (FRAME_WIDTH, FRAME_HEIGHT,
SAMPLE_EVERY, SAMPLE_FPS): what a new collection is sampled with."""
from django.conf import settings

from workers.pipeline.sampling import SamplingParams


def sampling_params(every=None, fps=None):
    """Parameters for a new collection: arguments win over settings; fps wins over every."""
    fps = fps if fps is not None else (None if every is not None else settings.SAMPLE_FPS)
    return SamplingParams(width=settings.FRAME_WIDTH, height=settings.FRAME_HEIGHT,
                          every=every or settings.SAMPLE_EVERY, fps=fps)
