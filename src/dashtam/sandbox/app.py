"""The sandbox ASGI app: thin routes over per-app state (``app.state.sandbox``)."""

from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.datastructures import FormData

from dashtam.sandbox import trader
from dashtam.sandbox.config import SandboxConfig
from dashtam.sandbox.data import Account, SandboxData, Transaction, TransactionBook
from dashtam.sandbox.errors import SandboxError, trader_error
from dashtam.sandbox.faults import FAULT_HEADER, FaultInjector, Target, parse_fault
from dashtam.sandbox.oauth import AuthorizeRejected, AuthorizeRequest, OAuthServer
from dashtam.sandbox.pages import consent_page, error_page
from dashtam.sandbox.persistence import StateFile
from dashtam.sandbox.stats import Stats

TransactionChange = Literal["post", "remove"]


@dataclass(frozen=True, slots=True)
class TransactionsRequest:
    account_hash: str
    start: datetime
    end: datetime
    rows: int


@dataclass
class SandboxState:
    """Everything mutable about one sandbox, so two apps in one process never interfere.

    With ``config.state_file`` set (dev), what a restart must not forget is saved there after
    every change and read back at start (``persistence``); otherwise it lives in memory only.
    """

    config: SandboxConfig
    stats: Stats = field(default_factory=Stats)
    # The latest transactions requests answered, for tests that check how a client split them.
    answered: deque[TransactionsRequest] = field(default_factory=lambda: deque(maxlen=10_000))
    data: SandboxData = field(init=False)
    rendered: trader.RenderedTransactions = field(default_factory=trader.RenderedTransactions)
    oauth: OAuthServer = field(init=False)
    faults: FaultInjector = field(init=False)
    # Posts and removals made through the controls, in order, replayed onto regenerated data.
    changes: list[tuple[str, int, TransactionChange]] = field(default_factory=list)
    store: StateFile = field(init=False)
    _replayed: set[str] = field(default_factory=set)  # accounts whose changes were replayed

    def __post_init__(self) -> None:
        self.store = StateFile(self.config.state_file)
        saved = self.store.load()
        self.data = SandboxData(self._data_config(saved.get("data", {})))
        if saved.get("data") == self._data_identity():
            self.changes = [(a, int(i), c) for a, i, c in saved.get("transactions", [])]
        self.oauth = OAuthServer(self.config, self.stats, on_change=self.save)
        self.oauth.restore(saved.get("oauth", {}))
        self.faults = FaultInjector(self.config, self.stats, on_change=self.save)
        self.faults.restore(saved.get("faults", {}))

    def _data_identity(self) -> dict[str, Any]:
        """What makes the synthetic data what it is; saved changes apply only to the same."""
        config = self.data.config
        return {
            "seed": config.seed,
            "accounts": config.accounts,
            "transactions_per_account": config.transactions_per_account,
            "pending_per_account": config.pending_per_account,
            "history_days": config.history_days,
            "reference_date": self.data.reference.date().isoformat(),
        }

    def _data_config(self, saved: dict[str, Any]) -> SandboxConfig:
        """A restart on another day keeps the reference date the data was first made for."""
        if self.config.reference_date is not None or "reference_date" not in saved:
            return self.config
        same = {key: value for key, value in saved.items() if key != "reference_date"}
        if same != {key: getattr(self.config, key) for key in same}:
            return self.config
        return self.config.model_copy(
            update={"reference_date": date.fromisoformat(saved["reference_date"])}
        )

    def book(self, account: Account) -> TransactionBook:
        """An account's transactions, with the posts and removals made before a restart."""
        book = self.data.transactions(account)
        if account.hash_value not in self._replayed:
            self._replayed.add(account.hash_value)
            for account_hash, activity_id, change in self.changes:
                if account_hash == account.hash_value and book.get(activity_id) is not None:
                    _apply(book, activity_id, change)
        return book

    def change_transaction(
        self, account: Account, activity_id: int, change: TransactionChange
    ) -> Transaction:
        tx = _apply(self.book(account), activity_id, change)
        self.changes.append((account.hash_value, activity_id, change))
        self.save()
        return tx

    def save(self) -> None:
        if self.store.path is None:
            return
        self.store.save(
            {
                "data": self._data_identity(),
                "oauth": self.oauth.snapshot(),
                "transactions": self.changes,
                "faults": self.faults.scheduled(),
            }
        )


