#!/usr/bin/env bash
# Feeds the example fleet (`make run`) a few tasks and prints their results:
# support questions to the `support` deployment, quotes and trades to `buyer` and `seller`.
#
#   examples/feed_tasks.sh [DATA_DIR]        (default: $PALM_DATA_DIR, else .palm)
#
# The endpoint is $PALM_ENDPOINT, else <data-dir>/palmd.endpoint, else http://127.0.0.1:7070;
# the token is $PALM_TOKEN, else <data-dir>/admin.token. Tasks are submitted with
# POST /v1/tasks and awaited with GET /v1/tasks/{id}?wait_s=N (agents that are still starting
# pick them up once ready). Needs curl and python3. Exit 1 when a task cannot be submitted.
set -euo pipefail

DATA_DIR=${1:-${PALM_DATA_DIR:-.palm}}
WAIT_S=${FEED_WAIT_S:-30}
ENDPOINT=${PALM_ENDPOINT:-}
if [[ -z "$ENDPOINT" && -f "$DATA_DIR/palmd.endpoint" ]]; then
  ENDPOINT=$(<"$DATA_DIR/palmd.endpoint")
fi
ENDPOINT=${ENDPOINT:-http://127.0.0.1:7070}
ENDPOINT=${ENDPOINT%/}
TOKEN=${PALM_TOKEN:-}
if [[ -z "$TOKEN" ]]; then
  [[ -r "$DATA_DIR/admin.token" ]] || { echo "feed_tasks: no token: $DATA_DIR/admin.token is missing (set PALM_TOKEN or pass the data dir)" >&2; exit 1; }
  TOKEN=$(<"$DATA_DIR/admin.token")
fi
command -v curl >/dev/null || { echo "feed_tasks: curl is not installed" >&2; exit 1; }

api() {  # api METHOD PATH [JSON]: prints the body, then the HTTP status on the last line
  local args=(-sS -X "$1" -H "Authorization: Bearer $TOKEN" -w '\n%{http_code}' --max-time 90)
  [[ $# -ge 3 ]] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
  curl "${args[@]}" "$ENDPOINT$2"
}

json_field() {  # json_field FIELD: reads JSON on stdin, prints one field (or the error)
  python3 -c '
import json, sys
doc = json.load(sys.stdin)
field = sys.argv[1]
if "error" in doc and field not in doc:
    print("{code}: {message}".format(**doc["error"]))
else:
    print(doc.get(field, ""))' "$1"
}

if ! curl -sf --max-time 5 "$ENDPOINT/healthz" >/dev/null; then
  echo "feed_tasks: the palm daemon does not answer at $ENDPOINT (start it with: make run)" >&2
  exit 1
fi

TASKS=(
  'support|{"question": "How do I reset my password?"}'
  'support|{"question": "I was charged twice, can I get a refund?"}'
  'support|{"question": "Where is my package? The tracking link shows nothing"}'
  'support|{"question": "The API answers 429, what is the rate limit?"}'
  'support|{"question": "What is the airspeed velocity of an unladen swallow?"}'
  'buyer|{"action": "quote", "symbol": "ACME"}'
  'buyer|{"action": "trade", "symbol": "ACME", "qty": 10}'
  'buyer|{"action": "trade", "symbol": "GLOBEX", "qty": 25}'
  'buyer|{"action": "trade", "symbol": "INITECH", "qty": 5, "limit": 1.00}'
  'seller|{"action": "quote", "symbol": "ACME"}'
  'seller|{"action": "trade", "symbol": "ACME", "qty": 40}'
  'seller|{"action": "trade", "symbol": "INITECH", "qty": 15}'
  'seller|{"action": "trade", "symbol": "NOPE", "qty": 1}'
)

IDS=()
DEPS=()
for entry in "${TASKS[@]}"; do
  dep=${entry%%|*}
  input=${entry#*|}
  out=$(api POST /v1/tasks "{\"deployment\": \"$dep\", \"input\": $input}") || {
    echo "feed_tasks: POST /v1/tasks failed" >&2; exit 1; }
  status=${out##*$'\n'}
  body=${out%$'\n'*}
  if [[ "$status" != 201 && "$status" != 200 ]]; then
    echo "feed_tasks: $dep: HTTP $status: $(json_field id <<<"$body" 2>/dev/null || echo "$body")" >&2
    exit 1
  fi
  IDS+=("$(json_field id <<<"$body")")
  DEPS+=("$dep")
done
echo "submitted ${#IDS[@]} tasks; results (waiting up to ${WAIT_S}s each):"

# One line per task: deployment, id, state, instance, input -> output or error.
SHOW=$(cat <<'EOF'
import json, sys
dep, doc = sys.argv[1], json.loads(sys.argv[2])
if "error" in doc and "state" not in doc:
    print("  %-8s %s: %s" % (dep, doc["error"].get("code"), doc["error"].get("message")))
    sys.exit()
out = doc.get("output")
if doc.get("state") == "Succeeded":
    if isinstance(out, dict) and "answer" in out:
        what = "[%s] %s" % (out.get("topic") or "escalated", out["answer"])
    elif isinstance(out, dict) and "order_id" in out:
        what = "%s: %s %s %s @ %s (cash %s, position %s)" % (
            out.get("status"), out.get("side"), out.get("qty"), out.get("symbol"),
            out.get("price"), out.get("cash"), out.get("position"))
    elif isinstance(out, dict) and "bid" in out:
        what = "%s bid %s / ask %s (tick %s)" % (out.get("symbol"), out.get("bid"),
                                                 out.get("ask"), out.get("tick"))
    else:
        what = json.dumps(out, separators=(",", ":"))
elif doc.get("state") in ("Queued", "Assigned"):
    what = "(still %s: no ready agent yet?)" % doc["state"]
else:
    what = doc.get("error") or ""
line = "  %-8s %s %-9s %-11s %s -> %s" % (dep, doc["id"], doc["state"], doc.get("instance") or "-",
                                        json.dumps(doc.get("input"), separators=(",", ":")), what)
print(line if len(line) <= 200 else line[:197] + "...")
EOF
)

for i in "${!IDS[@]}"; do
  out=$(api GET "/v1/tasks/${IDS[$i]}?wait_s=$WAIT_S") || { echo "  ${IDS[$i]}: GET failed"; continue; }
  python3 -c "$SHOW" "${DEPS[$i]}" "${out%$'\n'*}"
done
echo
echo "  more: curl -H \"Authorization: Bearer \$(cat $DATA_DIR/admin.token)\" '$ENDPOINT/v1/tasks?order=desc'"
