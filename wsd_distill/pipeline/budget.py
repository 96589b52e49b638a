"""A ``--budget`` that holds: the minutes asked cover the whole command (proposals, timing,
training, evaluation, from its first start), and before each run starts, the runs not yet
started are scaled anew at the pace the finished runs actually kept (a busy machine times a
few steps far slower or faster than it then trains). A started run keeps the factor it
started with, recorded in schedule.json, so that its resume is exact."""

import logging
import time

logger = logging.getLogger(__name__)

# The runs not started are re-planned when the minutes left and their estimate differ by more
# than this share of the estimate.
REPLAN_SLACK = 0.15


class Budget:
    """``minutes`` for the whole command; ``seconds`` {kind: timed seconds per iteration};
    ``runs`` {run: [kind, its config's iterations before scaling]}; ``started``: this process's
    ``time.monotonic()`` when the command began; ``state``: what an earlier process kept
    (``state()``: seconds spent, each started run's factor and seconds)."""

    def __init__(self, minutes, seconds, runs, started, state=None):
        state = state or {}
        self.minutes, self.seconds, self.started = minutes, dict(seconds), started
        self.runs = {**state.get("runs", {}), **runs}
        self.spent_before = state.get("spent_seconds", 0.0)
        self.factors = dict(state.get("run_factors", {}))
        self.run_seconds = dict(state.get("run_seconds", {}))

    def spent(self):
        """Seconds of the command so far, earlier processes' included."""
        return self.spent_before + time.monotonic() - self.started

    def planned_seconds(self, runs, factor=None):
        """Timed seconds of ``runs`` at ``factor`` (None: each run's recorded factor)."""
        return sum(
            self.runs[r][1]
            * (self.factors[r] if factor is None else factor)
            * self.seconds[self.runs[r][0]]
            for r in runs
        )

    def first_factor(self):
        """The factor that fits every run's timed iterations in the minutes left; refused when
        nothing is left (proposals and timing took the budget)."""
        left = self.minutes * 60 - self.spent()
        if left <= 0:
            raise ValueError(
                f"--budget {self.minutes:g}: proposals and timing took {self.spent() / 60:.1f} "
                "min of it, nothing is left to train: ask for more minutes"
            )
        return left / self.planned_seconds(self.runs, 1.0)

    def pace(self, finished):
        """Seconds the ``finished`` runs took over those planned for them (1: none yet)."""
        timed = [r for r in finished if r in self.factors and r in self.run_seconds]
        planned = self.planned_seconds(timed)
        return sum(self.run_seconds[r] for r in timed) / planned if planned else 1.0

    def start(self, run, factor, finished):
        """The factor of ``run``, about to start: the one it started with before, else
        ``factor`` (the current plan's), re-planned when the runs not started would take, at
        the ``pace`` of the ``finished`` ones, more than ``REPLAN_SLACK`` more or less than the
        minutes left (said in one line); recorded."""
        if run in self.factors:
            return self.factors[run]
        pace = self.pace(finished)
        waiting = [r for r in self.runs if r not in self.factors and r not in finished]
        estimate = pace * self.planned_seconds(waiting, factor)
        left = self.minutes * 60 - self.spent()
        if estimate > 0 and abs(max(left, 0) / estimate - 1) > REPLAN_SLACK:
            new = factor * max(left, 0) / estimate
            logger.warning(
                f"--budget {self.minutes:g}: {self.spent() / 60:.0f} min spent, the runs so far "
                f"took {pace:.2f}x their planned time; the {len(waiting)} runs left would take "
                f"{estimate / 60:.0f} min of the {max(left, 0) / 60:.0f} left: re-planned, their "
                f"schedules x{new:.3g} (were x{factor:.3g})"
            )
            factor = new
        self.factors[run] = factor
        return factor

    def finish(self, run, seconds):
        """``run`` trained and was evaluated in ``seconds`` (of this process)."""
        self.run_seconds[run] = self.run_seconds.get(run, 0.0) + seconds

    def minutes_left(self, runs, factor, finished):
        """Estimated minutes of ``runs`` at ``factor`` (a started run: its own), at the pace of
        the ``finished`` runs."""
        pace = self.pace(finished)
        seconds = sum(self.planned_seconds([r], self.factors.get(r, factor)) for r in runs)
        return pace * seconds / 60

    def state(self):
        """What schedule.json keeps for a resumed command."""
        return {
            "runs": self.runs,
            "spent_seconds": self.spent(),
            "run_factors": self.factors,
            "run_seconds": self.run_seconds,
        }
