"""Password hashing with the standard library's scrypt (no extra dependency).

Stored form: `scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>`.
"""
import functools
import hashlib
import hmac
import logging
import os
from dataclasses import dataclass

# scrypt's cost for new hashes. A stored hash carries its own (checked with it), so a lower
# cost changes only hashes made from then on. GRIDFLOW_SCRYPT_N lowers it for the test suite
# alone (tests/conftest.py: ~90 ms a login on a slow 2-core CI machine, thousands of logins);
# a deployment never sets it. Never below 2**10.
DEFAULT_N = 2 ** 14


def _cost_from_environment() -> int:
    text = os.environ.get("GRIDFLOW_SCRYPT_N", "").strip()
    if not text:
        return DEFAULT_N
    n = int(text) if text.isdigit() else 0
    if not (2 ** 10 <= n <= 2 ** 20 and n & (n - 1) == 0):   # scrypt takes powers of two only
        raise ValueError(f"GRIDFLOW_SCRYPT_N={text!r}: give a power of two from 1024 to 1048576, or leave it unset")
    if n < DEFAULT_N:
        logging.getLogger(__name__).warning(
            "GRIDFLOW_SCRYPT_N=%d: new password hashes are weaker than the default %d (meant for the test suite)",
            n, DEFAULT_N)
    return n


_N = _cost_from_environment()
_R, _P = 8, 1


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_password(stored: str, password: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt),
                               n=int(n), r=int(r), p=int(p), dklen=len(bytes.fromhex(digest)))
    return hmac.compare_digest(candidate.hex(), digest)


def password_stamp(stored: str) -> str:
    """A short fingerprint of a stored password hash: it changes with every new password,
    and a page session carries the one it was opened with (web/auth.py)."""
    return hashlib.sha256(stored.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StampedActor:
    """An official as a credential names them (an API bearer token): the account's id and the
    stamp of the password the credential was issued under. The engine's transaction checks
    both (`WorkflowService._user`): after a new password, the owner's or an administrator's
    reset, the credential is refused (`errors.CredentialsChanged`)."""
    id: int
    password_stamp: str

    def matches(self, stamp: str) -> bool:
        return hmac.compare_digest(self.password_stamp.encode(), stamp.encode())


@functools.cache
def _nobody() -> str:
    return hash_password("no account has this password")


def check_password_of_nobody(password: str) -> bool:
    """The same work as `check_password` for a name without an account, so that the time a
    login takes does not tell which names exist. Always False."""
    check_password(_nobody(), password)
    return False


MIN_LENGTH, MAX_LENGTH = 8, 128
MAX_AGE_DAYS = 90   # after this, every page asks the official to choose a new password


def password_problems(password: str, username: str) -> list[tuple[str, str]]:
    """What a new password lacks, as (English, Chinese) messages; empty when it will do.
    The complexity GB/T 22239-2019 asks of a government system's passwords: at least
    MIN_LENGTH characters of three kinds (lower case, upper case, digits, other), and not
    the login name in it."""
    problems = []
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        problems.append((f"Use {MIN_LENGTH} to {MAX_LENGTH} characters.", f"密码长度应为 {MIN_LENGTH}–{MAX_LENGTH} 个字符。"))
    kinds = sum(any(test(c) for c in password) for test in (
        str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum()))
    if kinds < 3:
        problems.append(("Mix at least three of: lower case, upper case, digits, other characters.",
                         "至少包含小写字母、大写字母、数字、其他符号中的三类。"))
    if username and username.lower() in password.lower():
        problems.append(("Do not put your login name in it.", "密码中不能包含用户名。"))
    return problems