def _apply(book: TransactionBook, activity_id: int, change: TransactionChange) -> Transaction:
    return book.post(activity_id) if change == "post" else book.remove(activity_id)


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
    await state.faults.apply(
        request.headers.get(FAULT_HEADER), "trader", request.url.path, request.url.query
    )
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
    book = state.book(account)
    found = trader.find_transactions(book, window, wanted, symbol)
    state.answered.append(TransactionsRequest(account.hash_value, *window, len(found)))
    return Response(state.rendered.page(found, account.number), media_type="application/json")


@trader_router.get("/accounts/{account_hash}/transactions/{activity_id}")
async def transaction(account: AccountDep, activity_id: int, state: State) -> trader.JSON:
    return trader.transaction_json(_transaction(state, account, activity_id), account.number)


@trader_router.get("/userPreference")
async def user_preference(state: State) -> trader.JSON:
    return trader.user_preference_json(state.data)


def _transaction(state: SandboxState, account: Account, activity_id: int) -> Transaction:
    tx = state.book(account).get(activity_id)
    if tx is None:
        raise trader_error(404, "Not Found", f"No transaction {activity_id}.")
    return tx


# -- Test controls (no auth: this is a sandbox) -------------------------------------------------

control_router = APIRouter(prefix="/sandbox", tags=["sandbox controls"])


class FaultRequest(BaseModel):
    fault: str
    count: int = Field(default=1, ge=1)
    target: Target = "trader"
    path: str | None = Field(default=None, description="fnmatch pattern of the paths it hits")
    skip: int = Field(default=0, ge=0, description="matching requests to let through first")


@control_router.get("/stats")
async def stats(state: State) -> dict[str, int]:
    return state.stats.as_dict()


@control_router.get("/requests")
async def answered_requests(state: State) -> list[dict[str, Any]]:
    """The transactions requests answered (at most the last 10,000), oldest first."""
    return [
        asdict(request) | {"start": request.start.isoformat(), "end": request.end.isoformat()}
        for request in state.answered
    ]


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
    state.faults.schedule(fault, body.count, body.target, path=body.path, skip=body.skip)
    return body.model_dump()


@control_router.get("/faults")
async def scheduled_faults(state: State) -> dict[Target, list[dict[str, Any]]]:
    """The faults still to come, per target, in the order they will be used."""
    return state.faults.scheduled()


@control_router.delete("/faults")
async def clear_faults(state: State) -> dict[str, str]:
    state.faults.clear()
    return {"status": "cleared"}


@control_router.get("/faults/held")
async def held_requests(state: State) -> list[dict[str, str]]:
    """Requests a ``hold`` fault keeps waiting, oldest first."""
    return [{"path": held.path, "query": held.query} for held in state.faults.held]


@control_router.post("/faults/release")
async def release_held(state: State) -> dict[str, int]:
    return {"released": state.faults.release()}


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
            "pending": [tx.activity_id for tx in state.book(a).pending()],
        }
        for a in state.data.accounts
    ]


def _change_transaction(
    state: SandboxState, account_hash: str, activity_id: int, change: TransactionChange
) -> trader.JSON:
    account = state.data.account(account_hash)
    if account is None:
        raise trader_error(404, "Not Found", "Unknown account hash.")
    if state.book(account).get(activity_id) is None:
        raise trader_error(404, "Not Found", f"No transaction {activity_id}.")
    tx = state.change_transaction(account, activity_id, change)
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
