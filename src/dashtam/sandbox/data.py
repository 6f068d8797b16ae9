"""Deterministic synthetic Schwab accounts, positions and transactions.

Everything comes from ``random.Random`` instances seeded from the config seed (never the global
generator), so one seed and reference date always give the same data. Each account's transactions
are generated on first use and kept sorted by time, so a date-window query is two bisects even with
hundreds of thousands of rows. Amounts are ``Decimal`` with 2 places (prices 4) so they survive the
trip through JSON numbers exactly.
"""

import bisect
import hashlib
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from operator import attrgetter
from typing import Literal

from dashtam.sandbox.config import SandboxConfig

CENT = Decimal("0.01")
PENDING_WINDOW = timedelta(days=2)
"""Transactions this close to the reference instant are the ones left PENDING."""


@dataclass(frozen=True, slots=True)
class Security:
    symbol: str
    cusip: str
    description: str
    asset_type: str
    typical_price: Decimal


SECURITIES = (
    Security("AAPL", "037833100", "APPLE INC", "EQUITY", Decimal(190)),
    Security("MSFT", "594918104", "MICROSOFT CORP", "EQUITY", Decimal(410)),
    Security("GOOGL", "02079K305", "ALPHABET INC CL A", "EQUITY", Decimal(160)),
    Security("AMZN", "023135106", "AMAZON.COM INC", "EQUITY", Decimal(180)),
    Security("NVDA", "67066G104", "NVIDIA CORP", "EQUITY", Decimal(120)),
    Security("JNJ", "478160104", "JOHNSON & JOHNSON", "EQUITY", Decimal(155)),
    Security("KO", "191216100", "COCA-COLA CO", "EQUITY", Decimal(62)),
    Security("SPY", "78462F103", "SPDR S&P 500 ETF", "COLLECTIVE_INVESTMENT", Decimal(520)),
    Security(
        "VTI", "922908769", "VANGUARD TOTAL STOCK MKT ETF", "COLLECTIVE_INVESTMENT", Decimal(260)
    ),
    Security(
        "BND", "921937835", "VANGUARD TOTAL BOND MKT ETF", "COLLECTIVE_INVESTMENT", Decimal(72)
    ),
)
CASH = Security("CURRENCY_USD", "", "USD currency", "CURRENCY", Decimal(1))


@dataclass(frozen=True, slots=True)
class Position:
    security: Security
    quantity: Decimal
    average_price: Decimal
    price: Decimal
    net_change: Decimal

    @property
    def market_value(self) -> Decimal:
        return (self.quantity * self.price).quantize(CENT)

    @property
    def cost(self) -> Decimal:
        return (self.quantity * self.average_price).quantize(CENT)

    @property
    def day_profit_loss(self) -> Decimal:
        return (self.quantity * self.net_change).quantize(CENT)


@dataclass(frozen=True, slots=True)
class Account:
    index: int
    number: str
    hash_value: str
    type: Literal["MARGIN", "CASH"]
    nickname: str
    cash: Decimal
    positions: tuple[Position, ...]

    @property
    def long_market_value(self) -> Decimal:
        return sum((p.market_value for p in self.positions), Decimal(0))


@dataclass(frozen=True, slots=True)
class TransferItem:
    security: Security
    amount: Decimal
    cost: Decimal
    price: Decimal | None = None
    fee_type: str | None = None
    position_effect: str | None = None


@dataclass(slots=True)
class Transaction:
    """Mutable only in ``status`` and ``settlement_date``: what posting a pending one changes."""

    activity_id: int
    time: datetime
    type: str
    status: str
    description: str
    activity_type: str
    sub_account: str
    settlement_date: datetime
    net_amount: Decimal
    items: tuple[TransferItem, ...]
    order_id: int | None = None
    position_id: int | None = None

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(i.security.symbol for i in self.items)


class TransactionBook:
    """One account's transactions sorted by time; windows are answered by bisect."""

    def __init__(self, transactions: list[Transaction]) -> None:
        self._items = sorted(transactions, key=attrgetter("time", "activity_id"))
        self._times = [t.time for t in self._items]
        self._by_id = {t.activity_id: t for t in self._items}

    def __len__(self) -> int:
        return len(self._items)

    def window(self, start: datetime, end: datetime) -> list[Transaction]:
        """Transactions with ``start <= time <= end``, oldest first."""
        lo = bisect.bisect_left(self._times, start)
        hi = bisect.bisect_right(self._times, end)
        return self._items[lo:hi]

    def get(self, activity_id: int) -> Transaction | None:
        return self._by_id.get(activity_id)

    def pending(self) -> list[Transaction]:
        return [t for t in self._items if t.status == "PENDING"]

    def post(self, activity_id: int) -> Transaction:
        """Settle a pending transaction, as the broker does a day or two later."""
        tx = self._by_id[activity_id]
        tx.status = "VALID"
        tx.settlement_date = max(tx.settlement_date, tx.time + timedelta(days=1))
        return tx

    def remove(self, activity_id: int) -> Transaction:
        """Drop a transaction, as happens when a pending one is cancelled upstream."""
        tx = self._by_id.pop(activity_id)
        index = bisect.bisect_left(self._times, tx.time)
        while self._items[index] is not tx:
            index += 1
        del self._items[index]
        del self._times[index]
        return tx


