"""The request and learning paths as plain functions over a Service (routes, simulator, benchmarks)."""

from serving.decide import Slate, decide
from serving.events import put_user, record_event
from serving.feedback import feedback
from serving.items import delete_item, put_item
from serving.learner import Learner
from serving.recommend import recommend
from serving.service import Service

__all__ = ["Learner", "Service", "Slate", "decide", "delete_item", "feedback", "put_item", "put_user",
           "recommend", "record_event"]
