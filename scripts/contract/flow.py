"""One whole verification through a client generated from docs/openapi.json.

    python flow.py --client-dir DIR --base-url URL --inbox FILE --phone +E164

DIR holds the package `verifyd_client` that openapi-python-client generated;
the API key (scope `verify`) comes from $VERIFYD_KEY. The flow, with the
client's typed functions only:

  1. POST /v1/verifications (sms)  -> 201, a pending Verification
  2. the code, read from the dev inbox file the service appends to (the line
     for this phone written after step 1; the code is never printed)
  3. POST /v1/verifications/{id}/check with it -> 200, status approved
  4. GET /v1/verifications/{id}    -> 200, status approved

One line per step; exits 1 at the first step that does not hold.
"""

import argparse
import json
import os
import sys
import time
import uuid

INBOX_WAIT_SECS = 15


def fail(step: str, why: str) -> None:
    print(f"  FAIL {step}: {why}")
    sys.exit(1)


def read_code(inbox: str, offset: int, phone: str) -> str:
    """The code of the first SMS to `phone` appended to the inbox after `offset`."""
    deadline = time.monotonic() + INBOX_WAIT_SECS
    while time.monotonic() < deadline:
        with open(inbox, "rb") as f:
            f.seek(offset)
            for line in f.read().decode("utf-8").splitlines():
                message = json.loads(line)
                if message.get("to") == phone and message.get("channel") == "sms" and message.get("code"):
                    return message["code"]
        time.sleep(0.2)
    fail("inbox", f"no SMS to {phone} appeared in {inbox} within {INBOX_WAIT_SECS}s")
    raise AssertionError  # unreachable


def expect(step: str, response, status: int, model):
    if int(response.status_code) != status or not isinstance(response.parsed, model):
        body = response.content.decode("utf-8", "replace")[:300]
        fail(step, f"expected {status} with a {model.__name__}, got {int(response.status_code)}: {body}")
    return response.parsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client-dir", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--inbox", required=True)
    parser.add_argument("--phone", required=True)
    args = parser.parse_args()
    key = os.environ.get("VERIFYD_KEY") or fail("setup", "VERIFYD_KEY is not set")

    sys.path.insert(0, args.client_dir)
    try:
        from verifyd_client import AuthenticatedClient
        from verifyd_client.api.verifications import check, create_verification, get_verification
        from verifyd_client.models import Channel, CodeBody, Verification, VerificationRequest, VerificationStatus
    except ImportError as error:
        fail("import", f"the generated client lacks what the flow uses: {error}")

    client = AuthenticatedClient(base_url=args.base_url, token=key, raise_on_unexpected_status=False)
    account = f"contract-flow-{uuid.uuid4().hex[:8]}"
    offset = os.path.getsize(args.inbox)

    with client as c:
        created = expect(
            "create",
            create_verification.sync_detailed(client=c, body=VerificationRequest(account_id=account, phone=args.phone, channel=Channel.SMS)),
            201,
            Verification,
        )
        if created.status != VerificationStatus.PENDING or created.to != args.phone:
            fail("create", f"expected a pending verification to {args.phone}, got status={created.status} to={created.to}")
        print(f"  ok   create: 201, verification {created.id} pending, {created.attempts_left} attempts left")

        code = read_code(args.inbox, offset, args.phone)
        print(f"  ok   inbox: an SMS to {args.phone} with a {len(code)}-digit code (not shown)")

        checked = expect("check", check.sync_detailed(created.id, client=c, body=CodeBody(code=code)), 200, Verification)
        if checked.status != VerificationStatus.APPROVED:
            fail("check", f"expected approved, got {checked.status}")
        print(f"  ok   check: 200, {checked.status}")

        read = expect("get", get_verification.sync_detailed(created.id, client=c), 200, Verification)
        if read.status != VerificationStatus.APPROVED:
            fail("get", f"expected approved, got {read.status}")
        print(f"  ok   get: 200, {read.status}, completed_at={read.completed_at}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
