"""Counters that let tests (in this process or another) assert what the sandbox was asked."""

from dataclasses import asdict, dataclass, fields


@dataclass(slots=True)
class Stats:
    """Plain ints; ``token_requests`` counts requests that reached the OAuth logic, so a request
    failed by fault injection shows up in ``faults_injected`` instead."""

    token_requests: int = 0
    authorization_code_grants: int = 0
    refresh_grants: int = 0
    token_errors: int = 0
    authorizations_approved: int = 0
    authorizations_denied: int = 0
    trader_requests: int = 0
    faults_injected: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def reset(self) -> None:
        for field in fields(self):
            setattr(self, field.name, 0)
