"""The coordinator's token file and CURVE key files, as `kiln` reads them."""

import re

from .errors import UsageError

PUBLIC_MARKER = "# kiln CURVE public key"
SECRET_MARKER = "# kiln CURVE secret key"
Z85_ALPHABET = (
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)
_TOKEN = re.compile(r"[0-9a-f]{64}")


def read_token(path, what="token_file"):
    """The coordinator's token: DATA_DIR/token holds 64 lowercase hex digits."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(4096)
    except OSError as e:
        raise UsageError(
            f"{what} {path}: cannot read the token ({e.strerror}); it is the coordinator's "
            "DATA_DIR/token, readable by the user who runs the coordinator"
        ) from None
    token = text.strip()
    if not _TOKEN.fullmatch(token):
        raise UsageError(
            f"{what} {path}: not a coordinator token (64 hex digits); "
            "pass the coordinator's DATA_DIR/token"
        )
    return token


def key_problem(key):
    """Why a string is not a Z85 CURVE key (40 characters of RFC 32's alphabet), or None."""
    if len(key) != 40:
        return f"{len(key)} characters, a Z85 CURVE key has 40"
    for i, c in enumerate(key):
        if c not in Z85_ALPHABET:
            return f"character {i + 1} ({c!r}) is not in the Z85 alphabet"
    return None


def read_key(path, what, secret):
    """The one key in a file written by `kiln keygen` (blank lines and # comments skipped)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f.read(65536).splitlines()]
    except OSError as e:
        raise UsageError(f"{what} {path}: cannot read the file ({e.strerror})") from None
    other = PUBLIC_MARKER if secret else SECRET_MARKER
    if any(line.startswith(other) for line in lines):
        holds = (
            "a public key; pass the .secret file written beside it by `kiln keygen`"
            if secret
            else "a secret key; pass the .pub file (keep the .secret on its own host)"
        )
        raise UsageError(f"{what} {path}: the file holds {holds}")
    keys = []
    for n, line in enumerate(lines, start=1):
        if not line or line.startswith("#"):
            continue
        why = key_problem(line)
        if why:
            raise UsageError(
                f"{what} {path}: line {n} is not a Z85 CURVE key: {why} "
                "(make keys with `kiln keygen NAME`)"
            )
        keys.append(line)
    if len(keys) != 1:
        found = "no key" if not keys else f"{len(keys)} keys"
        raise UsageError(
            f"{what} {path}: {found} in the file; it should hold one (`kiln keygen NAME`)"
        )
    return keys[0]
