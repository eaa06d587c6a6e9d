"""Data: loading (Hub, image folders, save_to_disk, parquet, webdataset), class names, the
benchmark registry and pixel transforms to [0, 1]."""

from .loading import (
    ClassificationData,
    DataError,
    collate,
    dataset_class_names,
    load_image_dataset,
    prepare_classification_data,
    read_class_names,
)
from .transforms import ImageTransform, to_tensor

__all__ = [
    "ClassificationData",
    "DataError",
    "ImageTransform",
    "collate",
    "dataset_class_names",
    "load_image_dataset",
    "prepare_classification_data",
    "read_class_names",
    "to_tensor",
]
