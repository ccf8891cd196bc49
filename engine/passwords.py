"""Password hashing with the standard library's scrypt (no extra dependency).

Stored form: `scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>`.
"""
import functools
import hashlib
import hmac
import os

_N, _R, _P = 2 ** 14, 8, 1


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


@functools.cache
def _nobody() -> str:
    return hash_password("no account has this password")


def check_password_of_nobody(password: str) -> bool:
    """The same work as `check_password` for a name without an account, so that the time a
    login takes does not tell which names exist. Always False."""
    check_password(_nobody(), password)
    return False
