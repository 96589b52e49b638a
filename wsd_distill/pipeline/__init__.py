from .arguments import KD_SCHEDULES, add_pipeline_arguments, parse_pipeline_args
from .report import CHOSEN, PLAIN, TEACHER, gain_row, kd_row
from .runner import Pipeline, train_and_evaluate
