"""Validate an OpenAPI 3.1 document with openapi-spec-validator; report every error.

    python validate.py docs/openapi.json

The same checks as `openapi-spec-validator --validation-errors all FILE` (the
meta-schema of OpenAPI 3.1, then the semantic checks: unique operationIds,
path parameters declared, defaults valid, ...), but grouped: one line per kind
of error with its count, then up to three examples (the JSON path of each).
Exits 1 when there is any error, 0 otherwise.
"""

import json
import re
import sys
from collections import defaultdict

from openapi_spec_validator import OpenAPIV31SpecValidator

EXAMPLES = 3


def location(error) -> str:
    path = list(error.absolute_path)
    if not path:
        return "(document)"
    return ".".join(f'"{p}"' if "/" in str(p) or "." in str(p) else str(p) for p in path)


def kind(error) -> str:
    """What the error is, without where it is."""
    first_line = error.message.splitlines()[0]
    name = type(error).__name__
    if name != "OpenAPIValidationError":
        # Semantic errors name the operation in the message: drop the quoted parts.
        return f"{name}: " + re.sub(r"'[^']*'", "'…'", first_line)
    schema_path = "/".join(str(p) for p in error.absolute_schema_path)
    return f"{first_line} (meta-schema {schema_path})"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        document = json.load(f)
    if not str(document.get("openapi", "")).startswith("3.1"):
        print(f"  expected an OpenAPI 3.1 document, found openapi={document.get('openapi')!r}")
        return 1

    groups = defaultdict(list)
    for error in OpenAPIV31SpecValidator(document).iter_errors():
        where = location(error)
        if where == "(document)":
            where = error.message.splitlines()[0]
        groups[kind(error)].append(where)

    total = sum(len(v) for v in groups.values())
    for what, wheres in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(wheres):4d} × {what}")
        for where in wheres[:EXAMPLES]:
            print(f"         e.g. {where}")
    print(f"  {total} error(s) in {len(groups)} group(s)")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
