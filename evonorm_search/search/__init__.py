"""The evolutionary search: configuration, search space, mutations, selection, rejections, evaluation
and the controller."""

from .config import ConfigError, EvaluationSpec, SearchConfig
from .evaluator import (
    EvaluationOutcome,
    EvaluationRecord,
    EvaluationTask,
    Evaluator,
    InProcessEvaluator,
    evaluate_task,
)
from .mutation import DeleteNode, InsertNode, Mutator, ReplaceOp, RewireInput
from .rejection import CheapRejections, DuplicateIndex, Rejection, cheap_rejections
from .selection import AgingEvolution, Member, ParetoTournament, Proposal, RandomSearch
from .simulated import ClusterStats, LognormalDelay, ManualClock, SimulatedCluster, WallClock
from .space import SearchSpace, SpaceError, random_graph

__all__ = [
    "AgingEvolution",
    "CheapRejections",
    "ClusterStats",
    "ConfigError",
    "DeleteNode",
    "DuplicateIndex",
    "EvaluationOutcome",
    "EvaluationRecord",
    "EvaluationSpec",
    "EvaluationTask",
    "Evaluator",
    "InProcessEvaluator",
    "InsertNode",
    "LognormalDelay",
    "ManualClock",
    "Member",
    "Mutator",
    "ParetoTournament",
    "Proposal",
    "RandomSearch",
    "Rejection",
    "ReplaceOp",
    "RewireInput",
    "SearchConfig",
    "SearchSpace",
    "SimulatedCluster",
    "SpaceError",
    "WallClock",
    "cheap_rejections",
    "evaluate_task",
    "random_graph",
]
