"""ProgressHook: a progress line at least every minute of training (detectron2 writes its
metrics every 20 iterations, minutes apart on a CPU)."""

import logging
import time

from detectron2.engine import HookBase

logger = logging.getLogger(__name__)

WRITER_PERIOD = 20  # iterations between detectron2's own lines (DefaultTrainer's PeriodicWriter)


class ProgressHook(HookBase):
    """After a step that ends more than ``seconds`` after the last line (this hook's, or one of
    detectron2's every ``WRITER_PERIOD`` iterations): "iteration i/N, s per iteration, minutes
    left" of this process's steps."""

    def __init__(self, seconds=60.0):
        self.seconds = seconds

    def before_train(self):
        self._start = self._last = time.perf_counter()
        self._first = self.trainer.start_iter

    def after_step(self):
        now, done = time.perf_counter(), self.trainer.iter + 1
        if done % WRITER_PERIOD == 0 or done == self.trainer.max_iter:
            self._last = now  # (detectron2 wrote its line)
        if now - self._last < self.seconds:
            return
        self._last = now
        per_step = (now - self._start) / (done - self._first)
        left = (self.trainer.max_iter - done) * per_step / 60
        logger.info(
            f"iteration {done}/{self.trainer.max_iter}: {per_step:.1f} s per iteration, "
            f"about {left:.0f} min left"
        )
