"""The data layer: dataset specs and their registry (spec), file readers (readers), the
datasets the suite knows (catalogue) and the batch stream (stream). It imports only the
foundation; every layer above reads data through the names re-exported here."""

from suite.data.catalogue import (DIGIT_CLASSES, FASHION_CLASSES, load, mixture_modes, restyle, sample_mixture,
                                  unrestyle)
from suite.data.readers import IMAGE_EXTS, ImageFiles, LMDBImages, UnpairedFiles, image_files, read_idx, resize
from suite.data.spec import (DATASETS, DataInfo, DatasetSpec, Loaded, PairSource, TensorSource, data_info,
                             fingerprint, get_spec, in_memory_reference, register)
from suite.data.stream import BatchStream, augment, fixed_examples

__all__ = [
    "DATASETS", "DIGIT_CLASSES", "FASHION_CLASSES", "IMAGE_EXTS", "BatchStream", "DataInfo", "DatasetSpec",
    "ImageFiles", "LMDBImages", "Loaded", "PairSource", "TensorSource", "UnpairedFiles", "augment", "data_info",
    "fingerprint", "fixed_examples", "get_spec", "image_files", "in_memory_reference", "load", "mixture_modes", "read_idx", "register",
    "resize", "restyle", "sample_mixture", "unrestyle",
]
