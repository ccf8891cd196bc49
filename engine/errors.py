"""Errors the engine service raises. Each carries a message an official can act on.

The web layer maps them to HTTP statuses (NotFound 404, PermissionDenied 403,
Conflict 409, InvalidInput 400); the CLI prints the message.
"""


class EngineError(Exception):
    code = "error"

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(EngineError):
    code = "not_found"


class PermissionDenied(EngineError):
    code = "forbidden"


class Conflict(EngineError):
    """The task was completed, claimed or changed by someone else meanwhile."""
    code = "conflict"


class InvalidInput(EngineError):
    """Submitted data failed the form's validation; `fields` maps field -> messages."""
    code = "invalid"

    def __init__(self, message: str, fields: dict | None = None):
        super().__init__(message, fields=fields or {})
        self.fields = fields or {}


class ProcessError(EngineError):
    """A process definition is invalid or a workflow failed while running its scripts."""
    code = "process_error"
