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
Auditors and administrators read them (`LoginRecords`, the page 登录日志 /audit/logins).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select

from . import clock
from .clock import CHINA
from .errors import PermissionDenied
from .models import JurisdictionNode, LoginAttempt, RoleAssignment, User
from .org_log import READER_ROLES, refuse_bad_filters

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
                continue   # two attempts raced past the lock check: neither counts nor extends it
            failures.append(at)
            recent = [f for f in failures if at - f < WINDOW]
            if len(recent) >= MAX_FAILURES:
                until, failures = at + LOCK, []
    return until if until is not None and now < until else None


def filtered(query, username: str | None = None, outcome: str | None = None, failures: bool = False):
    """`query` of login attempts narrowed to a username (as recorded), an outcome, or all but
    the successful logins (`failures`): the login record's filters, on the page and the CLI."""
    if username:
        query = query.where(LoginAttempt.username == login_name(username))
    if outcome:
        query = query.where(LoginAttempt.outcome == outcome)
    elif failures:
        query = query.where(LoginAttempt.outcome != SUCCEEDED)
    return query


def record(session, username: str, outcome: str, now: datetime, *, user_id: int | None = None,
           via: str = "web", address: str | None = None, note: str | None = None) -> None:
    if via not in DOORS:
        raise ValueError(f"unknown login door {via!r}")
    session.add(LoginAttempt(username=login_name(username), user_id=user_id, at=now, outcome=outcome, via=via,
                             address=(address or None) and address[:64], note=note and note[:200]))


# ------------------------------------------------------------------ reading the record

OUTCOMES = (SUCCEEDED, FAILED, REFUSED_LOCKED, UNLOCKED)
LOCKED_SHOWN = 200


@dataclass(frozen=True)
class LoginRow:
    at: datetime
    username: str
    outcome: str
    via: str
    address: str | None
    note: str | None


@dataclass(frozen=True)
class LoginPage:
    rows: list[LoginRow]
    has_more: bool
    locked: list[tuple[str, datetime]]   # the names locked now, with when each lock ends


class LoginRecords:
    """The login record for auditors and administrators (登录日志): the attempts on accounts
    holding a role within the subtrees where the reader is auditor or admin; the attempts
    on names without an account (someone guessing) for administrators only, as they belong
    to no jurisdiction. Newest first."""

    def __init__(self, service):
        self.service = service

    def may_read(self, actor) -> bool:
        with self.service.db.read_session() as session:
            return bool(self._scope(self.service._user(session, actor))[0])

    @staticmethod
    def _scope(user) -> tuple[list[str], bool]:
        """(the paths the reader reads under, whether they read names without an account)."""
        held = [ra for ra in user.roles if ra.role in READER_ROLES]
        return sorted({ra.node.path for ra in held}), any(ra.role == "admin" for ra in held)

    def unlock(self, actor, username: str) -> bool:
        """An administrator lifts the lock on a name of their jurisdiction (an account holding
        a role there, or a name without an account): recorded with who did it. False if the
        name was not locked; PermissionDenied for anyone else, auditors too (they only read)."""
        service = self.service
        with service.db.read_session() as session:
            reader = service._user(session, actor)
            admin_paths = sorted({ra.node.path for ra in reader.roles if ra.role == "admin"})
            name = login_name(username) if isinstance(username, str) else ""
            account = session.scalar(select(User).where(User.username == name)) if name else None
            held = [ra.node.path for ra in account.roles] if account is not None else None
        if not admin_paths or (held is not None and not any(p.startswith(a) for p in held for a in admin_paths)):
            raise PermissionDenied("only an administrator of the account's jurisdiction lifts a login lock",
                                   zh="只有该账号所在辖区的管理员可以解除登录锁定")
        return service.unlock_login(name, reader.username, via="web")

    def attempts(self, actor, username: str | None = None, outcome: str | None = None,
                 limit: int = 50, offset: int = 0) -> LoginPage:
        refuse_bad_filters({"username": (username, 64)}, {"outcome": (outcome, OUTCOMES)}, limit, offset)
        with self.service.db.read_session() as session:
            paths, unknown_names = self._scope(self.service._user(session, actor))
            if not paths:
                raise PermissionDenied("only auditors and administrators read the login record",
                                       zh="只有督查和管理员可以查看登录日志")
            accounts = (select(RoleAssignment.user_id)
                        .join(JurisdictionNode, JurisdictionNode.id == RoleAssignment.node_id)
                        .where(or_(*[JurisdictionNode.path.startswith(p, autoescape=True) for p in paths])))
            visible = LoginAttempt.user_id.in_(accounts)
            if unknown_names:
                visible = or_(visible, LoginAttempt.user_id.is_(None))
            query = filtered(select(LoginAttempt).where(visible), username, outcome)
            found = list(session.scalars(query.order_by(LoginAttempt.id.desc()).limit(limit + 1).offset(offset)))
            now = clock.now()
            # the names that may be locked now: at most LOCKED_SHOWN, the latest failed first (a
            # guesser trying thousands of names must not make this page read each of them)
            recent = session.scalars(select(LoginAttempt.username).where(
                visible, LoginAttempt.outcome == FAILED, LoginAttempt.at >= now - WINDOW - LOCK)
                .group_by(LoginAttempt.username).order_by(func.max(LoginAttempt.id).desc()).limit(LOCKED_SHOWN))
            locked = sorted((name, until) for name in recent if (until := locked_until(session, name, now)))
        rows = [LoginRow(a.at, a.username, a.outcome, a.via, a.address, a.note) for a in found[:limit]]
        return LoginPage(rows, len(found) > limit, locked)
