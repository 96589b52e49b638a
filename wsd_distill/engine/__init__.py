from .defaults import add_dataset_config_arguments, setup_cfg
from .teacher_hook import TeacherHook
from .trainer import Trainer
