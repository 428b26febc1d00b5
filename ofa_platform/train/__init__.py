"""Training: schedules as data, the pure math (LR, ε-ramp, losses, sampling) and the engine.

Only the light, torch-free schedule API is re-exported here; import ``losses``, ``sampling``
and the engine modules directly (they pull in torch).
"""

from ofa_platform.train.schedule import (
    Phase,
    Schedule,
    list_schedules,
    load_schedule,
    parse_schedule,
)

__all__ = ["Phase", "Schedule", "list_schedules", "load_schedule", "parse_schedule"]
