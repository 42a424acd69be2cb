"""The case store: every run of a job in one SQLite file (see store.py for the design).

Public API: `CaseStore` (open, transaction, conn, read methods), `default_case_path`,
`ingest_run` (triage/case/ingest.py) and the records of triage/case/records.py.
"""

from triage.case.records import Incident, Occurrence, RankInfo, Run, Signature
from triage.case.store import CaseStore, default_case_path

__all__ = ["CaseStore", "default_case_path", "Run", "RankInfo", "Incident", "Occurrence",
           "Signature", "ingest_run"]


def __getattr__(name: str):
    if name == "ingest_run":
        from triage.case.ingest import ingest_run
        return ingest_run
    raise AttributeError(name)
