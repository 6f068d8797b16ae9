"""The sandbox ASGI app: thin routes over per-app state (``app.state.sandbox``)."""

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.datastructures import FormData

from dashtam.sandbox import trader
from dashtam.sandbox.config import SandboxConfig
from dashtam.sandbox.data import Account, SandboxData, Transaction
from dashtam.sandbox.errors import SandboxError, trader_error
from dashtam.sandbox.faults import FAULT_HEADER, FaultInjector, Target, parse_fault
from dashtam.sandbox.oauth import AuthorizeRejected, AuthorizeRequest, OAuthServer
from dashtam.sandbox.pages import consent_page, error_page
from dashtam.sandbox.stats import Stats


@dataclass
class SandboxState:
    """Everything mutable about one sandbox, so two apps in one process never interfere."""

    config: SandboxConfig
    stats: Stats = field(default_factory=Stats)
    data: SandboxData = field(init=False)
    rendered: trader.RenderedTransactions = field(default_factory=trader.RenderedTransactions)
    oauth: OAuthServer = field(init=False)
    faults: FaultInjector = field(init=False)

    def __post_init__(self) -> None:
        self.data = SandboxData(self.config)
        self.oauth = OAuthServer(self.config, self.stats)
        self.faults = FaultInjector(self.config, self.stats)


def get_state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


State = Annotated[SandboxState, Depends(get_state)]
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _strings(form: FormData) -> dict[str, str]:
    return {key: value for key, value in form.items() if isinstance(value, str)}


# -- OAuth --------------------------------------------------------------------------------------

oauth_router = APIRouter(prefix="/v1/oauth", tags=["oauth"])


def _authorize_answer(
    state: SandboxState, request: AuthorizeRequest, action: str | None
) -> Response:
    """Shared by GET (show consent, ``action`` None) and POST (the person's choice)."""
    try:
        error = state.oauth.check_authorize(request)
    except AuthorizeRejected as exc:
        return HTMLResponse(error_page(str(exc)), status_code=400)
    if error is not None:
        return RedirectResponse(request.error_redirect(error), status_code=302)
    if action is None:
        return HTMLResponse(consent_page(request))
    if action == "approve":
        return RedirectResponse(state.oauth.approve(request), status_code=302)
    return RedirectResponse(state.oauth.deny(request), status_code=302)


@oauth_router.get("/authorize", response_class=HTMLResponse)
async def authorize_page(request: Request, state: State) -> Response:
    return _authorize_answer(state, AuthorizeRequest.from_params(request.query_params), None)


@oauth_router.post("/authorize", response_class=HTMLResponse)
async def authorize_decision(request: Request, state: State) -> Response:
    form = _strings(await request.form())
    action = "approve" if form.get("action") == "approve" else "deny"
    return _authorize_answer(state, AuthorizeRequest.from_params(form), action)


@oauth_router.post("/token")
async def token(request: Request, state: State) -> JSONResponse:
    await state.faults.apply(request.headers.get(FAULT_HEADER), "token")
    form = _strings(await request.form())
    body = state.oauth.token(request.headers.get("authorization"), form)
    return JSONResponse(body, headers=_NO_STORE)


# -- Trader API ---------------------------------------------------------------------------------


async def guard_trader(request: Request, state: State) -> None:
    """Faults first (so ``expired_token`` wins over a good token), then the bearer token."""
    state.stats.trader_requests += 1
    await state.faults.apply(request.headers.get(FAULT_HEADER), "trader")
    state.oauth.check_access_token(request.headers.get("authorization"))


def get_account(account_hash: str, state: State) -> Account:
    return trader.lookup_account(state.data, account_hash)


AccountDep = Annotated[Account, Depends(get_account)]
trader_router = APIRouter(
    prefix="/trader/v1", tags=["trader"], dependencies=[Depends(guard_trader)]
)


@trader_router.get("/accounts/accountNumbers")
async def account_numbers(state: State) -> list[dict[str, str]]:
    return [{"accountNumber": a.number, "hashValue": a.hash_value} for a in state.data.accounts]


@trader_router.get("/accounts")
async def accounts(state: State, fields: str | None = None) -> list[trader.JSON]:
    positions = trader.wants_positions(fields)
    return [trader.account_json(a, positions=positions) for a in state.data.accounts]


@trader_router.get("/accounts/{account_hash}")
async def account(account: AccountDep, fields: str | None = None) -> trader.JSON:
    return trader.account_json(account, positions=trader.wants_positions(fields))