# Cash movements: type -> (sign, description, smallest, largest in dollars); sign 0 = either way.
_CASH_MOVES: dict[str, tuple[int, str, int, int]] = {
    "ACH_RECEIPT": (1, "ACH DEPOSIT", 50, 5000),
    "ACH_DISBURSEMENT": (-1, "ACH WITHDRAWAL", 50, 3000),
    "ELECTRONIC_FUND": (1, "FUNDS TRANSFER", 100, 10000),
    "WIRE_IN": (1, "WIRE INCOMING", 1000, 50000),
    "WIRE_OUT": (-1, "WIRE OUTGOING", 1000, 20000),
    "CASH_RECEIPT": (1, "CASH RECEIPT", 10, 2000),
    "CASH_DISBURSEMENT": (-1, "CASH DISBURSEMENT", 10, 2000),
    "JOURNAL": (0, "JOURNAL ENTRY", 10, 5000),
    "MONEY_MARKET": (0, "MONEY MARKET SWEEP", 10, 5000),
}
# Notices that move no money.
_NOTICES = ("MEMORANDUM", "MARGIN_CALL", "SMA_ADJUSTMENT")
_KIND_WEIGHTS: dict[str, int] = {
    "TRADE": 500,
    "DIVIDEND_OR_INTEREST": 200,
    "RECEIVE_AND_DELIVER": 20,
    **dict.fromkeys(_CASH_MOVES, 30),
    **dict.fromkeys(_NOTICES, 3),
}
TRANSACTION_TYPES = frozenset(_KIND_WEIGHTS)


def _rng(seed: int, purpose: str) -> random.Random:
    """A generator per purpose, so lazily generated parts do not depend on access order."""
    return random.Random(f"{seed}:{purpose}")  # noqa: S311 - synthetic data, not security


def _between(rng: random.Random, low: int, high: int) -> int:
    """``low <= n < high``; several times faster than ``randrange``, which matters at 10^5 rows."""
    return low + int(rng.random() * (high - low))


def _pick(rng: random.Random, options: tuple[Security, ...]) -> Security:
    return options[int(rng.random() * len(options))]


def _money(rng: random.Random, low: int, high: int) -> Decimal:
    return Decimal(_between(rng, low * 100, high * 100)).scaleb(-2)


