"""A simulated market and trading desk shared by buyer_agent.py and seller_agent.py.

Prices are deterministic random walks: each symbol starts at a price derived from its name
and moves one step (log-normal, 1% volatility) every time a task touches it; the walk's
random stream is seeded by the instance id and the symbol, so an instance replays the same
prices for the same sequence of tasks.

Tasks (input):
  {"action": "quote", "symbol": "ACME"}
      -> {"symbol", "bid", "ask", "mid", "tick"}
  {"action": "trade", "symbol": "ACME", "qty": 10, "side"?: "buy"|"sell", "limit"?: 101.5}
      -> {"order_id", "status": "filled"|"not_filled", "side", "symbol", "qty", "price",
          "cash", "position"}; "side" defaults to the desk's role. A limit the market does not
          meet is "not_filled" (not an error).
  {"action": "portfolio"}  -> {"cash", "positions", "pnl_usd", "orders_total", "marks"}
  {"action": "orders", "limit"?: 10} -> {"orders": [...newest last]}
  {"task": "quote ACME"} (what `palm fleet run` sends): "ACTION [SYMBOL [QTY]]" as above
Errors fail the task: unknown action or symbol, qty not a positive integer (or above
max_order_qty), not enough cash (buy) or inventory (sell, unless allow_short).

Heartbeat metrics: pnl_usd, orders_total, orders_per_second (over the last 10 s),
cash_usd, position_<SYMBOL> per symbol.
"""
import math
import random
import threading
import time
import zlib
from collections import deque

DEFAULT_SYMBOLS = ["ACME", "GLOBEX", "INITECH"]


def start_price(symbol):
    return round(20 + zlib.crc32(symbol.encode()) % 18000 / 100.0, 2)


class Market:
    def __init__(self, seed, symbols, volatility=0.01, spread_bps=10):
        self.volatility = float(volatility)
        self.half_spread = float(spread_bps) / 20000.0
        self.prices = {s: start_price(s) for s in symbols}
        self.ticks = {s: 0 for s in symbols}
        self.rngs = {s: random.Random(f"{seed}/{s}") for s in symbols}

    def step(self, symbol):
        if symbol not in self.prices:
            raise KeyError(f"unknown symbol {symbol!r} (trading {', '.join(sorted(self.prices))})")
        p = self.prices[symbol] * math.exp(self.rngs[symbol].gauss(0.0, self.volatility))
        self.prices[symbol] = max(0.01, round(p, 2))
        self.ticks[symbol] += 1
        return self.quote(symbol)

    def quote(self, symbol):
        mid = self.prices[symbol]
        return {"symbol": symbol, "bid": round(mid * (1 - self.half_spread), 2),
                "ask": round(mid * (1 + self.half_spread), 2), "mid": mid,
                "tick": self.ticks[symbol]}


