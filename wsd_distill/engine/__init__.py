from .defaults import (
    add_dataset_config_arguments,
    model_class_names,
    non_negative_int,
    parse_args_with_overrides,
    positive_int,
    run_files,
    run_tool,
    setup_cfg,
    setup_run_cfg,
)
from .run_folders import claim_output_dir, run_seed
from .teacher_hook import TeacherHook
from .trainer import Trainer