def _price_near(rng: random.Random, typical: Decimal) -> Decimal:
    """A price within 30% of ``typical``, 4 decimal places."""
    basis = int(typical * 10_000)
    return Decimal(_between(rng, basis * 7 // 10, basis * 13 // 10)).scaleb(-4)


def _position(rng: random.Random, security: Security) -> Position:
    return Position(
        security=security,
        quantity=Decimal(_between(rng, 1, 401)),
        average_price=_price_near(rng, security.typical_price),
        price=_price_near(rng, security.typical_price),
        net_change=Decimal(_between(rng, -500, 501)).scaleb(-2),
    )


def _account(rng: random.Random, seed: int, index: int, number: int) -> Account:
    account_type: Literal["MARGIN", "CASH"] = "MARGIN" if index % 2 == 0 else "CASH"
    digest = hashlib.sha256(f"dashtam-sandbox:{seed}:{number}".encode()).hexdigest()
    held = rng.sample(SECURITIES, rng.randint(3, 8))
    return Account(
        index=index,
        number=str(number),
        hash_value=digest.upper(),
        type=account_type,
        nickname=f"{'Individual' if account_type == 'MARGIN' else 'Roth IRA'} {index + 1}",
        cash=_money(rng, 100, 50_000),
        positions=tuple(_position(rng, s) for s in held),
    )


class _TransactionFactory:
    """Builds one account's transactions; one method per kind of activity."""

    def __init__(self, rng: random.Random, account: Account) -> None:
        self.rng = rng
        self.sub_account = "MARGIN" if account.type == "MARGIN" else "CASH"

    def build(self, kind: str, activity_id: int, when: datetime, status: str) -> Transaction:
        if kind == "TRADE":
            return self._trade(activity_id, when, status)
        if kind == "DIVIDEND_OR_INTEREST":
            return self._income(activity_id, when, status)
        if kind == "RECEIVE_AND_DELIVER":
            return self._security_transfer(activity_id, when, status)
        if kind in _CASH_MOVES:
            return self._cash_move(kind, activity_id, when, status)
        return self._base(kind, activity_id, when, status, kind.replace("_", " "), Decimal(0), ())

    def _base(
        self,
        kind: str,
        activity_id: int,
        when: datetime,
        status: str,
        description: str,
        net_amount: Decimal,
        items: tuple[TransferItem, ...],
        settle_days: int = 0,
    ) -> Transaction:
        return Transaction(
            activity_id=activity_id,
            time=when,
            type=kind,
            status=status,
            description=description,
            activity_type="EXECUTION" if kind == "TRADE" else "TRANSFER",
            sub_account=self.sub_account if kind == "TRADE" else "CASH",
            settlement_date=when + timedelta(days=settle_days),
            net_amount=net_amount,
            items=items,
        )

    def _trade(self, activity_id: int, when: datetime, status: str) -> Transaction:
        rng = self.rng
        security = _pick(rng, SECURITIES)
        quantity = Decimal(_between(rng, 1, 201))
        price = _price_near(rng, security.typical_price)
        value = (quantity * price).quantize(CENT)
        buy = rng.random() < 0.6
        fee = Decimal(0) if buy else max(CENT, (value * Decimal("0.0000278")).quantize(CENT))
        items = (
            TransferItem(CASH, Decimal(0), Decimal(0), fee_type="COMMISSION"),
            TransferItem(CASH, -fee, -fee, fee_type="SEC_FEE"),
            TransferItem(
                security,
                quantity if buy else -quantity,
                -value if buy else value,
                price=price,
                position_effect="OPENING" if buy else "CLOSING",
            ),
        )
        side = "BUY" if buy else "SELL"
        description = f"{side} {quantity} {security.symbol} @ {price}"
        net = -value if buy else value - fee
        tx = self._base("TRADE", activity_id, when, status, description, net, items, settle_days=1)
        tx.order_id = _between(rng, 10**12, 10**13)
        tx.position_id = _between(rng, 10**9, 10**10)
        return tx

    def _income(self, activity_id: int, when: datetime, status: str) -> Transaction:
        rng = self.rng
        amount = _money(rng, 1, 400)
        if rng.random() < 0.8:
            description = f"ORDINARY DIVIDEND {_pick(rng, SECURITIES).symbol}"
        else:
            description = "CREDIT INTEREST"
        items = (TransferItem(CASH, amount, amount),)
        return self._base(
            "DIVIDEND_OR_INTEREST", activity_id, when, status, description, amount, items
        )

    def _security_transfer(self, activity_id: int, when: datetime, status: str) -> Transaction:
        rng = self.rng
        security = _pick(rng, SECURITIES)
        quantity = Decimal(_between(rng, 1, 101))
        price = _price_near(rng, security.typical_price)
        items = (
            TransferItem(security, quantity, Decimal(0), price=price, position_effect="OPENING"),
        )
        description = f"TRANSFER OF SECURITY IN {security.symbol}"
        return self._base(
            "RECEIVE_AND_DELIVER", activity_id, when, status, description, Decimal(0), items
        )

    def _cash_move(self, kind: str, activity_id: int, when: datetime, status: str) -> Transaction:
        sign, description, low, high = _CASH_MOVES[kind]
        amount = _money(self.rng, low, high) * (sign or (1 if self.rng.random() < 0.5 else -1))
        items = (TransferItem(CASH, amount, amount),)
        return self._base(kind, activity_id, when, status, description, amount, items)


def generate_transactions(
    config: SandboxConfig, account: Account, reference: datetime
) -> list[Transaction]:
    """All of one account's history; the newest ``pending_per_account`` are still PENDING."""
    rng = _rng(config.seed, f"transactions:{account.index}")
    count = config.transactions_per_account
    pending = min(config.pending_per_account, count)
    recent = int(PENDING_WINDOW.total_seconds())
    span = max(config.history_days * 86_400, recent + 1)
    ages = sorted(
        [_between(rng, recent, span) for _ in range(count - pending)]
        + [_between(rng, 1, recent) for _ in range(pending)],
        reverse=True,
    )
    kinds = rng.choices(list(_KIND_WEIGHTS), weights=list(_KIND_WEIGHTS.values()), k=count)
    factory = _TransactionFactory(rng, account)
    first_id = 70_000_000_000 + account.index * 1_000_000_000
    return [
        factory.build(
            kind,
            first_id + n,
            reference - timedelta(seconds=age),
            "PENDING" if n >= count - pending else "VALID",
        )
        for n, (kind, age) in enumerate(zip(kinds, ages, strict=True))
    ]


class SandboxData:
    """The accounts of one sandbox user; transactions are generated per account on first use."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        day = config.reference_date or datetime.now(UTC).date()
        self.reference: datetime = datetime.combine(day, time(), UTC)
        rng = _rng(config.seed, "accounts")
        numbers = rng.sample(range(10_000_000, 100_000_000), config.accounts)
        self.accounts = [_account(rng, config.seed, i, n) for i, n in enumerate(numbers)]
        self.customer_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self._by_hash = {a.hash_value: a for a in self.accounts}
        self._books: dict[str, TransactionBook] = {}

    def account(self, hash_value: str) -> Account | None:
        return self._by_hash.get(hash_value)

    def transactions(self, account: Account) -> TransactionBook:
        book = self._books.get(account.hash_value)
        if book is None:
            book = TransactionBook(generate_transactions(self.config, account, self.reference))
            self._books[account.hash_value] = book
        return book
