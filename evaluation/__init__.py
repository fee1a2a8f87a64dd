"""Off-policy evaluation: estimators on generic logged data, banditrec's decision log, DSJson, replay."""

from evaluation.estimators import Estimate, EvaluationError, dr, ips, load_csv, snips
from evaluation.log import LoggedDecision, from_store, read_dsjson, write_dsjson

__all__ = ["Estimate", "EvaluationError", "LoggedDecision", "dr", "from_store", "ips", "load_csv", "read_dsjson",
           "snips", "write_dsjson"]
