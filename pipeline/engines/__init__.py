"""What the MONAI engines need beyond config: readable logging, progress, schedules."""

from pipeline.engines.epoch_log import EpochSummaryHandler
from pipeline.engines.progress import ProgressBarHandler
from pipeline.engines.schedule import SCHEDULES, build_scheduler, is_epoch_level
from pipeline.engines.temperature_fit import TemperatureFitHandler, store_temperature
from pipeline.engines.calibration_handler import DEFAULT_CALIBRATION, DEFAULT_CLEANUP, CalibrationHandler, calibrate_model

__all__ = ["SCHEDULES", "EpochSummaryHandler", "ProgressBarHandler",
    "TemperatureFitHandler", "build_scheduler", "is_epoch_level",
    "store_temperature"]
__all__ += ["DEFAULT_CALIBRATION", "DEFAULT_CLEANUP", "CalibrationHandler", "calibrate_model"]
from pipeline.engines.device_path import DATA_PATHS, DetachOutputd, DevicePrepareBatch, amp_kwargs, resolve_data_path

__all__ += ["DATA_PATHS", "DetachOutputd", "DevicePrepareBatch", "amp_kwargs", "resolve_data_path"]
from pipeline.engines.atomic_checkpoint import AtomicCheckpointSaver
from pipeline.engines.autocast import CpuAutocastInferer, cpu_has_native_bf16

__all__ += ["AtomicCheckpointSaver", "CpuAutocastInferer", "cpu_has_native_bf16"]
