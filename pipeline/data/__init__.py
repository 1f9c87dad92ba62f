"""Data: folder pairing, datalists and splits, the CRD download, the embedded sample and synthetic radiographs."""

from pipeline.data.device_cache import DeviceCacheLoader
from pipeline.data.datalist import SPLIT_NAMES, datalist_hash, prepare_datalist, read_split_file
from pipeline.data.kaggle import CRD_HANDLE, DatasetUnavailableError, download_crd, find_dataset_root
from pipeline.data.pairing import PairingReport, file_stem, image_size, list_image_files, pair_folder
from pipeline.data.resolve import SAMPLE_NAME, DatasetFolders, resolve_dataset_dir, sample_dir
from pipeline.data.sampling import group_balanced_sampler, group_weights
from pipeline.data.synthetic_source import synthetic_dataset_dir

__all__ = [
    "CRD_HANDLE",
    "SAMPLE_NAME",
    "SPLIT_NAMES",
    "DatasetFolders",
    "DatasetUnavailableError",
    "DeviceCacheLoader",
    "PairingReport",
    "datalist_hash",
    "download_crd",
    "file_stem",
    "group_balanced_sampler",
    "group_weights",
    "find_dataset_root",
    "image_size",
    "list_image_files",
    "pair_folder",
    "prepare_datalist",
    "read_split_file",
    "resolve_dataset_dir",
    "sample_dir",
    "synthetic_dataset_dir",
]
