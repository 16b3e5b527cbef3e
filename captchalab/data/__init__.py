"""Data: labelled folders, alphabets, splits and the one preprocessing definition (torch-free)."""

from captchalab.data.alphabet import Alphabet
from captchalab.data.dataset import (
    IMAGE_SUFFIXES,
    BadFile,
    DatasetError,
    LabelledFolder,
    Sample,
    balance_folders,
    label_from_filename,
    read_labelled_folder,
    read_labelled_folders,
    split_samples,
)
from captchalab.data.preprocess import Preprocessing, to_grey

__all__ = [
    "IMAGE_SUFFIXES",
    "Alphabet",
    "BadFile",
    "DatasetError",
    "LabelledFolder",
    "Preprocessing",
    "Sample",
    "balance_folders",
    "label_from_filename",
    "read_labelled_folder",
    "read_labelled_folders",
    "split_samples",
    "to_grey",
]
