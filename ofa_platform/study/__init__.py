"""Studies: recipes compared side by side on one dataset, resumable, reported from MLflow.

``protocol`` reads a study (``jobs/studies/*.yaml``) into a frozen :class:`StudyProtocol`;
``runner`` works through its units (train, search, test-split evaluation; from-scratch peers),
skipping what MLflow says is finished. The report is ``dashboards/study.py``.
"""

from ofa_platform.study.protocol import (
    PeerSpec,
    SearchSpec,
    StudyProtocol,
    StudyUnit,
    load_study,
    study_units,
)

__all__ = ["PeerSpec", "SearchSpec", "StudyProtocol", "StudyUnit", "load_study", "study_units"]
