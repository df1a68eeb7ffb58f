"""The core's domain reasons in LAPOR!'s words, and back; the Idempotency-Key's format.

The sync core decides in domain terms (``connector.domain.Reason``, ``FailReason``); what
is sent to LAPOR!, stored in ``outbox.last_error`` or read from LAPOR!'s error answers is
translated here, and only here.
"""

from __future__ import annotations

import hashlib

from connector.domain import ChangeId, FailReason, Reason

# The code stored (and shown by `outbox list`, `status`, JSON) for each failure: LAPOR!'s
# own error code where LAPOR! has one (../shared/spec/README.md), else the connector's.
FAIL_CODES: dict[FailReason, str] = {
    FailReason.COMPLAINT_CLOSED: "laporan_ditutup",
    FailReason.NOT_DISPOSED_TO_US: "bukan_disposisi",
    FailReason.COMPLAINT_NOT_FOUND: "laporan_tidak_ditemukan",
    FailReason.LOCAL_DATA_INVALID: "data_lokal_tidak_valid",
    FailReason.UNCONFIRMED: "tidak_terkonfirmasi",
    FailReason.KEY_TAKEN: "kunci_idempotensi_dipakai",
}
_BY_CODE = {code: reason for reason, code in FAIL_CODES.items()}

# LAPOR!'s refusals of a detail request that are one record's matter: the record is
# quarantined under the domain reason (others keep LAPOR!'s code as their reason).
DETAIL_REFUSALS: dict[str, Reason] = {
    "bukan_disposisi": Reason.NOT_DISPOSED,
    "respons_terlalu_besar": Reason.RESPONSE_TOO_LARGE,
}


def detail_refusal(status: int, code: str) -> Reason | None:
    """The domain reason of LAPOR!'s refusal of one complaint's detail, if it is that
    record's matter alone (None: a refusal the caller raises on)."""
    if code == "bukan_disposisi":
        return Reason.NOT_DISPOSED
    if status == 404:
        return Reason.NOT_FOUND
    return DETAIL_REFUSALS.get(code)


def wire_code(reason: FailReason) -> str:
    return FAIL_CODES[reason]


def fail_reason(code: str) -> FailReason | None:
    """The domain reason of a LAPOR! refusal code, when the core has one for it."""
    return _BY_CODE.get(code)


KEY_MAX = 128  # the spec: 1..128 printable ASCII


def idempotency_key(nonce: str, tracking_id: str, change_id: str, generation: int = 0) -> str:
    """The one place a key is built: ``mahulu-<nonce>-<tracking id>-<change id>[-k<n>]``.

    ``nonce`` is made when the database is created, so a fresh database never reuses an
    old one's keys; ``generation`` counts keys replaced, after LAPOR! forgot the old one or held it
    for another body (a collision).
    Stored keys are replayed as they are: this format never changes.
    """
    change = ChangeId(change_id).key_part
    parts = ["mahulu", nonce, tracking_id, change] if nonce else ["mahulu", tracking_id, change]
    if generation:
        parts.append(f"k{generation}")
    key = "-".join(parts)
    if len(key) > KEY_MAX or not all(0x21 <= ord(c) <= 0x7E for c in key):
        digest = hashlib.sha256(key.encode()).hexdigest()[:40]
        key = f"mahulu-{nonce}-{digest}"
    return key