class Desk:
    """Positions, cash and orders of one trading agent. Thread-safe."""

    def __init__(self, role, instance_id, config):
        self.role = role
        self.instance_id = instance_id or f"{role}-local"
        symbols = [str(s).upper() for s in config.get("symbols") or DEFAULT_SYMBOLS]
        self.market = Market(self.instance_id, symbols, config.get("volatility", 0.01),
                             config.get("spread_bps", 10))
        self.cash = float(config.get("funding", 100000 if role == "buyer" else 0))
        inventory = config.get("inventory") or {}
        self.positions = {s: int(inventory.get(s, 0)) for s in symbols}
        self.max_order_qty = int(config.get("max_order_qty", 1000))
        self.allow_short = bool(config.get("allow_short", False))
        self.initial_value = self.cash + sum(q * self.market.prices[s]
                                             for s, q in self.positions.items())
        self.orders = deque(maxlen=int(config.get("keep_orders", 100)))
        self.orders_total = 0
        self.recent = deque()   # monotonic times of recent orders, for orders_per_second
        self.lock = threading.Lock()

    # ---- tasks ---------------------------------------------------------------------------

    def handle(self, task_input, task=None):
        if isinstance(task_input, dict) and isinstance(task_input.get("task"), str):
            task_input = self.parse_text(task_input["task"])
        if not isinstance(task_input, dict):
            raise ValueError('input must be an object like {"action": "quote", "symbol": "ACME"}')
        action = task_input.get("action", "quote")
        with self.lock:
            if action == "quote":
                return self.market.step(self._symbol(task_input))
            if action == "trade":
                return self._trade(task_input)
            if action == "portfolio":
                return self._portfolio()
            if action == "orders":
                n = int(task_input.get("limit", 10))
                return {"orders": list(self.orders)[-n:] if n > 0 else []}
        raise ValueError(f"unknown action {action!r} (quote, trade, portfolio, orders)")

    @staticmethod
    def parse_text(text):
        """`palm fleet run` sends {"task": "TEXT"}: "quote ACME", "trade ACME 10", "portfolio"."""
        words = text.split()
        if not words:
            raise ValueError('empty task; e.g. palm fleet deploy N "quote ACME"')
        parsed = {"action": words[0].lower()}
        if len(words) > 1:
            parsed["symbol"] = words[1]
        if len(words) > 2:
            parsed["qty"] = int(words[2]) if words[2].lstrip("-").isdigit() else words[2]
        return parsed

    def _symbol(self, task_input):
        symbol = str(task_input.get("symbol", "")).upper()
        if symbol not in self.market.prices:
            raise ValueError(f"unknown symbol {symbol!r} (trading "
                             f"{', '.join(sorted(self.market.prices))})")
        return symbol

    def _trade(self, task_input):
        symbol = self._symbol(task_input)
        qty = task_input.get("qty")
        if not isinstance(qty, int) or isinstance(qty, bool) or qty <= 0:
            raise ValueError("qty must be a positive integer")
        if qty > self.max_order_qty:
            raise ValueError(f"qty {qty} is above max_order_qty {self.max_order_qty}")
        side = task_input.get("side") or ("buy" if self.role == "buyer" else "sell")
        if side not in ("buy", "sell"):
            raise ValueError('side must be "buy" or "sell"')
        limit = task_input.get("limit")
        q = self.market.step(symbol)
        price = q["ask"] if side == "buy" else q["bid"]
        filled = limit is None or (price <= float(limit) if side == "buy" else price >= float(limit))
        notional = round(price * qty, 2)
        if filled and side == "buy" and notional > self.cash + 1e-9:
            raise ValueError(f"insufficient cash: {qty} {symbol} at {price} costs {notional}, "
                             f"cash is {round(self.cash, 2)}")
        if filled and side == "sell" and not self.allow_short and qty > self.positions[symbol]:
            raise ValueError(f"insufficient inventory: selling {qty} {symbol}, "
                             f"holding {self.positions[symbol]}")
        if filled:
            self.cash += -notional if side == "buy" else notional
            self.positions[symbol] += qty if side == "buy" else -qty
        self.orders_total += 1
        self._count_order()
        order = {"order_id": f"{self.instance_id}-o{self.orders_total}",
                 "status": "filled" if filled else "not_filled", "side": side,
                 "symbol": symbol, "qty": qty, "price": price, "tick": q["tick"]}
        self.orders.append(order)
        return dict(order, cash=round(self.cash, 2), position=self.positions[symbol])

    def _count_order(self):
        now = time.monotonic()
        self.recent.append(now)
        while self.recent and now - self.recent[0] > 10:
            self.recent.popleft()

    def _pnl(self):
        value = self.cash + sum(q * self.market.prices[s] for s, q in self.positions.items())
        return round(value - self.initial_value, 2)

    def _portfolio(self):
        return {"role": self.role, "cash": round(self.cash, 2), "positions": dict(self.positions),
                "marks": dict(self.market.prices), "pnl_usd": self._pnl(),
                "orders_total": self.orders_total, "instance": self.instance_id}

    # ---- heartbeat metrics ---------------------------------------------------------------

    def metrics(self):
        with self.lock:
            now = time.monotonic()
            while self.recent and now - self.recent[0] > 10:
                self.recent.popleft()
            m = {"pnl_usd": self._pnl(), "orders_total": self.orders_total,
                 "orders_per_second": round(len(self.recent) / 10.0, 2),
                 "cash_usd": round(self.cash, 2)}
            for s, q in self.positions.items():
                m[f"position_{s}"] = q
            return m


def run_trader(role):
    """The whole agent: a Desk behind the SDK's run loop."""
    from palm_agent import Agent
    agent = Agent.from_env()
    desk = Desk(role, agent.instance_id, agent.config)
    agent.log(f"{role} desk: cash {desk.cash}, positions {desk.positions}, "
              f"marks {desk.market.prices}")
    return agent.run(desk.handle, heartbeat_every=float(agent.config.get("heartbeat_s", 5)),
                     metrics=desk.metrics)
