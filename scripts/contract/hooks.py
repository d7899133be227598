"""Schemathesis hooks of scripts/contract.sh (loaded through SCHEMATHESIS_HOOKS).

The fuzzer's own API key must survive the run. `DELETE /v1/api-keys/{key_id}`
(revoke) and `POST /v1/api-keys/{key_id}/rotate` (with `grace_secs: 0`) would
end it, and the stateful phase finds its id: `GET /v1/api-keys` lists it and
schemathesis links that list to both operations. Rather than exclude the two
operations, every call whose `key_id` names a protected key (the ids in
CONTRACT_PROTECTED_KEY_IDS, comma-separated) is sent for an id that does not
exist instead. Keys the fuzzer makes itself are revoked and rotated as generated.
"""

import os

import schemathesis

PROTECTED = {k for k in os.environ.get("CONTRACT_PROTECTED_KEY_IDS", "").split(",") if k}
STAND_IN = "vk_000000000000"


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.path_parameters and case.path_parameters.get("key_id") in PROTECTED:
        case.path_parameters["key_id"] = STAND_IN
