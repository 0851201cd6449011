"""Dataset readers and the synthetic surveillance benchmark.

`open_dataset(root, kind)` opens Avenue, ShanghaiTech, UCSD Ped2, the official implementation's
layout or a plain folder of videos (see `aedfast.data.readers`); `open_ubnormal(root)` reads
UBnormal's anomalous objects (see `aedfast.data.ubnormal`); `aedfast.data.synthetic.generate`
writes the synthetic benchmark.
"""

from .readers import (
    IMAGE_EXTS,
    KINDS,
    VIDEO_EXTS,
    ArrayMasks,
    Dataset,
    DatasetError,
    FrameFolderVideo,
    ImageMasks,
    Masks,
    MatMasks,
    NpyMasks,
    Video,
    VideoFileVideo,
    detect_kind,
    open_dataset,
)
from .ubnormal import AnomalySequence, UBnormal, UBnormalVideo, open_ubnormal

__all__ = [
    "IMAGE_EXTS", "KINDS", "VIDEO_EXTS", "AnomalySequence", "ArrayMasks", "Dataset",
    "DatasetError", "FrameFolderVideo", "ImageMasks", "Masks", "MatMasks", "NpyMasks",
    "UBnormal", "UBnormalVideo", "Video", "VideoFileVideo", "detect_kind", "open_dataset",
    "open_ubnormal",
]
