#!/usr/bin/env python3
"""A buyer on a simulated market, on the palm Python SDK (see market.py for the tasks).

Task input: {"action": "quote"|"trade"|"portfolio"|"orders", "symbol": "ACME", "qty": 10}.
A trade buys at the ask (or sells with "side": "sell"), paid from `funding` cash.
Heartbeat metrics: pnl_usd, orders_total, orders_per_second, cash_usd, position_<SYMBOL>.
PALM_CONFIG: {"symbols": ["ACME", "GLOBEX", "INITECH"], "funding": 100000, "max_order_qty": 1000,
              "allow_short": false, "volatility": 0.01, "spread_bps": 10, "heartbeat_s": 5}
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "..", "sdk", "python")]
from market import run_trader  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_trader("buyer"))
