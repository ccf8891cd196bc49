"""Errors the engine service raises. Each carries a message an official can act on.

The web layer maps them to HTTP statuses (NotFound 404, PermissionDenied 403,
Conflict 409, InvalidInput 400); the CLI prints the message.
"""


def not_utf8(exc: UnicodeDecodeError) -> str:
    """What to say of a text file an editor saved in another encoding (GBK, on many officials'
    Windows machines): where, and how to convert it."""
    return (f"not UTF-8 text (byte {exc.start}, perhaps GBK); save it as UTF-8 "
            f"or convert it: iconv -f GBK -t UTF-8")


class EngineError(Exception):
    code = "error"

    def __init__(self, message: str, zh: str | None = None, **details):
        super().__init__(message)
        self.message = message          # English: logs, CLI, API with Accept-Language: en
        self.zh = zh or message         # what officials read (zh-CN is the default UI)
        self.details = details

    def text(self, lang: str = "zh") -> str:
        return self.message if lang == "en" else self.zh


class NotFound(EngineError):
    code = "not_found"


class PermissionDenied(EngineError):
    code = "forbidden"


class InactiveAccount(PermissionDenied):
    """The acting account is unknown or deactivated (the API answers 401, as for a bad token)."""


class CredentialsChanged(InactiveAccount):
    """The actor came with a credential (a bearer token) issued under an earlier password of
    the account: a new password, its owner's or an administrator's reset, revokes it (401)."""
    code = "token_revoked"


class Conflict(EngineError):
    """The task was completed, claimed or changed by someone else meanwhile."""
    code = "conflict"


class AlreadyStarted(Conflict):
    """The report form (its start token) already started a case: `business_key` is that case."""
    code = "already_started"

    def __init__(self, business_key: str):
        super().__init__(f"this form was already submitted: case {business_key}; nothing was reported twice",
                         zh=f"此表单已提交过，案件编号 {business_key}，未重复上报",
                         business_key=business_key)
        self.business_key = business_key


class InvalidInput(EngineError):
    """Submitted data failed the form's validation; `fields` maps field -> messages (English;
    `fields_zh`, where given, the same in Chinese)."""
    code = "invalid"

    def __init__(self, message: str, fields: dict | None = None, zh: str | None = None,
                 fields_zh: dict | None = None):
        super().__init__(message, zh=zh, fields=fields or {})
        self.fields = fields or {}
        self.fields_zh = fields_zh

    def field_texts(self, lang: str = "zh") -> dict:
        """The field messages in `lang`, where there are Chinese ones; else as given."""
        return self.fields_zh if lang != "en" and self.fields_zh is not None else self.fields


class ProcessError(EngineError):
    """A process definition is invalid or a workflow failed while running its scripts."""
    code = "process_error"
