#!/usr/bin/env python3
"""A support agent on the palm Python SDK: answers questions from a built-in knowledge base.

Deterministic (no model, no network): the answer is the knowledge-base entry whose keywords
best match the question; ties go to the entry listed first.

Task input:  {"question": "How do I reset my password?", "customer": "acme"}   (or a string,
             or {"task": "..."} as `palm fleet run` sends it)
Output:      {"answer": "...", "topic": "password", "confidence": 0.67, "escalate": false,
              "ticket": 12, "instance": "support-001"}
An empty question fails the task. A question nothing matches is answered with
"escalate": true (a human should take it).

Heartbeat metrics: tickets_answered, tickets_escalated, tasks_done, tasks_failed.
PALM_CONFIG: {"heartbeat_s": 5, "product": "palm", "escalation_threshold": 0.2}
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk", "python"))
from palm_agent import Agent  # noqa: E402

KNOWLEDGE_BASE = [
    ("password", {"password", "reset", "forgot", "login", "locked", "sign"},
     "Open Settings > Security and choose 'Reset password'; a link valid for 30 minutes is "
     "sent to your email. Locked out after 5 attempts? Wait 15 minutes or ask an admin."),
    ("billing", {"invoice", "billing", "charge", "charged", "refund", "payment", "card", "price"},
     "Invoices are under Billing > History. Refunds for duplicate charges are automatic within "
     "5 business days; for anything else reply with the invoice number."),
    ("shipping", {"shipping", "delivery", "package", "tracking", "order", "arrive", "shipped"},
     "Orders ship within 2 business days; the tracking link is in your confirmation email. "
     "Packages not moving for 7 days are re-sent free of charge."),
    ("account", {"account", "delete", "close", "email", "profile", "name", "change"},
     "Profile details (name, email) are editable under Settings > Profile. Deleting an account "
     "is permanent after 30 days and can be requested under Settings > Privacy."),
    ("api", {"api", "token", "key", "rate", "limit", "429", "endpoint", "sdk"},
     "API keys are created under Settings > API. The default rate limit is 100 requests per "
     "second; a 429 answer carries Retry-After, so back off and retry."),
    ("outage", {"down", "outage", "error", "500", "503", "slow", "unavailable", "status"},
     "Check the status page for incidents. If it is green, send us the time and the request "
     "id from the error and we will investigate."),
]

WORD = re.compile(r"[a-z0-9]+")


def answer(question, threshold):
    words = set(WORD.findall(question.lower()))
    best, best_score = None, 0.0
    for topic, keywords, text in KNOWLEDGE_BASE:
        hits = len(words & keywords)
        score = hits / min(len(keywords), max(len(words), 1))
        if hits and score > best_score:
            best, best_score = (topic, text), score
    if best is None or best_score < threshold:
        return None, "I could not find this in the knowledge base; a human agent will follow up.", best_score
    return best[0], best[1], best_score


def main():
    agent = Agent.from_env()
    config = agent.config
    threshold = float(config.get("escalation_threshold", 0.2))
    product = str(config.get("product", "palm"))
    counts = {"tickets_answered": 0, "tickets_escalated": 0}

    def handle(task_input, task):
        fields = task_input if isinstance(task_input, dict) else {}
        question = task_input if isinstance(task_input, str) else (
            fields.get("question") or fields.get("task"))
        if not isinstance(question, str) or not question.strip():
            raise ValueError('input needs a non-empty "question"')
        topic, text, confidence = answer(question, threshold)
        escalate = topic is None
        counts["tickets_escalated" if escalate else "tickets_answered"] += 1
        return {"answer": text, "topic": topic, "confidence": round(confidence, 2),
                "escalate": escalate, "product": product,
                "ticket": counts["tickets_answered"] + counts["tickets_escalated"],
                "instance": agent.instance_id}

    return agent.run(handle, heartbeat_every=float(config.get("heartbeat_s", 5)),
                     metrics=lambda: dict(counts))


if __name__ == "__main__":
    sys.exit(main())
