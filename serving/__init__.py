"""The request and learning paths as plain functions over a Service (routes, simulator, benchmarks)."""

from serving.feedback import feedback
from serving.items import put_item
from serving.learner import Learner, Snapshotter
from serving.recommend import recommend
from serving.service import Service

__all__ = ["Learner", "Service", "Snapshotter", "feedback", "put_item", "recommend"]
