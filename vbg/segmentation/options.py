"""The choices a model is run with, kept apart from torch so that the command line can check
them without importing it."""

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "float32", "float16")
MODES = ("auto", "on", "off")  # switches that vbg can also decide itself: crop, sync
FETCH_SOURCES = ("installed", "storage", "wheel")  # where MediaPipe model files come from
