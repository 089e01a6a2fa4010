# palm: `make run` starts the daemon with the example fleet, `make test` runs every test.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
DATA_DIR ?= .palm
PALM := ./$(BUILD_DIR)/src/palm/palm
JOBS ?= 2

.DEFAULT_GOAL := build
SANITIZE_DIR ?= build-sanitize
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60

.PHONY: build deps configure test test-sanitize fuzz run stop bench format clean

deps:
	@./scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null

build: configure
	@ninja -C $(BUILD_DIR)

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j$(JOBS)

# Every unit and integration test again, built with ASan + UBSan (no recovery: the first
# finding fails the test). -O0 halves the sanitized compile time against -O1 (CI budget).
test-sanitize: deps
	@cmake -S . -B $(SANITIZE_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Sanitize -DCMAKE_CXX_FLAGS_SANITIZE="-O0 -g1" \
	  -DPALM_SANITIZE=ON -DPALM_BENCH=OFF >/dev/null
	@ninja -C $(SANITIZE_DIR)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(SANITIZE_DIR) --output-on-failure -j$(JOBS)

# The libFuzzer targets of fuzz/ (clang, ASan + UBSan), each run for FUZZ_SECONDS.
fuzz: deps
	@CXX=clang++ cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Fuzz -DCMAKE_CXX_FLAGS_FUZZ="-O1 -g1" \
	  -DPALM_FUZZ=ON -DPALM_BENCH=OFF >/dev/null
	@ninja -C $(FUZZ_DIR) fuzz_all
	@./scripts/fuzz.sh $(FUZZ_DIR) $(FUZZ_SECONDS)

run: build
	@if $(PALM) --data-dir $(DATA_DIR) daemon status >/dev/null 2>&1; then \
	  echo "palm daemon already running (stop it with: make stop)"; \
	else \
	  $(PALM) daemon start --data-dir $(DATA_DIR) --examples examples; \
	fi
	@./examples/feed_tasks.sh $(DATA_DIR) || echo "  (could not feed the example tasks; see above)"
	@echo
	@echo "  endpoint:   $${PALM_ENDPOINT:-http://127.0.0.1:7070}"
	@echo "  fleet:      $(PALM) status"
	@echo "  log:        $(DATA_DIR)/palmd.log"
	@echo "  token:      $(DATA_DIR)/admin.token"
	@echo "  stop:       make stop   (agents too; plain \`palm daemon stop\` leaves them running)"
	@echo
	@echo "  export PATH=$$PWD/$(BUILD_DIR)/src/palm:\$$PATH   # then: palm status"

stop:
	@$(PALM) --data-dir $(DATA_DIR) daemon stop --all

bench: build
	@if [ -x bench/run.sh ]; then bench/run.sh; \
	else echo "no bench/run.sh yet"; fi

format:
	@command -v clang-format >/dev/null || { echo "clang-format is not installed" >&2; exit 1; }
	@git ls-files -co --exclude-standard -- '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) $(SANITIZE_DIR) $(FUZZ_DIR)
