"""Pure compute for the pipeline: no Django, no Celery, no `explorer` imports.

Stages are plain functions or scikit-learn-style classes; progress is reported
through a callback taking a fraction in [0, 1].
"""
