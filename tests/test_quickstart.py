"""The quick start's own logic (the whole run is the README's first command, minutes long)."""

from __future__ import annotations

import pytest

from ofa_platform.cli import main
from ofa_platform.quickstart import spread_targets


def test_targets_are_feasible_and_binding() -> None:
    targets = spread_targets(4.0, 12.0, 3)
    assert targets == (6.0, 8.0, 10.0)
    assert all(4.0 < t < 12.0 for t in targets)
    assert len(set(spread_targets(1.234, 1.9, 3))) == 3


def test_degenerate_cost_range_still_gives_a_feasible_target() -> None:
    (only,) = spread_targets(5.0, 5.0, 3)
    assert only >= 5.0
    with pytest.raises(ValueError):
        spread_targets(1.0, 2.0, 0)


def test_bad_arguments_are_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quickstart", "--methods", " , "]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--methods" in err
    assert main(["quickstart", "--workers", "0"]) == 2