@trader_router.get("/accounts/{account_hash}/transactions")
async def transactions(
    account: AccountDep,
    state: State,
    start_date: Annotated[str | None, Query(alias="startDate")] = None,
    end_date: Annotated[str | None, Query(alias="endDate")] = None,
    types: str | None = None,
    symbol: str | None = None,
) -> Response:
    window = trader.parse_window(start_date, end_date)
    wanted = trader.parse_types(types)
    book = state.data.transactions(account)
    found = trader.find_transactions(book, window, wanted, symbol)
    return Response(state.rendered.page(found, account.number), media_type="application/json")


@trader_router.get("/accounts/{account_hash}/transactions/{activity_id}")
async def transaction(account: AccountDep, activity_id: int, state: State) -> trader.JSON:
    return trader.transaction_json(_transaction(state, account, activity_id), account.number)


@trader_router.get("/userPreference")
async def user_preference(state: State) -> trader.JSON:
    return trader.user_preference_json(state.data)


def _transaction(state: SandboxState, account: Account, activity_id: int) -> Transaction:
    tx = state.data.transactions(account).get(activity_id)
    if tx is None:
        raise trader_error(404, "Not Found", f"No transaction {activity_id}.")
    return tx


# -- Test controls (no auth: this is a sandbox) -------------------------------------------------

control_router = APIRouter(prefix="/sandbox", tags=["sandbox controls"])


class FaultRequest(BaseModel):
    fault: str
    count: int = Field(default=1, ge=1)
    target: Target = "trader"


@control_router.get("/stats")
async def stats(state: State) -> dict[str, int]:
    return state.stats.as_dict()


@control_router.post("/reset-stats")
async def reset_stats(state: State) -> dict[str, int]:
    state.stats.reset()
    return state.stats.as_dict()


@control_router.post("/faults")
async def schedule_fault(body: FaultRequest, state: State) -> dict[str, Any]:
    try:
        fault = parse_fault(body.fault)
    except ValueError as exc:
        raise trader_error(400, "Bad Request", str(exc)) from exc
    state.faults.schedule(fault, body.count, body.target)
    return body.model_dump()


@control_router.delete("/faults")
async def clear_faults(state: State) -> dict[str, str]:
    state.faults.clear()
    return {"status": "cleared"}


@control_router.post("/tokens/{action}")
async def tokens(action: Literal["revoke", "expire"], state: State) -> dict[str, str]:
    if action == "revoke":
        state.oauth.revoke_all()
    else:
        state.oauth.expire_access_tokens()
    return {"status": action + "d"}


@control_router.get("/accounts")
async def sandbox_accounts(state: State) -> list[dict[str, Any]]:
    """Account hashes and pending activity ids, for tests that hold no access token."""
    return [
        {
            "accountNumber": a.number,
            "hashValue": a.hash_value,
            "pending": [tx.activity_id for tx in state.data.transactions(a).pending()],
        }
        for a in state.data.accounts
    ]


def _change_transaction(
    state: SandboxState, account_hash: str, activity_id: int, change: Literal["post", "remove"]
) -> trader.JSON:
    account = state.data.account(account_hash)
    if account is None:
        raise trader_error(404, "Not Found", "Unknown account hash.")
    book = state.data.transactions(account)
    if book.get(activity_id) is None:
        raise trader_error(404, "Not Found", f"No transaction {activity_id}.")
    tx = book.post(activity_id) if change == "post" else book.remove(activity_id)
    return trader.transaction_json(tx, account.number)


@control_router.post("/accounts/{account_hash}/transactions/{activity_id}/post")
async def post_transaction(account_hash: str, activity_id: int, state: State) -> trader.JSON:
    """Settle a PENDING transaction, so sync tests see pending turn into posted."""
    return _change_transaction(state, account_hash, activity_id, "post")


@control_router.delete("/accounts/{account_hash}/transactions/{activity_id}")
async def remove_transaction(account_hash: str, activity_id: int, state: State) -> trader.JSON:
    """Drop a transaction, so sync tests see one that is no longer returned."""
    return _change_transaction(state, account_hash, activity_id, "remove")


# -- App ----------------------------------------------------------------------------------------


async def _render_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SandboxError)
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


def create_app(config: SandboxConfig | None = None) -> FastAPI:
    """A fresh sandbox; its state lives on ``app.state.sandbox`` and nowhere else."""
    app = FastAPI(
        title="Dashtam Schwab sandbox",
        description="Schwab-compatible OAuth and Trader API emulator for development and tests.",
    )
    app.state.sandbox = SandboxState(config or SandboxConfig())
    app.add_exception_handler(SandboxError, _render_error)
    for router in (oauth_router, trader_router, control_router):
        app.include_router(router)
    return app
