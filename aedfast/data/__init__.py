"""Dataset readers and the synthetic surveillance benchmark.

`open_dataset(root, kind)` opens Avenue, ShanghaiTech, UCSD Ped2, the official implementation's
layout or a plain folder of videos (see `aedfast.data.readers`; its lazy videos and pixel masks
are in `aedfast.data.videos` and `aedfast.data.masks`); `open_ubnormal(root)` reads
UBnormal's anomalous objects (see `aedfast.data.ubnormal`); `aedfast.data.synthetic.generate`
writes the synthetic benchmark.
"""

from .errors import DatasetError
from .masks import ArrayMasks, ImageMasks, Masks, MatMasks, NpyMasks
from .readers import KINDS, Dataset, detect_kind, open_dataset
from .ubnormal import AnomalySequence, UBnormal, UBnormalVideo, open_ubnormal
from .videos import IMAGE_EXTS, VIDEO_EXTS, FrameFolderVideo, Video, VideoFileVideo

__all__ = [
    "IMAGE_EXTS", "KINDS", "VIDEO_EXTS", "AnomalySequence", "ArrayMasks", "Dataset",
    "DatasetError", "FrameFolderVideo", "ImageMasks", "Masks", "MatMasks", "NpyMasks",
    "UBnormal", "UBnormalVideo", "Video", "VideoFileVideo", "detect_kind", "open_dataset",
    "open_ubnormal",
]
