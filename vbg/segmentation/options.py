"""The choices a model is run with, kept apart from torch so that the command line can check
them without importing it."""

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "float32", "float16")
MODES = ("auto", "on", "off")  # switches that vbg can also decide itself: crop, sync
FETCH_SOURCES = ("installed", "storage", "wheel")  # where MediaPipe model files come from
# The models of vbg.segmentation.models.MODELS, in its order (a test keeps the two the same);
# "auto" picks one of them by device (see models.auto_model).
MODEL_NAMES = (
    "fcn_resnet50",
    "fcn_resnet101",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large",
    "mediapipe_selfie",
    "mediapipe_selfie_landscape",
)
AUTO_MODEL = "auto"
