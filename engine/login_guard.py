"""Login failure handling (登录失败处理).

GB/T 22239-2019 (网络安全等级保护基本要求), which a government system is assessed against,
asks for a login failure policy: limit the failed attempts, lock, record. Here:

* every password login (the web page and the API's token endpoint) is a row of
  `login_attempt` (engine/models.py), with the name as typed, the account if there is one,
  the time, the client's address and the door it came by;
* `MAX_FAILURES` failures of one name within `WINDOW` lock that name for `LOCK`: until then
  every attempt is refused, the right password too (recorded as `refused_locked`, which
  neither counts as a failure nor extends the lock);
* a name with no account is counted and locked the same way, so neither the answers nor
  the lock tell whether an account exists;
* a successful login, or an administrator's `gridflow unlock-login NAME`, starts the
  count afresh.

The rows are never updated or deleted: the count and the lock are read from them (one
indexed range per attempt), so there is no counter to drift or to reset by mistake.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from .clock import CHINA
from .errors import PermissionDenied
from .models import LoginAttempt

MAX_FAILURES = 5
WINDOW = timedelta(minutes=15)
LOCK = timedelta(minutes=15)

SUCCEEDED, FAILED, REFUSED_LOCKED, UNLOCKED = "succeeded", "failed", "refused_locked", "unlocked"
DOORS = ("web", "api", "cli")


class LoginLocked(PermissionDenied):
    """Too many failed logins of this name: refused until `until` (UTC)."""
    code = "login_locked"

    def __init__(self, until: datetime, now: datetime):
        minutes = max(1, -(-int((until - now).total_seconds()) // 60))   # rounded up
        local = until.astimezone(CHINA).strftime("%H:%M")
        super().__init__(
            f"{MAX_FAILURES} failed logins in a row: this account is locked for {minutes} more minute(s), "
            f"until {local} (UTC+8); try again then, or ask an administrator to unlock it",
            zh=f"连续{MAX_FAILURES}次登录失败，账号已临时锁定，请于 {local} 后（约{minutes}分钟）再试，"
               "或联系管理员解锁。")
        self.until = until
        self.retry_after = max(1, int((until - now).total_seconds()) + 1)


def login_name(username) -> str:
    """The name as recorded: as typed, trimmed, at most 64 characters."""
    return username.strip()[:64]


def locked_until(session, username: str, now: datetime) -> datetime | None:
    """When the lock on `username` ends, if it is locked at `now`."""
    horizon = now - WINDOW - LOCK   # an older failure can neither lock nor still be locking
    rows = session.execute(
        select(LoginAttempt.at, LoginAttempt.outcome)
        .where(LoginAttempt.username == username, LoginAttempt.at >= horizon)
        .order_by(LoginAttempt.at, LoginAttempt.id)).all()
    failures: list[datetime] = []
    until = None
    for at, outcome in rows:
        if outcome in (SUCCEEDED, UNLOCKED):
            failures, until = [], None
        elif outcome == FAILED:
            if until is not None and at < until:
                continue   # tried while locked (only before this policy recorded refusals)
            failures.append(at)
            recent = [f for f in failures if at - f < WINDOW]
            if len(recent) >= MAX_FAILURES:
                until, failures = at + LOCK, []
    return until if until is not None and now < until else None


def record(session, username: str, outcome: str, now: datetime, *, user_id: int | None = None,
           via: str = "web", address: str | None = None, note: str | None = None) -> None:
    if via not in DOORS:
        raise ValueError(f"unknown login door {via!r}")
    session.add(LoginAttempt(username=login_name(username), user_id=user_id, at=now, outcome=outcome, via=via,
                             address=(address or None) and address[:64], note=note and note[:200]))
