"""Group the failures of a schemathesis run (its NDJSON report) for people.

    python summarize.py REPORT.ndjson [--examples-per-group N]

One block per check (ST103 undocumented status code, ...), then one line per
operation and kind of failure (first line of the message, response status,
the problem's `error` field) with how many test cases hit it, and for the
first `N` of each kind a curl that reproduces it (the smallest request seen),
the status and the start of the response. The API key is never printed: the
curl reads it from $VERIFYD_KEY. Errors of the tool itself (crashes inside
schemathesis) are listed too. Exits 1 when there is any failure or error.
"""

import argparse
import base64
import json
import re
import shlex
import sys
from collections import defaultdict

EXCERPT = 240
# Secrets a response may hold (keys the fuzzer made, TOTP secrets, codes, proofs):
# masked in what is printed, although they die with the run's database.
SECRETS = [
    (re.compile(r"\b(v[ko]_[0-9a-f]+)\.[A-Za-z0-9_-]+"), r"\1.****"),
    (re.compile(r'"(key|recovery_code|proof|step_up|qr_png_base64)":"[^"]*"'), r'"\1":"****"'),
    (re.compile(r"secret=[A-Z2-7]+"), "secret=****"),
    (re.compile(r'"codes":\[[^\]]*\]'), '"codes":[****]'),
]


def mask(text: str) -> str:
    for pattern, replacement in SECRETS:
        text = pattern.sub(replacement, text)
    return text


def decode(blob):
    if blob is None:
        return ""
    if isinstance(blob, dict) and "$base64" in blob:
        return base64.b64decode(blob["$base64"]).decode("utf-8", "replace")
    if isinstance(blob, dict) and "string" in blob:
        return blob["string"]
    return blob if isinstance(blob, str) else json.dumps(blob)


def shell_quote(text: str) -> str:
    """Quoted for bash; control characters as $'\\xNN' so the line can be pasted."""
    if all(" " <= ch != "\x7f" for ch in text):
        return shlex.quote(text)
    out = []
    for byte in text.encode("utf-8", "surrogatepass"):
        ch = chr(byte)
        if ch in "\\'":
            out.append("\\" + ch)
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    return "$'" + "".join(out) + "'"


def curl(request) -> str:
    parts = ["curl", "-sS", "-X", request["method"]]
    for name, values in (request.get("headers") or {}).items():
        if name.lower() in ("user-agent", "accept-encoding", "connection", "content-length") or name.startswith("X-Schemathesis"):
            continue
        for value in values if isinstance(values, list) else [values]:
            if name.lower() == "authorization":
                parts += ["-H", '"Authorization: Bearer $VERIFYD_KEY"']
                continue
            parts += ["-H", shell_quote(f"{name}: {value}")]
    body = decode(request.get("body"))
    if body:
        if "\x00" in body:
            # bash strings cannot hold NUL: let printf write the bytes.
            escaped = "".join(
                f"\\x{b:02x}" if not 0x20 <= b < 0x7F or chr(b) in "\\'%" else chr(b)
                for b in body.encode("utf-8", "surrogatepass")
            )
            parts += ["--data-binary", f"@<(printf '%b' '{escaped}')"]
        else:
            parts += ["--data-raw", shell_quote(body)]
    parts.append(shell_quote(request["uri"]))
    return " ".join(parts)


def describe(failure) -> str:
    """The failure's message, short and without the values of this one case."""
    lines = (failure.get("message") or "").strip().splitlines()
    if not lines:
        return failure["title"]
    what = lines[0]
    if what[:1] in "{[" and " ... " in what:
        # "<the whole value> ... is not valid under ...": keep what is wrong, not the value.
        what = "<value>" + what[what.rindex(" ... ") + 4 :]
    where = next((line[len("Schema at ") :].rstrip(":") for line in lines if line.startswith("Schema at ")), None)
    if where:
        what += f" (schema {where})"
    return what if len(what) <= 160 else what[:157] + "..."


def problem_error(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        return ""
    return value.get("error", "") if isinstance(value, dict) else ""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("report")
    parser.add_argument("--examples-per-group", type=int, default=1)
    args = parser.parse_args()

    # check label -> operation -> kind -> list of (size, phase, curl, status, excerpt)
    groups = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    errors = []
    tested = set()
    with open(args.report, encoding="utf-8") as f:
        for line in f:
            event = json.loads(line)
            (kind, body), = event.items()
            if kind == "NonFatalError":
                value = body.get("value", {})
                errors.append(f"{body.get('label')} ({body.get('phase')}): {value.get('type')}: {value.get('message')}")
                continue
            if kind != "ScenarioFinished":
                continue
            recorder = body.get("recorder", {})
            interactions = recorder.get("interactions", {})
            for case_id, checks in recorder.get("checks", {}).items():
                case = recorder.get("cases", {}).get(case_id, {}).get("value", {})
                if case:
                    tested.add(f"{case['method']} {case['path']}")
                for check in checks:
                    if check["status"] != "failure":
                        continue
                    failure = check["failure_info"]["failure"]
                    interaction = interactions.get(case_id)
                    if interaction is None:
                        status, text, command = "-", "", "(no request recorded)"
                    else:
                        response = interaction.get("response") or {}
                        status = response.get("status_code", "-")
                        text = decode(response.get("content"))
                        command = curl(interaction["request"])
                    what = describe(failure)
                    error = problem_error(text)
                    variant = f"{what} | {status}{' ' + error if error else ''}"
                    label = f"{failure['code']} {failure['title']} ({check['name']})"
                    excerpt = mask(" ".join(text.split()))[:EXCERPT]
                    groups[label][failure["operation"]][variant].append(
                        (len(command), body.get("phase"), command, status, excerpt)
                    )

    print("Overview: check, what went wrong | status and problem `error`, operations hit (failing cases)")
    for label in sorted(groups):
        print(f"  {label}")
        across = defaultdict(lambda: [0, 0])
        for kinds in groups[label].values():
            for variant, hits in kinds.items():
                across[variant][0] += 1
                across[variant][1] += len(hits)
        for variant, (operations, cases) in sorted(across.items(), key=lambda kv: -kv[1][0]):
            print(f"    {operations:3d} op(s) {cases:5d} case(s)  {variant}")

    total = 0
    for label in sorted(groups):
        operations = groups[label]
        cases = sum(len(v) for kinds in operations.values() for v in kinds.values())
        total += cases
        print(f"\n=== {label}: {cases} failing case(s) on {len(operations)} operation(s)")
        for operation in sorted(operations):
            for variant, hits in sorted(operations[operation].items()):
                print(f"  {operation}  ×{len(hits)}  {variant}")
                for _, phase, command, status, excerpt in sorted(hits)[: args.examples_per_group]:
                    print(f"      [{phase}] {command}")
                    print(f"      -> {status} {excerpt}")
    if errors:
        print(f"\n=== schemathesis errors (the tool failed, not a check): {len(errors)}")
        for error in errors:
            print(f"  {error}")
    print(
        f"\n{total} failing check result(s) in {sum(len(o) for o in groups.values())} (check, operation) pair(s), "
        f"{len(errors)} tool error(s)"
    )
    return 1 if total or errors else 0


if __name__ == "__main__":
    sys.exit(main())
