"""schemathesis hooks for scripts/fuzz/api.sh.

A fuzzer sends the `Idempotency-Key` it generated with many different
bodies; the hub rightly answers the second of those 422
`idempotency-key-reused`, which schemathesis would take for a valid request
refused. So every valid key is made unique per request (a counter appended
inside it, within the 255 characters the spec allows); invalid keys are left
as they are, for the negative checks.
"""

import itertools
import re

import schemathesis

HEADER = "Idempotency-Key"
BARE = re.compile(r"[ \t]*([!#-\[\]-~]{1,255})[ \t]*")
QUOTED = re.compile(r'[ \t]*"((?:[ !#-\[\]-~]|\\["\\]){1,255})"[ \t]*')
ESCAPE = re.compile(r'\\["\\]|.')
NEXT = itertools.count()


def unique(key: str) -> str:
    suffix = f"~{next(NEXT)}"
    bare = BARE.fullmatch(key)
    if bare:
        return bare.group(1)[: 255 - len(suffix)] + suffix
    quoted = QUOTED.fullmatch(key)
    if quoted:
        # Characters of the key, an escape pair counting as one.
        kept = ESCAPE.findall(quoted.group(1))[: 255 - len(suffix)]
        return '"' + "".join(kept) + suffix + '"'
    return key


@schemathesis.hook
def before_call(context, case, **kwargs):
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == HEADER.lower() and isinstance(headers[name], str):
            headers[name] = unique(headers[name])
