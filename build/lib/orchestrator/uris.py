"""URIs a user writes: their scheme (compared case-insensitively), and the secrets they may carry.

A secret can sit in four places of a URI: the password of its user info, the user name itself
(`https://<token>@host`), a query parameter (`?token=...`, `?X-Amz-Signature=...`) and the
fragment. `uri_secret` finds them (the spec refuses them), `redact` hides them wherever a URI
is shown. Both work on the text itself, so no URI, however malformed, makes them raise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
# Query parameter names (lower case, letters and digits only) that hold secrets, by their ending:
# password, sslpassword, access_token, X-Amz-Security-Token, client_secret, api_key, X-Amz-Signature...
_SECRET_PARAM_ENDINGS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "signature",
    "credential",
    "credentials",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "sessionkey",
    "authorization",
)
_SECRET_PARAM_NAMES = ("key", "sig", "pass", "auth")  # Google's ?key=, Azure SAS's ?sig=
# Prefixes of well-known tokens: GitHub, GitLab, Slack, OpenAI/Stripe, Hugging Face, AWS key ids, JWTs, Google.
_TOKEN_PREFIXES = (
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "sk-",
    "sk_live_",
    "hf_",
    "AKIA",
    "ASIA",
    "eyJ",
    "ya29.",
)
REDACTED = "***"


def scheme(uri: str) -> str:
    """The scheme in lower case (`S3://b` -> 's3'), or '' for a plain path."""
    match = _SCHEME.match(uri)
    return match.group(1).lower() if match else ""


def base_scheme(uri: str) -> str:
    """The scheme without a driver (`postgresql+psycopg2://` -> 'postgresql')."""
    return scheme(uri).split("+", 1)[0]


def with_lower_scheme(uri: str) -> str:
    """The same URI with its scheme in lower case, so code downstream may compare it as it likes."""
    match = _SCHEME.match(uri)
    return uri if not match else match.group(1).lower() + uri[len(match.group(1)) :]


@dataclass(frozen=True)
class _Parts:
    """A URI cut into the pieces that may carry secrets, as they appear in its text."""

    head: str  # scheme:// (or nothing)
    user: str | None
    password: str | None
    host: str  # host[:port], then the path
    query: str | None
    fragment: str | None

    @classmethod
    def of(cls, uri: str) -> _Parts:
        match = _SCHEME.match(uri)
        if not match:
            return cls("", None, None, uri, None, None)  # a plain path: nothing in it is a query or fragment
        head, after = uri[: match.end()], uri[match.end() :]
        user = password = None
        userinfo, at, rest = after.rpartition("@")
        # The user info ends at the last @ before the host; a password may hold /, ? or #.
        if at and ("/" not in userinfo or ":" in userinfo.split("/", 1)[0]):
            user, colon, secret = userinfo.partition(":")
            password = secret if colon else None
            after = rest
        before_hash, hash_sign, fragment = after.partition("#")
        location, question_mark, query = before_hash.partition("?")
        return cls(head, user, password, location, query if question_mark else None, fragment if hash_sign else None)

    def secret_params(self) -> list[tuple[str, str]]:
        pairs = [item.partition("=") for item in re.split(r"[&;]", self.query or "")]
        return [(name, value) for name, _, value in pairs if is_secret_param(name)]


def is_secret_param(name: str) -> bool:
    word = re.sub(r"[^a-z0-9]", "", unquote_plus(name).lower())
    return word in _SECRET_PARAM_NAMES or word.endswith(_SECRET_PARAM_ENDINGS)


def looks_like_token(name: str) -> bool:
    """Whether a URI's user name is more likely a token than a login: a known token prefix, 32 or
    more characters, or 16 or more letters and digits mixed with no separator (`optuna`,
    `mlflow_sweeps` and `alice.smith` are logins; `a1B2c3D4e5F6g7H8` is not)."""
    name = unquote(name)
    if name.startswith(_TOKEN_PREFIXES) or len(name) >= 32:
        return True
    digits, letters = sum(c.isdigit() for c in name), sum(c.isalpha() for c in name)
    return len(name) >= 16 and name.isalnum() and digits >= 3 and letters >= 3


def uri_secret(uri: str) -> str | None:
    """Where `uri` carries a secret, in words, or None."""
    parts = _Parts.of(uri)
    if parts.password:
        return "a password in its user info (user:password@)"
    if parts.user and looks_like_token(parts.user):
        return "a user name that looks like a token"
    params = parts.secret_params()
    if params:
        return f"a secret in its query ({unquote_plus(params[0][0])}=...)"
    if parts.fragment:
        return "a fragment (#...), which may hold a token"
    return None


def redact(uri: str) -> str:
    """`uri` for logs, tags and summaries: its password, a token-like user name, secret query
    values and the fragment replaced by ***; everything else as written."""
    parts = _Parts.of(uri)
    text = parts.head
    if parts.user is not None:
        user = REDACTED if looks_like_token(parts.user) else parts.user
        password = "" if parts.password is None else f":{REDACTED}" if parts.password else ":"
        text += f"{user}{password}@"
    text += parts.host
    if parts.query is not None:
        secret = {name for name, _ in parts.secret_params()}
        items = re.split(r"([&;])", parts.query)
        text += "?" + "".join(
            f"{item.partition('=')[0]}={REDACTED}" if item.partition("=")[0] in secret else item for item in items
        )
    if parts.fragment is not None:
        text += "#" + (REDACTED if parts.fragment else "")
    return text


def redact_in(text: str, uri: str) -> str:
    """`text` (e.g. an error message that repeats the URI) with every secret of `uri` replaced,
    as written and percent-decoded."""
    if not uri:
        return text
    text = text.replace(uri, redact(uri))
    for secret in _secrets(uri):
        for form in sorted({secret, unquote(secret), unquote_plus(secret)}, key=len, reverse=True):
            if form:
                text = text.replace(form, REDACTED)
    return text


def _secrets(uri: str) -> list[str]:
    parts = _Parts.of(uri)
    found = [parts.password or "", parts.fragment or ""]
    if parts.user and looks_like_token(parts.user):
        found.append(parts.user)
    found += [value for _, value in parts.secret_params()]
    return [secret for secret in found if secret]
