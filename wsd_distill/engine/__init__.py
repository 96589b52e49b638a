from .teacher_hook import TeacherHook, build_teacher
from .trainer import Trainer
