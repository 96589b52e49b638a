from .defaults import setup_cfg
from .teacher_hook import TeacherHook
from .trainer import Trainer
