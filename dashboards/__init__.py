"""Reports from MLflow: the method comparison table (``compare``) and the HTML report
(``report``). They read MLflow only, so they run anywhere the tracking store is reachable."""

__all__: list[str] = []
