"""A schemathesis check for ``test_serve.py``'s ``--checks all`` run (loaded through
``SCHEMATHESIS_HOOKS``): the schema-valid requests the server may still refuse, and why.

A JSON schema cannot say that a name must have letters after folding to ASCII, that prior weights
must name exactly the model's languages and not all be 0, that ``/estimate``'s counts come one per
name and its distinct names times resamples stay within its bound, or that a body must fit in
:data:`~namesclf.serve.schemas.MAX_BODY_BYTES`. The server refuses those with the 422 and 413 its
schema declares, so the run lets ``positive_data_acceptance`` take both; this check then fails any
schema-valid request refused for another reason (which would be a schema that says less than the
server does).
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis

from namesclf.serve.schemas import MAX_BODY_BYTES

#: The 422 messages of refusals the schema cannot state (see :mod:`namesclf.inference.priors`,
#: :mod:`namesclf.inference.predictor`, the ``/predict`` routes and ``/estimate``: one count per
#: name, and distinct names x resamples within its work bound).
MODEL_REFUSALS = ("no letters after folding", "the prior: ", "give one per name", "resamples is over the limit")


@schemathesis.check
def valid_requests_are_refused_only_for_what_no_schema_can_state(ctx: Any, response: Any, case: Any) -> None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code not in (413, 422):
        return
    if response.status_code == 413:
        size = len(response.request.body or b"")
        assert size > MAX_BODY_BYTES, f"a {size:,}-byte body, within the limit, was refused as too large"
        return
    error = json.loads(response.content)["error"]
    assert any(reason in error for reason in MODEL_REFUSALS), f"a schema-valid request refused: {error}"
