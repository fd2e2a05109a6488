"""Plumbing every layer needs (layer 0, below the core): errors, the command shell, typed configs and
result files, run folders, processes and devices, numeric precision, lazy public names.

Importing it costs no torch: the torch modules (`distributed`, `precision`) load on first use.
"""

from typing import TYPE_CHECKING

from .config import (
    atomic_write,
    atomic_write_text,
    check_output_dir,
    check_range,
    config_help,
    field_help,
    parse_config,
    save_config,
    to_plain,
)
from .errors import (
    CheckpointError,
    CheckpointNotFoundError,
    ConfigError,
    DatasetError,
    DeviceError,
    ImageReadError,
    LossDivergedError,
    MissingExtraError,
    NonFiniteError,
    PrecisionError,
    RunFolderError,
    UserError,
)
from .fingerprint import dataset_fingerprint, describe_files, upgrade_identity
from .lazy import declared_names, lazy_package
from .results import command_line, library_versions, provenance, write_results
from .runfolder import (
    BOOKKEEPING,
    RunIdentity,
    RunLock,
    check_folder_owner,
    check_resume,
    disk_full_message,
    folder_command,
    move_aside,
    open_run_folder,
    read_identity,
    remove_stale_temps,
    write_identity,
)
from .shell import fail, one_line, run_command
from .threads import auto_threads, available_cores, check_threads, cpu_threads

if TYPE_CHECKING:  # torch modules: imported on first use
    from .distributed import (
        all_reduce_mean,
        all_reduce_sum,
        get_rank,
        get_world_size,
        init_distributed,
        is_distributed,
        is_main_process,
        launched_by_torchrun,
        out_of_time,
        resolve_device,
        shutdown_distributed,
    )
    from .precision import PRECISIONS, autocast, check_precision, cpu_has_native_bf16, resolve_precision

__getattr__, __dir__, __all__ = lazy_package(__name__)
