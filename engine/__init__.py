"""gridflow engine: SpiffWorkflow + SQLAlchemy service layer (never imports Flask)."""
from . import spiff_logging
from .clock import FrozenClock, SystemClock, get_clock, set_clock
from .db import Database
from .errors import Conflict, EngineError, InvalidInput, NotFound, PermissionDenied, ProcessError
from .service import InboxFilters, WorkflowService

spiff_logging.apply()   # SpiffWorkflow's task state changes without building unused log records

__all__ = [
    "Database", "WorkflowService", "InboxFilters", "FrozenClock", "SystemClock", "get_clock", "set_clock",
    "EngineError", "NotFound", "PermissionDenied", "Conflict", "InvalidInput", "ProcessError",
]
